"""The TCP plane's description: ``DYN_REQUEST_PLANE=tcp``, published as ``{"tcp": "host:port/path"}``."""

from __future__ import annotations

from collections.abc import Awaitable

from reference_impl.routing import parse_tcp_transport
from reference_impl.transport.plane import Plane, RequestSink
from reference_impl.transport.tcp.client import TcpRequestClient
from reference_impl.transport.tcp.config import TcpCallerConfig, TcpWorkerConfig
from reference_impl.transport.tcp.server import TcpRequestServer, TcpServerLimits


class TcpPlaneClient:
    """The caller's TCP client, addressed by the record's ``host:port/path``."""

    def __init__(self, config: TcpCallerConfig) -> None:
        self.client = TcpRequestClient(
            request_timeout=config.request_timeout,
            connect_timeout=config.connect_timeout,
            max_message_size=config.max_message_size,
        )

    def send(self, address: str, headers: dict[str, str], payload: bytes) -> Awaitable[bytes]:
        target = parse_tcp_transport(address)
        headers["x-endpoint-path"] = target.path
        return self.client.send(target, headers, payload)

    async def close(self) -> None:
        await self.client.close()


def make_server(sink: RequestSink, config: TcpWorkerConfig, *, max_concurrency: int) -> TcpRequestServer:
    limits = TcpServerLimits(
        max_message_size=config.max_message_size,
        buffer_budget=config.buffer_budget,
        connection_buffer_limit=config.connection_buffer_limit,
        frame_read_timeout=config.frame_read_timeout,
        idle_timeout=config.idle_timeout,
        ack_write_timeout=config.ack_write_timeout,
        max_inflight_per_connection=config.max_inflight_per_connection or max(1, max_concurrency // 2),
    )
    return TcpRequestServer(sink, config.host, config.port, limits=limits)


TCP = Plane("tcp", "tcp", TcpWorkerConfig, TcpCallerConfig, make_server, TcpPlaneClient)
