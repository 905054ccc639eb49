"""A process-wide budget of bytes, shared by the connections of a listener.

A connection reserves what it is about to hold before holding it (a frame
prelude announcing N bytes reserves N); a reservation that does not fit is
refused, and the connection is told why and closed instead of growing the
process's memory.  Single-threaded (one event loop), so a plain counter.
"""

from __future__ import annotations


class ByteBudget:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a byte budget must be at least 1 byte")
        self.limit = limit
        self.reserved = 0

    def try_resize(self, held: int, wanted: int) -> bool:
        """Change one holder's reservation from ``held`` to ``wanted`` bytes; False (unchanged) if it does not fit."""
        if wanted > held and self.reserved + wanted - held > self.limit:
            return False
        self.reserved += wanted - held
        return True

    @property
    def available(self) -> int:
        return self.limit - self.reserved
