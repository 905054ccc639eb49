"""Admission control: a bounded pool of running requests plus a bounded queue.

A request that finds both full is refused at once (``Server overloaded``)
instead of blocking the connection's read loop, as Dynamo >= 1.6 does.  The
queue is bounded in bytes too: the payloads of requests admitted (ACKed) but
not yet started by a handler count against ``bytes_budget``, so 40,000 queued
requests cannot hold 40,000 maximal payloads.  The bytes go back when the
request gets a running slot (or gives up waiting for one).
"""

from __future__ import annotations

import asyncio

MIB = 1024 * 1024
# Payload bytes of requests admitted but not yet started, across every plane: the 256 MiB RSS allowance
# for one attack, and eight maximal (32 MiB) TCP frames.  A request is admitted whatever its size when none waits.
DEFAULT_ADMITTED_BYTES_BUDGET = 256 * MIB


class Admission:
    def __init__(
        self, max_concurrency: int, queue_size: int, bytes_budget: int | None = DEFAULT_ADMITTED_BYTES_BUDGET
    ) -> None:
        if max_concurrency < 1 or queue_size < 0:
            raise ValueError("max_concurrency must be >= 1 and queue_size >= 0")
        if bytes_budget is not None and bytes_budget <= 0:
            raise ValueError("bytes_budget must be > 0 (or None for no limit)")
        self.max_concurrency = max_concurrency
        self.queue_size = queue_size
        self.bytes_budget = bytes_budget
        self.admitted = 0
        self.waiting_bytes = 0  # payload bytes of admitted requests not started yet
        self._slots = asyncio.Semaphore(max_concurrency)

    def bytes_fit(self, size: int) -> bool:
        """Would a payload of ``size`` bytes fit the bytes budget?  Always when no admitted request waits."""
        return self.bytes_budget is None or not self.waiting_bytes or self.waiting_bytes + size <= self.bytes_budget

    @property
    def bytes_free(self) -> int | None:
        return None if self.bytes_budget is None else max(0, self.bytes_budget - self.waiting_bytes)

    def try_admit(self, size: int = 0) -> bool:
        """Admit a request whose payload is ``size`` bytes (held until :meth:`started`), if count and bytes allow."""
        if self.admitted >= self.max_concurrency + self.queue_size:
            return False
        if not self.bytes_fit(size):
            return False
        self.admitted += 1
        self.waiting_bytes += size
        return True

    def started(self, size: int) -> None:
        """An admitted request of ``size`` bytes left the queue (it runs, or gave up): its bytes are free."""
        self.waiting_bytes -= size
        if self.waiting_bytes < 0:
            raise AssertionError(f"started {-self.waiting_bytes} bytes more than were admitted")

    def release(self) -> None:
        self.admitted -= 1

    def running(self) -> asyncio.Semaphore:
        """``async with`` it to hold one of the concurrency slots (waiting in the queue until one frees)."""
        return self._slots
