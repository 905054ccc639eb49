"""A process-wide budget of bytes, shared by the connections of a listener.

A connection reserves what it is about to hold before holding it (a frame
prelude announcing N bytes reserves N); a reservation that does not fit is
refused, and the connection is told why and closed instead of growing the
process's memory.  Single-threaded (one event loop), so a plain counter.
What is freed is handed back to the OS (:func:`trim_heap_soon`), so the
worker's memory comes down once an attack is over.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable


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


# --- giving freed memory back -----------------------------------------------------------------

TRIM_AFTER = 8 * 1024 * 1024  # a buffer this large, once freed, is worth handing back to the OS
TRIM_DELAY = 0.5  # seconds: one trim for a burst of releases

_trim_pending = False


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None
    return trim


_malloc_trim = _load_malloc_trim()


def trim_heap_soon(freed: int) -> None:
    """After ``freed`` bytes of buffers were dropped, give the freed heap back to the OS (glibc), once per burst.

    glibc raises its mmap threshold after a large buffer is freed, so the next
    large buffers come from the heap and stay resident after they are freed
    (an attack's 32 MiB frames would keep the worker's RSS up long after the
    attack).  ``malloc_trim`` returns those pages; it runs on a short timer so
    that a burst of closes costs one call.
    """
    global _trim_pending
    if freed < TRIM_AFTER or _malloc_trim is None or _trim_pending:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    _trim_pending = True
    loop.call_later(TRIM_DELAY, _trim)


def _trim() -> None:
    global _trim_pending
    _trim_pending = False
    if _malloc_trim is not None:
        _malloc_trim(0)
