"""Which server and client implement each request plane."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reference_impl.transport.plane import PlaneServer, RequestSink

if TYPE_CHECKING:
    from reference_impl.worker import WorkerConfig

PLANES = ("tcp",)


def make_plane_server(plane: str, sink: RequestSink, config: WorkerConfig) -> PlaneServer:
    if plane == "tcp":
        from reference_impl.transport.tcp_server import TcpRequestServer

        return TcpRequestServer(sink, config.host, config.port, max_message_size=config.max_message_size)
    raise ValueError(f"unknown request plane {plane!r}; this build supports {', '.join(PLANES)}")
