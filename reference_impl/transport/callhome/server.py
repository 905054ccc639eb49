"""Caller side of the response stream: the listener workers dial back to.

One listener serves every pending call of a caller.  A call registers a
fresh subject; the worker's first frame names it, and from then on that
connection belongs to the call.  Unknown subjects are reset without a byte,
as Dynamo does.  Reading pauses while a consumer lags, so a slow consumer
pushes back on the worker through TCP instead of growing a buffer.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

from reference_impl.errors import (
    CallHomeTimeout,
    PrologueError,
    StreamIncomplete,
    StreamProtocolViolation,
)
from reference_impl.protocol.messages import Cancel, ConnectionInfo, TcpStreamConnectionInfo
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.protocol.response_stream import (
    CallerStream,
    Event,
    FinalReceived,
    HandshakeReceived,
    ItemReceived,
    PrologueReceived,
    ProtocolViolation,
    SentinelReceived,
    StreamClosed,
)
from reference_impl.routing import format_socket_address
from reference_impl.transport.flow import peer_name, reset_connection, set_nodelay
from reference_impl.wire import two_part

log = logging.getLogger(__name__)

HIGH_WATER_ITEMS = 256
LOW_WATER_ITEMS = 64
DEFAULT_HANDSHAKE_TIMEOUT = 10.0


class PendingResponse:
    """One call's response stream, from registration to the last item."""

    def __init__(self, server: ResponseStreamServer, info: TcpStreamConnectionInfo, codec: PayloadCodec) -> None:
        self._server = server
        self.info = info
        self.codec = codec
        self.connection: _CallHomeProtocol | None = None
        self._items: collections.deque[Any] = collections.deque()
        self._end: BaseException | None = None  # set once the stream has ended
        self._ended = False
        self._prologue: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wakeup: asyncio.Future[None] | None = None
        self._cancel_requested: Cancel | None = None
        self._dropped = False
        self.registered_at = time.monotonic()
        self.connected_at: float | None = None
        self.complete = False

    @property
    def connection_info(self) -> ConnectionInfo:
        return ConnectionInfo.for_tcp(self.info)

    # -- called by the connection ---------------------------------------------

    def attach(self, connection: _CallHomeProtocol) -> None:
        self.connection = connection
        self.connected_at = time.monotonic()
        connection.machine.codec = self.codec
        if self._cancel_requested is not None:
            connection.send_cancel(self._cancel_requested)

    def on_event(self, event: Event) -> None:
        if isinstance(event, ItemReceived):
            if self._dropped:
                return  # nobody will read it
            self._items.append(event.data)
            if len(self._items) >= HIGH_WATER_ITEMS and self.connection is not None:
                self.connection.pause_reading()
        elif isinstance(event, PrologueReceived):
            if event.error is None:
                self._settle_prologue(None)
            else:
                self._settle_prologue(PrologueError(event.error, event.typed_error))
                self._finish(None)
                if self.connection is not None:
                    self.connection.close()
        elif isinstance(event, FinalReceived):
            self.complete = True
        elif isinstance(event, SentinelReceived):
            incomplete = (
                None
                if self.complete or self._cancel_requested
                else StreamIncomplete("worker sent the sentinel without complete_final: the stream is incomplete")
            )
            self._finish(incomplete)
            if self.connection is not None:
                self.connection.close()
        elif isinstance(event, ProtocolViolation):
            violation = StreamProtocolViolation(event.reason)
            self._settle_prologue(violation)
            self._finish(violation)
            if self.connection is not None:
                self.connection.send_cancel(Cancel.KILL)
                self.connection.close()
        elif isinstance(event, StreamClosed):
            if event.complete or event.cancelled:
                self._finish(None)
            else:
                error = StreamIncomplete("stream ended before generation completed (no complete_final)")
                self._settle_prologue(error)
                self._finish(error)
        self._wake()

    def on_connection_lost(self, exc: BaseException | None) -> None:
        if not self._ended:
            self.on_event(self.connection.machine.receive_eof() if self.connection else StreamClosed(False))

    # -- consumer API -------------------------------------------------------------

    def _settle_prologue(self, error: BaseException | None) -> None:
        if not self._prologue.done():
            if error is None:
                self._prologue.set_result(None)
            else:
                self._prologue.set_exception(error)

    def _finish(self, error: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self._end = error
            self._server.forget(self.info.subject)

    def _wake(self) -> None:
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_prologue(self, timeout: float | None) -> None:
        """Wait until the worker called home and sent ``{"error":null}``."""
        try:
            async with asyncio.timeout(timeout):  # cheaper than wait_for, once per request
                await asyncio.shield(self._prologue)
        except TimeoutError:
            error = CallHomeTimeout(
                f"worker acknowledged the request but did not call home within {timeout:.1f}s"
                if self.connection is None
                else f"worker called home but sent no prologue within {timeout:.1f}s"
            )
            self._settle_prologue(error)
            self._finish(error)
            if self.connection is not None:
                self.connection.send_cancel(Cancel.KILL)
                self.connection.close()
            raise error from None

    async def next_item(self) -> Any:
        """Next item; ``StopAsyncIteration`` at a clean end, the stream's error otherwise."""
        while True:
            if self._items:
                item = self._items.popleft()
                if len(self._items) <= LOW_WATER_ITEMS and self.connection is not None:
                    self.connection.resume_reading()
                return item
            if self._ended:
                if self._end is not None:
                    raise self._end
                raise StopAsyncIteration
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        return await self.next_item()

    def cancel(self, kind: str) -> None:
        """Send ``"stop"`` (keep reading to the end) or ``"kill"`` (and drop the stream)."""
        if self._ended:
            return
        word = Cancel(kind)
        if word.overrides(self._cancel_requested):
            self._cancel_requested = word
        if self.connection is not None:
            self.connection.send_cancel(word)
        if word is Cancel.KILL:
            self._items.clear()
            self._finish(None)
            if self.connection is not None:
                self.connection.close()
            self._wake()

    @property
    def ended(self) -> bool:
        return self._ended

    def drop(self, grace: float) -> None:
        """The consumer is gone without a word: ``stop`` now, ``kill`` if the stream still runs after ``grace`` s."""
        if self._ended or self._dropped:
            return
        self._dropped = True
        self._items.clear()
        if self.connection is not None:
            self.connection.resume_reading()
        self.cancel(Cancel.STOP)
        asyncio.get_running_loop().call_later(grace, self.cancel, Cancel.KILL)

    def abandon(self) -> None:
        """The consumer went away: kill the stream if it is still running."""
        if not self._ended:
            self.cancel(Cancel.KILL)
        self._server.forget(self.info.subject)
        if not self._prologue.done():
            self._prologue.cancel()


class _CallHomeProtocol(asyncio.Protocol):
    def __init__(self, server: ResponseStreamServer) -> None:
        self.server = server
        self.machine = CallerStream(max_message_size=server.max_message_size, verify_checksum=server.verify_checksum)
        self.transport: asyncio.Transport | None = None
        self.pending: PendingResponse | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._reading_paused = False
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # not isinstance: uvloop's transports are not subclasses
        set_nodelay(transport)
        self.server.connections.add(self)
        loop = asyncio.get_running_loop()
        self._handshake_timer = loop.call_later(self.server.handshake_timeout, self._handshake_timed_out)

    def _handshake_timed_out(self) -> None:
        if self.pending is None and self.transport is not None:
            log.warning(
                "call-home from %s sent no handshake within %.1fs; closing",
                peer_name(self.transport),
                self.server.handshake_timeout,
            )
            self.server.record_rejection("handshake timeout")
            reset_connection(self.transport)

    def data_received(self, data: bytes) -> None:
        for event in self.machine.receive_data(data):
            if isinstance(event, HandshakeReceived):
                if not self._bind(event):
                    return
                continue
            if self.pending is None:
                reason = event.reason if isinstance(event, ProtocolViolation) else "frame before handshake"
                self._refuse(reason)
                return
            self.pending.on_event(event)

    def _bind(self, event: HandshakeReceived) -> bool:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        pending = self.server.claim(event.subject) if event.stream_type == "response" else None
        if pending is None:
            what = (
                "unknown subject" if event.stream_type == "response" else f"unsupported stream_type {event.stream_type}"
            )
            self._refuse(f"{what} {event.subject!r}")
            return False
        self.pending = pending
        pending.attach(self)
        return True

    def _refuse(self, reason: str) -> None:
        assert self.transport is not None
        log.warning("refusing call-home connection from %s: %s", peer_name(self.transport), reason)
        self.server.record_rejection(reason)
        reset_connection(self.transport)
        self._closed = True

    def eof_received(self) -> bool | None:
        if self.pending is not None:
            self.pending.on_event(self.machine.receive_eof())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        self.server.connections.discard(self)
        if self.pending is not None:
            self.pending.on_connection_lost(exc)

    def send_cancel(self, kind: str) -> None:
        frame = self.machine.send_cancel(kind)
        if frame and self.transport is not None and not self._closed:
            self.transport.write(frame)

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self._closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self._closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        """Graceful close: flush anything queued, then FIN."""
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.close()


class ResponseStreamServer:
    """The caller's call-home listener."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        max_message_size: int | None = two_part.DEFAULT_MAX_MESSAGE_SIZE,
        verify_checksum: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.handshake_timeout = handshake_timeout
        self.max_message_size = max_message_size
        self.verify_checksum = verify_checksum
        self._server: asyncio.AbstractServer | None = None
        self._pending: dict[str, PendingResponse] = {}
        self.connections: set[_CallHomeProtocol] = set()
        self.rejections: list[str] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _CallHomeProtocol(self), self.host, self.port, backlog=1024)
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]

    @property
    def address(self) -> str:
        return format_socket_address(self.host, self.port)

    def register(self, context_id: str, codec: PayloadCodec) -> PendingResponse:
        subject = str(uuid.uuid4())
        info = TcpStreamConnectionInfo(address=self.address, subject=subject, context=context_id)
        pending = PendingResponse(self, info, codec)
        self._pending[subject] = pending
        return pending

    def claim(self, subject: str) -> PendingResponse | None:
        """A subject is good for one connection only."""
        pending = self._pending.pop(subject, None)
        if pending is not None and pending.ended:
            return None
        return pending

    def forget(self, subject: str) -> None:
        self._pending.pop(subject, None)

    def record_rejection(self, reason: str) -> None:
        self.rejections.append(reason)
        del self.rejections[:-100]

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self.connections):
                if connection.transport is not None:
                    connection.transport.abort()
            await self._server.wait_closed()
            self._server = None
