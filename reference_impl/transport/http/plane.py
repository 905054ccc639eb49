"""The HTTP plane's description: ``DYN_REQUEST_PLANE=http``, published as ``{"http": "<url>"}``."""

from __future__ import annotations

from typing import Protocol

from reference_impl.transport.http.client import HttpRequestClient
from reference_impl.transport.http.limits import HttpGuards
from reference_impl.transport.http.server import HttpRequestServer
from reference_impl.transport.plane import Plane, RequestSink


class HttpWorkerSettings(Protocol):
    http_host: str
    http_port: int
    http_root: str
    http_body_limit: int
    http_header_timeout: float | None
    http_body_timeout: float | None
    http_send_timeout: float | None
    http_idle_timeout: float | None
    http_body_budget: int | None
    http_h2_connection_body_budget: int
    http_h2_reset_burst: int
    http_h2_reset_rate: float
    http_h2_control_burst: int
    http_h2_control_rate: float
    http_max_body_chunks: int
    http_h2_max_header_block: int


class HttpCallerSettings(Protocol):
    http_version: str
    http_request_timeout: float
    connect_timeout: float


def guards_of(settings: HttpWorkerSettings) -> HttpGuards:
    """The worker's ``http_*`` limit settings as the server's ``HttpGuards``."""
    return HttpGuards(
        header_timeout=settings.http_header_timeout,
        body_timeout=settings.http_body_timeout,
        send_timeout=settings.http_send_timeout,
        idle_timeout=settings.http_idle_timeout,
        body_budget=settings.http_body_budget,
        h2_connection_body_budget=settings.http_h2_connection_body_budget,
        h2_reset_burst=settings.http_h2_reset_burst,
        h2_reset_rate=settings.http_h2_reset_rate,
        h2_control_burst=settings.http_h2_control_burst,
        h2_control_rate=settings.http_h2_control_rate,
        max_body_chunks=settings.http_max_body_chunks,
        h2_max_header_block=settings.http_h2_max_header_block,
    )


def make_server(sink: RequestSink, settings: HttpWorkerSettings) -> HttpRequestServer:
    return HttpRequestServer(
        sink,
        settings.http_host,
        settings.http_port,
        root=settings.http_root,
        body_limit=settings.http_body_limit,
        guards=guards_of(settings),
    )


def make_client(settings: HttpCallerSettings) -> HttpRequestClient:
    """Addressed by the record's URL, which is what ``HttpRequestClient.send`` takes."""
    return HttpRequestClient(
        version=settings.http_version,
        request_timeout=settings.http_request_timeout,
        connect_timeout=settings.connect_timeout,
    )


HTTP = Plane("http", "http", make_server, make_client)
