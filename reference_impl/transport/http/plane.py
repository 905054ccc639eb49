"""The HTTP plane's description: ``DYN_REQUEST_PLANE=http``, published as ``{"http": "<url>"}``."""

from __future__ import annotations

from typing import Protocol

from reference_impl.transport.http.client import HttpRequestClient
from reference_impl.transport.http.server import HttpRequestServer
from reference_impl.transport.plane import Plane, RequestSink


class HttpWorkerSettings(Protocol):
    http_host: str
    http_port: int
    http_root: str
    http_body_limit: int


class HttpCallerSettings(Protocol):
    http_version: str
    http_request_timeout: float
    connect_timeout: float


def make_server(sink: RequestSink, settings: HttpWorkerSettings) -> HttpRequestServer:
    return HttpRequestServer(
        sink, settings.http_host, settings.http_port, root=settings.http_root, body_limit=settings.http_body_limit
    )


def make_client(settings: HttpCallerSettings) -> HttpRequestClient:
    """Addressed by the record's URL, which is what ``HttpRequestClient.send`` takes."""
    return HttpRequestClient(
        version=settings.http_version,
        request_timeout=settings.http_request_timeout,
        connect_timeout=settings.connect_timeout,
    )


HTTP = Plane("http", "http", make_server, make_client)
