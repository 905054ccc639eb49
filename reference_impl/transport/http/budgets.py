"""Sans-IO budgets the HTTP connection drivers spend before they buffer or answer.

``ByteBudget`` counts bytes held against a limit: one per h2 connection for
its buffered request bodies, and one per server shared by all its
connections, so neither one connection nor many together can make the
worker buffer more than a stated amount.  ``RateBudget`` is a token bucket
(a burst, refilled at a steady rate) for events a peer can make the server
pay for without sending a request: resetting streams (rapid reset,
CVE-2023-44487) and control frames that must be answered (PING and SETTINGS
floods, CVE-2019-9512/9515).  ``Deadline`` is a re-armable point in time;
``DeadlineTimer`` makes the deadlines it is shown fire on time (one event-loop
timer for all of them), where the server's periodic sweep alone would be up to
a sweep interval late.  The clock is passed in so tests need no sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
import weakref
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

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

    __slots__ = ("at", "queued_at")

    def __init__(self) -> None:
        self.at: float | None = None
        self.queued_at: float | None = None  # when a DeadlineTimer will look at it next (None: not queued)

    def arm(self, now: float, seconds: float | None) -> None:
        """Expire ``seconds`` after ``now``; ``None`` seconds (the setting is off) clears it."""
        self.at = None if seconds is None else now + seconds

    def clear(self) -> None:
        self.at = None

    def expired(self, now: float) -> bool:
        return self.at is not None and now >= self.at


class DeadlineOwner(Protocol):
    """What holds deadlines: told the time when one of them may have passed."""

    def check_deadlines(self, now: float) -> None: ...


TIMER_TICK_S = 0.01  # deadlines are rounded up to this: ones armed together fire in one pass, at most 10 ms late
# Deadlines further ahead than this are left to the sweep (idle timeouts: minutes, where a sweep's lateness does not
# matter), so that the heap holds seconds' worth of entries, not one per connection opened in the last minutes.
TIMER_HORIZON_S = 30.0
# Owners are checked for about this long per event-loop pass; the rest wait one turn (as reads do in the server),
# so that thousands of deadlines passing together (answers parked on many connections) never hold the loop.
TIMER_TURN_S = 0.01


class DeadlineTimer:
    """Calls ``owner.check_deadlines(now)`` when a watched deadline of the owner passes.

    One heap and one event-loop timer for every deadline of a server, instead
    of a timer per deadline: ``watch`` is cheap to repeat (a deadline already
    queued at or before its time is not queued again; one moved later is
    queued again when its old time comes), and owners with deadlines due
    together are each checked once per pass.  The owners due are checked for
    about ``turn`` seconds per event-loop pass, the rest in the next passes,
    so many deadlines passing at once are worked off in slices while other
    callbacks run between them.  Deadlines that are never watched
    are still found by the owner's periodic sweep, as are those beyond
    ``horizon``.  Owners are held weakly: a closed connection is not kept
    alive by its deadlines.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        tick: float = TIMER_TICK_S,
        horizon: float = TIMER_HORIZON_S,
        turn: float = TIMER_TURN_S,
    ) -> None:
        self.clock = clock
        self.tick = tick
        self.horizon = horizon
        self.turn = turn
        self._due: dict[int, DeadlineOwner] = {}  # owners found due and not yet checked, in order
        self._resume: asyncio.Handle | None = None  # the next pass's slice of ``_due``
        self._heap: list[tuple[float, int, Deadline, weakref.ref[DeadlineOwner]]] = []
        self._order = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at: float | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def watch(self, deadline: Deadline, owner: DeadlineOwner) -> None:
        """Check ``owner`` when ``deadline`` (as armed now) passes; a cleared deadline is ignored."""
        if deadline.at is None or deadline.at - self.clock() > self.horizon:
            return
        at = math.ceil(deadline.at / self.tick) * self.tick
        if at < deadline.at:
            at += self.tick  # float rounding: never before the deadline, so that its owner finds it passed
        if deadline.queued_at is not None and deadline.queued_at <= at:
            return  # an earlier entry will look at it, and queue it again if it has moved
        deadline.queued_at = at
        heapq.heappush(self._heap, (at, next(self._order), deadline, weakref.ref(owner)))
        self._schedule()

    def fire(self, now: float) -> None:
        """Check the owners of every deadline passed by ``now`` (the event-loop timer calls this).

        Under a running loop, owners beyond one ``turn`` of work are checked in
        the loop's next passes; driven by hand (no loop), all of them now.
        """
        due = self._due
        while self._heap and self._heap[0][0] <= now:
            at, _, deadline, owner_ref = heapq.heappop(self._heap)
            if deadline.queued_at != at:
                continue  # queued again earlier since: that entry stands for it
            deadline.queued_at = None
            owner = owner_ref()
            if deadline.at is None or owner is None:
                continue
            if deadline.at > at:
                self.watch(deadline, owner)  # moved later since it was queued (then queued after ``at``)
                continue
            due[id(owner)] = owner
        if self._resume is None:
            self._check_due(now)

    def _check_due(self, now: float) -> None:
        started = time.perf_counter()
        checked = 0  # every pass checks at least one owner
        while self._due:
            if checked and time.perf_counter() - started > self.turn:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = None  # driven by hand: nobody to give a turn to
                if loop is not None:
                    self._resume = loop.call_soon(self._on_resume)
                    return
            key = next(iter(self._due))
            owner = self._due.pop(key)
            checked += 1
            try:
                owner.check_deadlines(now)
            except Exception:
                log.exception("checking deadlines on time failed")

    def _on_resume(self) -> None:
        self._resume = None
        self._check_due(self.clock())

    @property
    def pending(self) -> int:
        """Owners found due and waiting for their check in a later pass."""
        return len(self._due)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self._resume is not None:
            self._resume.cancel()
        self._handle = self._handle_at = self._resume = None
        self._heap.clear()
        self._due.clear()

    def _schedule(self) -> None:
        if not self._heap:
            return
        at = self._heap[0][0]
        if self._handle_at is not None and self._handle_at <= at:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # driven by hand (tests): ``fire`` is called directly, or the sweep finds the deadlines
        if self._handle is not None:
            self._handle.cancel()
        self._handle_at = at
        self._handle = loop.call_later(max(0.0, at - self.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._handle = self._handle_at = None
        self.fire(self.clock())
        self._schedule()
