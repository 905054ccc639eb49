"""The HTTP plane's description: ``DYN_REQUEST_PLANE=http``, published as ``{"http": "<url>"}``.

The server and client (and h11/h2 with them) are imported when first made, not with the description:
every process imports all descriptions (``reference_impl.planes``), few use this plane.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reference_impl.transport.http.config import HttpCallerConfig, HttpWorkerConfig
from reference_impl.transport.plane import Plane, RequestSink

if TYPE_CHECKING:
    from reference_impl.transport.http.client import HttpRequestClient
    from reference_impl.transport.http.server import HttpRequestServer


def make_server(sink: RequestSink, config: HttpWorkerConfig, *, max_concurrency: int) -> HttpRequestServer:
    from reference_impl.transport.http.server import HttpRequestServer

    return HttpRequestServer(
        sink, config.host, config.port, root=config.root, body_limit=config.body_limit, guards=config.guards
    )


def make_client(config: HttpCallerConfig) -> HttpRequestClient:
    """Addressed by the record's URL, which is what ``HttpRequestClient.send`` takes."""
    from reference_impl.transport.http.client import HttpRequestClient

    return HttpRequestClient(
        version=config.version, request_timeout=config.request_timeout, connect_timeout=config.connect_timeout
    )


HTTP = Plane("http", "http", HttpWorkerConfig, HttpCallerConfig, make_server, make_client)
