"""What a request plane is: its server (for the worker), its client (for the caller), and its description.

A plane lives in its own folder under ``transport/`` (server, client, ``config.py`` with its
settings for each role) and describes itself with one :class:`Plane`; ``reference_impl.planes``
registers it.  Nothing else needs to know which planes exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from reference_impl.config import Settings
from reference_impl.routing import EndpointId


@dataclass(frozen=True, slots=True)
class Advertisement:
    """How one endpoint instance is published and routed on a plane."""

    transport_kind: str  # key in the discovery record's transport map
    address: str  # value in that map
    route_key: str  # what the plane server hands to RequestSink.offer


class RequestSink(Protocol):
    """Where a plane server hands requests (implemented by the worker)."""

    def offer(
        self,
        plane: str,
        route_key: str,
        payload: bytes,
        headers: Mapping[str, str],
        on_done: Callable[[], None] | None = None,
    ) -> str | None:
        """Admit a request: ``None`` to accept it (empty ACK), or the rejection text.

        ``on_done``, when given, is called once, after ``offer`` returned ``None``, when the admitted
        request has ended (a server that caps the requests of one connection counts with it); it is
        never called for a rejected request.
        """


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


# A plane's config dataclass for each role (``reference_impl.config.Settings``).
WorkerSettings = TypeVar("WorkerSettings", bound=Settings)
CallerSettings = TypeVar("CallerSettings", bound=Settings)
WorkerSettings_contra = TypeVar("WorkerSettings_contra", bound=Settings, contravariant=True)


class ServerFactory(Protocol[WorkerSettings_contra]):
    def __call__(self, sink: RequestSink, config: WorkerSettings_contra, *, max_concurrency: int) -> PlaneServer:
        """The plane's server; ``max_concurrency`` is the worker's, for per-connection caps derived from it."""
        ...


@dataclass(frozen=True, slots=True)
class Plane(Generic[WorkerSettings, CallerSettings]):
    """One request plane, as the worker and the caller need to know it.

    Each role has a config type of its own for the plane (read from Dynamo's
    environment variables, validated at construction); ``WorkerConfig`` and
    ``CallerConfig`` hold one of each registered plane, and the factories
    take only theirs.
    """

    name: str  # DYN_REQUEST_PLANE's value
    transport_kind: str  # key of the discovery record's transport map
    worker_config: type[WorkerSettings]
    caller_config: type[CallerSettings]
    make_server: ServerFactory[WorkerSettings]
    make_client: Callable[[CallerSettings], PlaneClient]
