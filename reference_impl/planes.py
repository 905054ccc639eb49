"""Which server and client implement each request plane."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reference_impl.transport.plane import PlaneServer, RequestSink

if TYPE_CHECKING:
    from reference_impl.worker import WorkerConfig

PLANES = ("tcp", "nats", "http")


def make_plane_server(plane: str, sink: RequestSink, config: WorkerConfig) -> PlaneServer:
    if plane == "tcp":
        from reference_impl.transport.tcp.server import TcpRequestServer

        return TcpRequestServer(sink, config.host, config.port, max_message_size=config.max_message_size)
    if plane == "nats":
        from reference_impl import __version__
        from reference_impl.transport.nats.server import NatsRequestServer

        return NatsRequestServer(sink, config.nats_url, service_version=__version__)
    if plane == "http":
        from reference_impl.transport.http.server import HttpRequestServer

        return HttpRequestServer(
            sink, config.http_host, config.http_port, root=config.http_root, body_limit=config.http_body_limit
        )
    raise ValueError(f"unknown request plane {plane!r}; this build supports {', '.join(PLANES)}")
