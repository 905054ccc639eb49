"""What a request plane is: its server (for the worker), its client (for the caller), and its description.

A plane lives in its own folder under ``transport/`` and describes itself with one :class:`Plane`;
``reference_impl.planes`` registers it.  Nothing else needs to know which planes exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

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


class PlaneClient(Protocol):
    """What every request-plane client offers the caller."""

    def send(self, address: str, headers: dict[str, str], payload: bytes, /) -> Awaitable[bytes]:
        """Deliver one request to the address a discovery record gives; the ACK bytes (empty = accepted)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Plane:
    """One request plane, as the worker and the caller need to know it.

    The factories take the worker's and the caller's validated configuration
    (``WorkerConfig``/``CallerConfig``, which read Dynamo's environment
    variables); each plane reads only its own fields of it.
    """

    name: str  # DYN_REQUEST_PLANE's value
    transport_kind: str  # key of the discovery record's transport map
    make_server: Callable[[RequestSink, Any], PlaneServer]
    make_client: Callable[[Any], PlaneClient]
