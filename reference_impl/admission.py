"""Admission control: a bounded pool of running requests plus a bounded queue.

A request that finds both full is refused at once (``Server overloaded``)
instead of blocking the connection's read loop, as Dynamo >= 1.6 does.
"""

from __future__ import annotations

import asyncio


class Admission:
    def __init__(self, max_concurrency: int, queue_size: int) -> None:
        if max_concurrency < 1 or queue_size < 0:
            raise ValueError("max_concurrency must be >= 1 and queue_size >= 0")
        self.max_concurrency = max_concurrency
        self.queue_size = queue_size
        self.admitted = 0
        self._slots = asyncio.Semaphore(max_concurrency)

    def try_admit(self) -> bool:
        if self.admitted >= self.max_concurrency + self.queue_size:
            return False
        self.admitted += 1
        return True

    def release(self) -> None:
        self.admitted -= 1

    def running(self) -> asyncio.Semaphore:
        """``async with`` it to hold one of the concurrency slots (waiting in the queue until one frees)."""
        return self._slots
