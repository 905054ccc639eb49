"""h2c (prior knowledge) connection for the HTTP request plane: every request is a stream.

Streams are opened only once the worker's SETTINGS are known and while it
allows more concurrent streams; requests beyond that wait for a slot.  A
body goes out as the peer's flow-control windows allow.  A RST_STREAM fails
only its own request.  A GOAWAY retires the connection: streams the worker
says it will process finish, the others fail at once with a
``TransportError`` (never replayed), and requests that had not yet been sent
learn it through ``ConnectionRetired`` so the client can open a new
connection for them.  GOAWAY frames bypass h2 (see ``http2_goaway``).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from reference_impl.errors import TransportError
from reference_impl.transport.flow import WriteFlowControl, peer_name, set_nodelay
from reference_impl.transport.http.http2_goaway import NO_ERROR, Goaway, GoawayFilter
from reference_impl.transport.http.target import HeaderFields, HttpTarget

MAX_ANSWER_BODY = 64 * 1024  # an ACK is empty and a rejection a line of text; keep no more than this


class ConnectionRetired(Exception):
    """The connection takes no new streams; the request was not sent on it."""


@dataclass(slots=True)
class _Exchange:
    answer: asyncio.Future[tuple[int, bytes]]
    status: int = 0
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    sent_all: bool = False  # our END_STREAM is out
    closed: bool = False  # h2 considers the stream closed (ended both ways or reset)
    window: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self.window is not None and not self.window.done():
            self.window.set_result(None)

    def fail(self, error: TransportError) -> None:
        if not self.answer.done():
            self.answer.set_exception(error)
        self.wake()


def _mark_retrieved(future: asyncio.Future[tuple[int, bytes]]) -> None:
    """A caller that gave up no longer awaits its answer; do not warn about it."""
    if not future.cancelled():
        future.exception()


def _error_name(code: int) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"


class Http2ClientConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.goaways = GoawayFilter()
        self.transport: asyncio.Transport | None = None
        self.peer = "worker"
        self.flow = WriteFlowControl()
        self.streams: dict[int, _Exchange] = {}
        self.settings_seen = False
        self.retired: TransportError | None = None  # why no new streams may start here
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._handlers: dict[type[h2.events.Event], Callable[..., None]] = {
            h2.events.ResponseReceived: self._on_response,
            h2.events.DataReceived: self._on_data,
            h2.events.StreamEnded: self._on_stream_ended,
            h2.events.StreamReset: self._on_stream_reset,
            h2.events.WindowUpdated: self._on_window,
            h2.events.RemoteSettingsChanged: self._on_settings,
        }

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # not isinstance: uvloop's transports are not subclasses
        self.peer = peer_name(transport)
        set_nodelay(transport)
        self.h2.initiate_connection()
        self._flush()

    @property
    def accepting(self) -> bool:
        return self.retired is None and self.transport is not None and not self.transport.is_closing()

    # -- one request --------------------------------------------------------------------

    async def exchange(self, target: HttpTarget, fields: HeaderFields, payload: bytes) -> tuple[int, bytes]:
        await self._wait_for_slot()
        try:
            stream_id = self.h2.get_next_available_stream_id()
        except h2.exceptions.NoAvailableStreamIDError:
            self.retired = TransportError(f"HTTP/2 stream ids to {self.peer} are used up")
            raise ConnectionRetired(str(self.retired)) from None
        exchange = _Exchange(asyncio.get_running_loop().create_future())
        exchange.answer.add_done_callback(_mark_retrieved)
        self.streams[stream_id] = exchange
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", target.authority),
            (b":path", target.path),
            *fields,
            (b"content-length", str(len(payload)).encode()),
        ]
        try:
            try:
                self.h2.send_headers(stream_id, headers, end_stream=not payload)
                exchange.sent_all = not payload
                self._flush()
                if payload:
                    await self._send_body(stream_id, exchange, payload)
            except h2.exceptions.ProtocolError as exc:
                if not exchange.answer.done():
                    raise TransportError(f"cannot send on HTTP/2 stream {stream_id} to {self.peer}: {exc}") from exc
            return await exchange.answer
        finally:
            self._finish(stream_id, exchange)

    async def _wait_for_slot(self) -> None:
        while True:
            if self.retired is not None:
                raise ConnectionRetired(str(self.retired))
            if self.settings_seen and self._free_slots() > 0:
                return
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                self._wake_slot_waiters()  # pass on a wake-up this request can no longer use
                raise

    def _free_slots(self) -> int:
        limit = self.h2.remote_settings.max_concurrent_streams
        return limit - max(len(self.streams), self.h2.open_outbound_streams)

    def _wake_slot_waiters(self) -> None:
        free = len(self._slot_waiters) if self.retired is not None else self._free_slots()
        while free > 0 and self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    async def _send_body(self, stream_id: int, exchange: _Exchange, payload: bytes) -> None:
        view = memoryview(payload)
        offset = 0
        while offset < len(payload):
            if exchange.answer.done():
                return  # answered (or failed) before the whole body went out: stop sending
            window = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
            if window <= 0:
                exchange.window = asyncio.get_running_loop().create_future()
                await exchange.window
                continue
            end = min(len(payload), offset + window)
            self.h2.send_data(stream_id, bytes(view[offset:end]), end_stream=end == len(payload))
            offset = end
            exchange.sent_all = end == len(payload)
            self._flush()
            try:
                await self.flow.drain()
            except OSError:
                return  # connection lost: the answer future carries the error

    def _finish(self, stream_id: int, exchange: _Exchange) -> None:
        """The request is over for its caller; cancel the stream if the worker may still be busy with it."""
        self.streams.pop(stream_id, None)
        if not exchange.closed and self.h2_usable:
            try:
                self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.ProtocolError:
                pass  # already closed on h2's side
            self._flush()
        self._wake_slot_waiters()
        if self.retired is not None and not self.streams:
            self.close()

    # -- inbound ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            for part in self.goaways.feed(data):
                if isinstance(part, Goaway):
                    self._on_goaway(part)
                    continue
                for event in self.h2.receive_data(part):
                    handler = self._handlers.get(type(event))
                    if handler is not None:
                        handler(event)
                self._flush()
        except h2.exceptions.ProtocolError as exc:
            self._flush()  # h2 queued a GOAWAY naming the error
            self._break(TransportError(f"bad HTTP/2 from worker at {self.peer}: {exc}"))

    def _on_response(self, event: h2.events.ResponseReceived) -> None:
        exchange = self.streams.get(event.stream_id)
        if exchange is None:
            return
        for name, value in event.headers or ():
            if name == b":status":
                exchange.status = int(value)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        exchange = self.streams.get(event.stream_id)
        if exchange is None or exchange.size >= MAX_ANSWER_BODY:
            return
        data = event.data[: MAX_ANSWER_BODY - exchange.size]
        exchange.chunks.append(data)
        exchange.size += len(data)

    def _on_stream_ended(self, event: h2.events.StreamEnded) -> None:
        exchange = self.streams.get(event.stream_id)
        if exchange is None:
            return
        exchange.closed = exchange.sent_all
        if not exchange.answer.done():
            exchange.answer.set_result((exchange.status, b"".join(exchange.chunks)))
        exchange.wake()

    def _on_stream_reset(self, event: h2.events.StreamReset) -> None:
        exchange = self.streams.get(event.stream_id)
        if exchange is None:
            return
        exchange.closed = True
        # After a complete answer, RST_STREAM(NO_ERROR) only stops our body (RFC 9113 §8.1).
        code = int(event.error_code) if event.error_code is not None else 0
        not_processed = " (refused: not processed)" if code == h2.errors.ErrorCodes.REFUSED_STREAM else ""
        exchange.fail(
            TransportError(
                f"worker at {self.peer} reset HTTP/2 stream {event.stream_id} with {_error_name(code)}{not_processed}"
            )
        )

    def _on_window(self, event: h2.events.WindowUpdated) -> None:
        if event.stream_id:
            exchange = self.streams.get(event.stream_id)
            if exchange is not None:
                exchange.wake()
        else:
            for exchange in self.streams.values():
                exchange.wake()

    def _on_settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        self.settings_seen = True
        for exchange in self.streams.values():
            exchange.wake()  # the initial window may have grown
        self._wake_slot_waiters()

    def _on_goaway(self, goaway: Goaway) -> None:
        detail = goaway.debug_data.decode("utf-8", "replace")
        reason = (
            f"worker at {self.peer} sent GOAWAY (last_stream_id={goaway.last_stream_id}, "
            f"{_error_name(goaway.error_code)}{': ' + detail if detail else ''})"
        )
        if self.retired is None:
            self.retired = TransportError(reason)
        for stream_id, exchange in self.streams.items():
            if stream_id > goaway.last_stream_id:
                exchange.closed = True  # the worker ignores it; nothing to cancel
                exchange.fail(TransportError(f"{reason}: stream {stream_id} was not processed and is not retried"))
        self._wake_slot_waiters()
        if goaway.error_code != NO_ERROR or not self.streams:
            # An error GOAWAY ends the connection; a graceful one ends once the last stream is answered.
            if goaway.error_code != NO_ERROR:
                self._break(TransportError(reason))
            else:
                self.close()

    # -- connection life ----------------------------------------------------------------

    def eof_received(self) -> bool | None:
        self._break(TransportError(f"worker at {self.peer} closed the HTTP/2 connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.flow.lost(exc or ConnectionResetError("HTTP/2 connection closed"))
        reason = f": {exc!r}" if exc else ""
        self._break(TransportError(f"HTTP/2 connection to worker at {self.peer} lost{reason}"))

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    def _break(self, error: TransportError) -> None:
        """Fail every request on this connection and close it."""
        if self.retired is None:
            self.retired = error
        for exchange in self.streams.values():
            exchange.closed = True
            exchange.fail(error)
        self._wake_slot_waiters()
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    @property
    def h2_usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    @property
    def closed(self) -> bool:
        return self.transport is not None and self.transport.is_closing()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
