"""Sans-IO budgets the HTTP connection drivers spend before they buffer or answer.

``ByteBudget`` counts bytes held against a limit: one per h2 connection for
its buffered request bodies, and one per server shared by all its
connections, so neither one connection nor many together can make the
worker buffer more than a stated amount.  ``RateBudget`` is a token bucket
(a burst, refilled at a steady rate) for events a peer can make the server
pay for without sending a request: resetting streams (rapid reset,
CVE-2023-44487) and control frames that must be answered (PING and SETTINGS
floods, CVE-2019-9512/9515).  ``Deadline`` is a re-armable point in time
checked by the server's periodic sweep.  The clock is passed in so tests
need no sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class ByteBudget:
    """Bytes held against ``limit`` (``None``: no limit, still counted)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit <= 0:
            raise ValueError("a byte budget must be positive (or None for no limit)")
        self.limit = limit
        self.used = 0

    def fits(self, size: int) -> bool:
        """Would ``size`` more bytes stay within the limit?"""
        return self.limit is None or self.used + size <= self.limit

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.used >= self.limit

    def take(self, size: int) -> None:
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size
        if self.used < 0:
            raise AssertionError(f"released {-self.used} bytes more than were taken")


class RateBudget:
    """A token bucket: at most ``burst`` events at once, ``rate`` more per second after that."""

    __slots__ = ("_stamp", "_tokens", "burst", "clock", "rate")

    def __init__(self, burst: int, rate: float, clock: Clock = time.monotonic) -> None:
        if burst <= 0 or rate < 0:
            raise ValueError("a rate budget needs burst > 0 and rate >= 0")
        self.burst = burst
        self.rate = rate
        self.clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def spend(self, count: int = 1) -> bool:
        """Take ``count`` tokens; False (and nothing taken) once the budget cannot cover them."""
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < count:
            return False
        self._tokens -= count
        return True

    @property
    def tokens(self) -> float:
        return self._tokens


class Deadline:
    """A point in time that may be armed, moved and cleared; ``expired(now)`` once it has passed."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at: float | None = None

    def arm(self, now: float, seconds: float | None) -> None:
        """Expire ``seconds`` after ``now``; ``None`` seconds (the setting is off) clears it."""
        self.at = None if seconds is None else now + seconds

    def clear(self) -> None:
        self.at = None

    def expired(self, now: float) -> bool:
        return self.at is not None and now >= self.at
