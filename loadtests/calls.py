"""The timed calls every load profile is made of, as asyncio coroutines.

Why here and not in the locustfile: the Locust users and the benchmark run
these same coroutines on the reference ``Caller``, so "the same load
generator" is literally the same code.  Each call is timed inside the event
loop with ``perf_counter_ns`` (from just before the request is sent to the
end of its stream), checks what the standard endpoint must answer, and
returns a :class:`CallOutcome`; it never raises except when cancelled.  The
plane reported is the one in the worker's discovery record, so nothing here
depends on which plane carries the request.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

from reference_impl.caller import Caller
from reference_impl.routing import EndpointId

NS_PER_MS = 1_000_000
ItemCheck = Callable[[int, Any], int]  # (index, item) -> payload bytes; raises UnexpectedResponse


class UnexpectedResponse(Exception):
    """The worker answered, but not what the standard endpoint must answer."""


@dataclass(slots=True)
class CallOutcome:
    name: str  # stats row name: "<profile>/<operation>"
    plane: str
    latency_ms: float
    first_item_ms: float | None
    items: int
    payload_bytes: int
    error: BaseException | None = None


@dataclass(frozen=True)
class Cancel:
    mode: str  # "stop" or "kill"
    after_items: int


class LoadCalls:
    """Timed calls to the standard endpoints of one worker (``namespace.component.*``)."""

    def __init__(self, caller: Caller, namespace: str, component: str, *, plane: str, deadline_s: float = 30.0):
        self.caller = caller
        self.plane = plane
        self.deadline_s = deadline_s
        self._endpoints = {name: EndpointId(namespace, component, name) for name in ("echo", "stream", "sink", "slow")}
        self._blobs: dict[int, tuple[str, str]] = {}
        self._tags = itertools.count()

    def endpoint(self, name: str) -> EndpointId:
        return self._endpoints[name]

    async def echo(self, name: str, text: str) -> CallOutcome:
        """One small request, one small item: the request echoed back."""
        request = {"text": text}

        def check(index: int, item: Any) -> int:
            if item != request:
                raise UnexpectedResponse(f"echo returned {str(item)[:80]!r}")
            return len(text)

        return await self._timed(name, "echo", request, check, expect_items=1)

    async def stream(self, name: str, count: int, size: int) -> CallOutcome:
        """``count`` items of ``size`` padding bytes, numbered in order."""

        def check(index: int, item: Any) -> int:
            if not isinstance(item, dict) or item.get("seq") != index or len(item.get("pad", "")) != size:
                raise UnexpectedResponse(f"stream item {index} was {str(item)[:80]!r}")
            return size

        return await self._timed(name, "stream", {"count": count, "size": size}, check, expect_items=count)

    def blob(self, size: int) -> tuple[str, str]:
        """A ``size``-byte text payload and its SHA-256, built once per size."""
        if size not in self._blobs:
            text = ("0123456789abcdef" * (size // 16 + 1))[:size]
            self._blobs[size] = (text, hashlib.sha256(text.encode()).hexdigest())
        return self._blobs[size]

    async def sink(self, name: str, size: int) -> CallOutcome:
        """A ``size``-byte request body; the worker must report its size and SHA-256."""
        text, digest = self.blob(size)
        expected = {"size": size, "sha256": digest}

        def check(index: int, item: Any) -> int:
            if item != expected:
                raise UnexpectedResponse(f"sink reported {str(item)[:120]!r}, expected {expected}")
            return size

        return await self._timed(name, "sink", {"blob": text}, check, expect_items=1)

    async def cancelled(self, name: str, cancel: Cancel, *, interval_s: float = 0.002, count: int = 100) -> CallOutcome:
        """A slow stream the caller cancels after ``cancel.after_items`` items.

        ``stop`` must end the stream cleanly (no error) before all ``count``
        items; ``kill`` drops it at once.
        """
        request = {"interval": interval_s, "count": count, "tag": f"load-{cancel.mode}-{next(self._tags) % 64}"}

        def check(index: int, item: Any) -> int:
            if not isinstance(item, dict) or item.get("seq") != index:
                raise UnexpectedResponse(f"slow item {index} was {str(item)[:80]!r}")
            return 0

        return await self._timed(name, "slow", request, check, expect_items=None, cancel=cancel, most_items=count - 1)

    async def _timed(
        self,
        name: str,
        endpoint: str,
        request: Any,
        check: ItemCheck,
        *,
        expect_items: int | None,
        cancel: Cancel | None = None,
        most_items: int | None = None,
    ) -> CallOutcome:
        plane = self.plane
        items = 0
        payload_bytes = 0
        first_ns: int | None = None
        error: BaseException | None = None
        start_ns = perf_counter_ns()
        try:
            async with asyncio.timeout(self.deadline_s):
                stream = await self.caller.generate(self._endpoints[endpoint], request)
                plane = stream.plane or plane
                try:
                    async for item in stream:
                        if first_ns is None:
                            first_ns = perf_counter_ns()
                        payload_bytes += check(items, item)
                        items += 1
                        if cancel is not None and items == cancel.after_items:
                            if cancel.mode == "kill":
                                stream.kill()
                                break
                            stream.stop()
                finally:
                    await stream.aclose()
            if expect_items is not None and items != expect_items:
                raise UnexpectedResponse(f"{endpoint} sent {items} items, expected {expect_items}")
            if most_items is not None and items > most_items:
                raise UnexpectedResponse(f"{endpoint} sent {items} items after {cancel}: the cancel was ignored")
        except TimeoutError:
            error = TimeoutError(f"{endpoint}: no end of stream within {self.deadline_s}s")
        except Exception as exc:
            error = exc
        end_ns = perf_counter_ns()
        return CallOutcome(
            name=name,
            plane=plane,
            latency_ms=(end_ns - start_ns) / NS_PER_MS,
            first_item_ms=None if first_ns is None else (first_ns - start_ns) / NS_PER_MS,
            items=items,
            payload_bytes=payload_bytes,
            error=error,
        )
