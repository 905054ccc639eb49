"""What every request-plane server offers the worker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from reference_impl.routing import EndpointId


@dataclass(frozen=True, slots=True)
class Advertisement:
    """How one endpoint instance is published and routed on a plane."""

    transport_kind: str  # key in the discovery record's transport map
    address: str  # value in that map
    route_key: str  # what the plane server hands to RequestSink.offer


class RequestSink(Protocol):
    """Where a plane server hands requests (implemented by the worker)."""

    def offer(self, plane: str, route_key: str, payload: bytes, headers: Mapping[str, str]) -> str | None:
        """Admit a request: ``None`` to accept it (empty ACK), or the rejection text."""


class PlaneServer(Protocol):
    plane: str

    async def start(self) -> None: ...

    def advertise(self, endpoint: EndpointId, instance_id: int) -> Advertisement: ...

    async def serve_endpoint(self, endpoint: EndpointId, instance_id: int) -> Advertisement:
        """Make the endpoint reachable (subscribe, register a route) and say how it is published."""
        ...

    async def close(self) -> None: ...
