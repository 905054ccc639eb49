"""The TCP plane's description: ``DYN_REQUEST_PLANE=tcp``, published as ``{"tcp": "host:port/path"}``."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from reference_impl.routing import parse_tcp_transport
from reference_impl.transport.plane import Plane, RequestSink
from reference_impl.transport.tcp.client import TcpRequestClient
from reference_impl.transport.tcp.server import TcpRequestServer, TcpServerLimits


class TcpWorkerSettings(Protocol):
    host: str
    port: int
    max_message_size: int
    max_concurrency: int
    tcp_buffer_budget: int
    tcp_connection_buffer_limit: int
    tcp_frame_read_timeout: float | None
    tcp_idle_timeout: float | None
    tcp_ack_write_timeout: float | None
    tcp_max_inflight_per_connection: int | None


class TcpCallerSettings(Protocol):
    request_timeout: float
    connect_timeout: float
    max_message_size: int


class TcpPlaneClient:
    """The caller's TCP client, addressed by the record's ``host:port/path``."""

    def __init__(self, settings: TcpCallerSettings) -> None:
        self.client = TcpRequestClient(
            request_timeout=settings.request_timeout,
            connect_timeout=settings.connect_timeout,
            max_message_size=settings.max_message_size,
        )

    def send(self, address: str, headers: dict[str, str], payload: bytes) -> Awaitable[bytes]:
        target = parse_tcp_transport(address)
        headers["x-endpoint-path"] = target.path
        return self.client.send(target, headers, payload)

    async def close(self) -> None:
        await self.client.close()


def make_server(sink: RequestSink, settings: TcpWorkerSettings) -> TcpRequestServer:
    limits = TcpServerLimits(
        max_message_size=settings.max_message_size,
        buffer_budget=settings.tcp_buffer_budget,
        connection_buffer_limit=settings.tcp_connection_buffer_limit,
        frame_read_timeout=settings.tcp_frame_read_timeout,
        idle_timeout=settings.tcp_idle_timeout,
        ack_write_timeout=settings.tcp_ack_write_timeout,
        max_inflight_per_connection=settings.tcp_max_inflight_per_connection or max(1, settings.max_concurrency // 2),
    )
    return TcpRequestServer(sink, settings.host, settings.port, limits=limits)


TCP = Plane("tcp", "tcp", make_server, TcpPlaneClient)
