"""The HTTP plane's description: ``DYN_REQUEST_PLANE=http``, published as ``{"http": "<url>"}``."""

from __future__ import annotations

from reference_impl.transport.http.client import HttpRequestClient
from reference_impl.transport.http.config import HttpCallerConfig, HttpWorkerConfig
from reference_impl.transport.http.server import HttpRequestServer
from reference_impl.transport.plane import Plane, RequestSink


def make_server(sink: RequestSink, config: HttpWorkerConfig, *, max_concurrency: int) -> HttpRequestServer:
    return HttpRequestServer(
        sink, config.host, config.port, root=config.root, body_limit=config.body_limit, guards=config.guards
    )


def make_client(config: HttpCallerConfig) -> HttpRequestClient:
    """Addressed by the record's URL, which is what ``HttpRequestClient.send`` takes."""
    return HttpRequestClient(
        version=config.version, request_timeout=config.request_timeout, connect_timeout=config.connect_timeout
    )


HTTP = Plane("http", "http", HttpWorkerConfig, HttpCallerConfig, make_server, make_client)
