"""The TCP plane's description: ``DYN_REQUEST_PLANE=tcp``, published as ``{"tcp": "host:port/path"}``."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from reference_impl.routing import parse_tcp_transport
from reference_impl.transport.plane import Plane, RequestSink
from reference_impl.transport.tcp.client import TcpRequestClient
from reference_impl.transport.tcp.server import TcpRequestServer


class TcpWorkerSettings(Protocol):
    host: str
    port: int
    max_message_size: int


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
    return TcpRequestServer(sink, settings.host, settings.port, max_message_size=settings.max_message_size)


TCP = Plane("tcp", "tcp", make_server, TcpPlaneClient)
