"""A request sink for plane-server tests: records every offer, accepts, refuses or fails on demand."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass
class Offer:
    plane: str
    route_key: str
    payload: bytes
    headers: dict[str, str]


@dataclass
class FakeSink:
    """Answers ``reject`` (None = accept), or raises when ``fail`` is set; ``on_accept`` sees each accepted offer.

    It runs nothing, so an accepted request has ended once offered: its ``on_done`` is called on the
    loop's next turn (after ``offer`` returned, as the sink protocol says).
    """

    reject: str | None = None
    fail: bool = False
    offers: list[Offer] = field(default_factory=list)
    on_accept: Callable[[Offer], None] | None = None

    def offer(
        self,
        plane: str,
        route_key: str,
        payload: bytes,
        headers: Mapping[str, str],
        on_done: Callable[[], None] | None = None,
    ) -> str | None:
        offer = Offer(plane, route_key, payload, dict(headers))
        self.offers.append(offer)
        if self.fail:
            raise RuntimeError("sink exploded")
        if self.reject is None:
            if self.on_accept is not None:
                self.on_accept(offer)
            if on_done is not None:
                asyncio.get_running_loop().call_soon(on_done)
        return self.reject

    def payloads(self) -> list[bytes]:
        return [offer.payload for offer in self.offers]
