"""A request sink for plane-server tests: records every offer, accepts, refuses or fails on demand."""

from __future__ import annotations

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
    """Answers ``reject`` (None = accept), or raises when ``fail`` is set; ``on_accept`` sees each accepted offer."""

    reject: str | None = None
    fail: bool = False
    offers: list[Offer] = field(default_factory=list)
    on_accept: Callable[[Offer], None] | None = None

    def offer(self, plane: str, route_key: str, payload: bytes, headers: Mapping[str, str]) -> str | None:
        offer = Offer(plane, route_key, payload, dict(headers))
        self.offers.append(offer)
        if self.fail:
            raise RuntimeError("sink exploded")
        if self.reject is None and self.on_accept is not None:
            self.on_accept(offer)
        return self.reject

    def payloads(self) -> list[bytes]:
        return [offer.payload for offer in self.offers]
