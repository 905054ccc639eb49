"""TCP request plane, worker side.

Each connection carries pipelined request frames.  Every frame is routed and
admitted synchronously inside ``data_received`` and its ACK written at once,
so ACKs leave in request order by construction.  A wire error (oversized
frame) gets a final ACK naming the reason and closes that connection only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from reference_impl.errors import FrameTooLarge, ProtocolError
from reference_impl.protocol import ack
from reference_impl.routing import EndpointId, instance_path, tcp_transport
from reference_impl.transport.flow import peer_name, set_nodelay
from reference_impl.transport.plane import Advertisement, RequestSink
from reference_impl.wire.request_frame import (
    DEFAULT_MAX_MESSAGE_SIZE,
    RequestFrame,
    RequestFrameDecoder,
    encode_ack,
)

log = logging.getLogger(__name__)


class _RequestConnection(asyncio.Protocol):
    def __init__(self, server: TcpRequestServer) -> None:
        self.server = server
        self.decoder = RequestFrameDecoder(max_message_size=server.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.frames = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # not isinstance: uvloop's transports are not subclasses
        set_nodelay(transport)
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        acks: list[bytes] = []
        try:
            self.decoder.feed(data)
            for frame in self.decoder:
                acks.append(self._handle(frame))
        except FrameTooLarge as exc:
            # Frames before the bad one were admitted: their ACKs go first, in order.
            self._close_with_reason(ack.read_error(str(exc)), acks)
            return
        if acks:
            transport.write(b"".join(acks))

    def _handle(self, frame: RequestFrame) -> bytes:
        self.frames += 1
        try:
            route_key = frame.path.decode("utf-8")
        except UnicodeDecodeError:
            return encode_ack(ack.invalid_endpoint_path())
        rejection = self.server.sink.offer("tcp", route_key, frame.payload, frame.headers())
        return encode_ack(rejection or b"")

    def _close_with_reason(self, reason: str, acks: list[bytes]) -> None:
        assert self.transport is not None
        log.warning("closing request connection from %s: %s", peer_name(self.transport), reason)
        self.server.record_wire_error(reason)
        self.transport.write(b"".join(acks) + encode_ack(reason))
        self.transport.close()

    def eof_received(self) -> bool | None:
        try:
            self.decoder.feed_eof()
        except ProtocolError as exc:
            assert self.transport is not None
            log.warning("request connection from %s ended mid-frame: %s", peer_name(self.transport), exc)
            self.server.record_wire_error(str(exc))
        return False

    def pause_writing(self) -> None:
        # The peer is not reading its ACKs: stop reading its requests.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)


class TcpRequestServer:
    """Listener for request frames, shared by every endpoint of a worker."""

    def __init__(
        self,
        sink: RequestSink,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.sink = sink
        self.host = host
        self.port = port
        self.max_message_size = max_message_size
        self.connections: set[_RequestConnection] = set()
        self.wire_errors: list[str] = []
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _RequestConnection(self), self.host, self.port, backlog=1024)
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]

    plane = "tcp"

    def advertise(self, endpoint: EndpointId, instance_id: int) -> Advertisement:
        path = instance_path(endpoint, instance_id)
        return Advertisement("tcp", tcp_transport(self.host, self.port, path), path)

    async def serve_endpoint(self, endpoint: EndpointId, instance_id: int) -> Advertisement:
        return self.advertise(endpoint, instance_id)  # one listener routes every path

    def record_wire_error(self, reason: str) -> None:
        self.wire_errors.append(reason)
        del self.wire_errors[:-100]

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        await self._server.wait_closed()
        self._server = None
