"""TCP request plane, worker side.

Each connection carries pipelined request frames.  Every frame is routed and
admitted synchronously inside ``data_received`` and its ACK written at once,
so ACKs leave in request order by construction.  A wire error (oversized
frame) gets a final ACK naming the reason and closes that connection only.

What one connection may cost the worker is bounded (:class:`TcpServerLimits`):

* bytes held in an incomplete frame: once its prelude announces N bytes the
  connection reserves N from its own limit and from the listener's budget
  (shared by every connection) before buffering more; a reservation that
  does not fit gets an ACK naming the reason and the connection is closed.
  A frame that arrives whole in one read is never buffered, so needs none;
* time: a frame must be complete within the frame read deadline of its
  first byte, a connection that sends nothing for the idle timeout is
  closed, and a peer that leaves its ACKs unread for the ACK write deadline
  is dropped (reading its requests pauses meanwhile);
* admission: at most ``max_inflight_per_connection`` of its requests are
  admitted at once, so one connection cannot take every slot of the worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import cast

from reference_impl.errors import FrameTooLarge, ProtocolError
from reference_impl.protocol import ack
from reference_impl.routing import EndpointId, instance_path, tcp_transport
from reference_impl.transport.byte_budget import ByteBudget, trim_heap_soon
from reference_impl.transport.flow import peer_name, set_nodelay
from reference_impl.transport.plane import Advertisement, RequestSink
from reference_impl.wire.request_frame import (
    DEFAULT_MAX_REQUEST_SIZE,
    RequestFrame,
    RequestFrameDecoder,
    encode_ack,
)

log = logging.getLogger(__name__)

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TcpServerLimits:
    """What one connection, and all of them together, may cost; ``None`` turns a timeout or cap off.

    The worker's defaults and their reasons are on ``TcpWorkerConfig`` (``tcp/config.py``).
    """

    max_message_size: int = DEFAULT_MAX_REQUEST_SIZE
    buffer_budget: int = 128 * MIB
    connection_buffer_limit: int = DEFAULT_MAX_REQUEST_SIZE
    frame_read_timeout: float | None = 30.0
    idle_timeout: float | None = 300.0
    ack_write_timeout: float | None = 30.0
    max_inflight_per_connection: int | None = None


class _RequestConnection(asyncio.Protocol):
    def __init__(self, server: TcpRequestServer) -> None:
        self.server = server
        self.limits = server.limits
        self.decoder = RequestFrameDecoder(max_message_size=server.limits.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.frames = 0
        self.reserved = 0  # bytes of the listener's budget this connection holds
        self.inflight = 0  # requests admitted and not finished
        self.last_read = self.loop.time()
        self.closed = False
        self._frame_timer: asyncio.TimerHandle | None = None
        self._frame_number = -1  # self.frames when the pending frame's deadline was armed
        self._idle_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # not isinstance: uvloop's transports are not subclasses
        set_nodelay(transport)
        self.server.connections.add(self)
        if self.limits.idle_timeout is not None:
            self._idle_timer = self.loop.call_later(self.limits.idle_timeout, self._idle_check)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        transport = self.transport
        assert transport is not None
        self.last_read = self.loop.time()
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
        if self.decoder.buffered:
            self._hold_pending_frame()
        elif self._frame_timer is not None or self.reserved:
            self._frame_done()

    # -- an incomplete frame: budget and deadline ------------------------------------

    def _hold_pending_frame(self) -> None:
        wanted = self.decoder.pending_frame_size()
        if wanted > self.limits.connection_buffer_limit:
            limit = self.limits.connection_buffer_limit
            self._close_with_reason(
                ack.read_error(f"a {wanted}-byte frame exceeds the connection's {limit}-byte limit")
            )
            return
        budget = self.server.budget
        if not budget.try_resize(self.reserved, wanted):
            self._close_with_reason(ack.buffer_budget_exhausted(wanted, budget.available + self.reserved))
            return
        self.reserved = wanted
        if self.limits.frame_read_timeout is not None and (
            self._frame_timer is None or self._frame_number != self.frames
        ):
            if self._frame_timer is not None:
                self._frame_timer.cancel()
            self._frame_number = self.frames
            self._frame_timer = self.loop.call_later(self.limits.frame_read_timeout, self._frame_too_slow)

    def _frame_done(self) -> None:
        if self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None
        self.server.budget.try_resize(self.reserved, 0)
        trim_heap_soon(self.reserved)
        self.reserved = 0

    def _frame_too_slow(self) -> None:
        self._frame_timer = None
        timeout = self.limits.frame_read_timeout
        self._close_with_reason(ack.read_error(f"frame not complete within {timeout}s of its first byte"))

    def _idle_check(self) -> None:
        timeout = self.limits.idle_timeout
        assert timeout is not None
        if self.closed:
            return
        quiet = self.loop.time() - self.last_read
        if self._frame_timer is not None:  # a frame is under way: its deadline is in charge
            self._idle_timer = self.loop.call_later(timeout, self._idle_check)
            return
        if quiet < timeout:
            self._idle_timer = self.loop.call_later(max(timeout - quiet, 0.01), self._idle_check)
            return
        assert self.transport is not None
        log.info("closing request connection from %s: idle for %.0fs", peer_name(self.transport), quiet)
        self._shut(graceful=True)

    # -- requests --------------------------------------------------------------------

    def _handle(self, frame: RequestFrame) -> bytes:
        self.frames += 1
        try:
            route_key = frame.path.decode("utf-8")
        except UnicodeDecodeError:
            return encode_ack(ack.invalid_endpoint_path())
        cap = self.limits.max_inflight_per_connection
        rejection: str | None
        if cap is not None and self.inflight >= cap:
            rejection = ack.connection_at_capacity(cap)
        else:
            rejection = self.server.sink.offer(
                "tcp", route_key, frame.payload, frame.headers(), on_done=self._request_done
            )
            if rejection is None:
                self.inflight += 1
        return encode_ack(rejection or b"")

    def _request_done(self) -> None:
        self.inflight -= 1

    # -- closing ----------------------------------------------------------------------

    def _close_with_reason(self, reason: str, acks: list[bytes] | None = None) -> None:
        assert self.transport is not None
        log.warning("closing request connection from %s: %s", peer_name(self.transport), reason)
        self.server.record_wire_error(reason)
        self.transport.write(b"".join(acks or []) + encode_ack(reason))
        self._shut(graceful=True)

    def _shut(self, *, graceful: bool) -> None:
        """Stop reading, give back what is held; a graceful close still gets a bounded time to flush."""
        self.closed = True
        self._release()
        transport = self.transport
        assert transport is not None
        if not graceful:
            transport.abort()
            return
        transport.close()
        if transport.get_write_buffer_size() and self.limits.ack_write_timeout is not None:
            if self._write_timer is not None:
                self._write_timer.cancel()
            self._write_timer = self.loop.call_later(self.limits.ack_write_timeout, transport.abort)

    def _release(self) -> None:
        for timer in (self._frame_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        self._frame_timer = self._idle_timer = None
        self.server.budget.try_resize(self.reserved, 0)
        self.decoder = _SPENT  # drop the partial frame now, not when the last request of this connection ends
        trim_heap_soon(self.reserved)
        self.reserved = 0  # drop the partial frame now, not when the last request of this connection ends

    def eof_received(self) -> bool | None:
        try:
            self.decoder.feed_eof()
        except ProtocolError as exc:
            assert self.transport is not None
            log.warning("request connection from %s ended mid-frame: %s", peer_name(self.transport), exc)
            self.server.record_wire_error(str(exc))
        return False

    def pause_writing(self) -> None:
        # The peer is not reading its ACKs: stop reading its requests, and drop it if that lasts.
        if self.transport is not None:
            self.transport.pause_reading()
            if self.limits.ack_write_timeout is not None and self._write_timer is None:
                self._write_timer = self.loop.call_later(self.limits.ack_write_timeout, self._acks_unread)

    def resume_writing(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def _acks_unread(self) -> None:
        self._write_timer = None
        assert self.transport is not None
        reason = f"ACKs left unread for {self.limits.ack_write_timeout}s"
        log.warning("dropping request connection from %s: %s", peer_name(self.transport), reason)
        self.server.record_wire_error(reason)
        self._shut(graceful=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self._release()
        self.server.connections.discard(self)


_SPENT = RequestFrameDecoder(max_message_size=1)


class TcpRequestServer:
    """Listener for request frames, shared by every endpoint of a worker."""

    def __init__(
        self,
        sink: RequestSink,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_message_size: int | None = None,
        limits: TcpServerLimits | None = None,
    ) -> None:
        self.sink = sink
        self.host = host
        self.port = port
        limits = limits or TcpServerLimits()
        if max_message_size is not None:
            limits = dataclasses.replace(limits, max_message_size=max_message_size)
        self.limits = limits
        self.max_message_size = limits.max_message_size
        self.budget = ByteBudget(limits.buffer_budget)
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
