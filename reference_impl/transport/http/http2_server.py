"""HTTP/2 (h2c, prior knowledge) on the worker's HTTP request plane.

One ``Http2ServerSession`` drives hyper-h2 for one connection.  Each stream
is one request: its body is collected under the size limit (DATA is
acknowledged as it arrives, so the peer's window reopens), then offered to
the sink and answered.  Per-stream trouble (too large, early answers) ends
only that stream; a protocol error ends the connection with a GOAWAY naming
the reason.  GOAWAY frames bypass h2 (see ``http2_goaway``) so that a
graceful shutdown, ours or the peer's, lets the streams in flight finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from reference_impl.transport.http.http2_goaway import NO_ERROR, Goaway, GoawayFilter, encode_goaway
from reference_impl.transport.http.routing import (
    TOO_LARGE,
    Admit,
    HttpAnswer,
    HttpServerLimits,
    ReportWireError,
    declared_length,
    http_date,
    route,
    sink_headers,
)

log = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_WINDOW = 65_535


@dataclass(slots=True)
class _Stream:
    """One request in flight: collecting its body, or waiting for window to send its answer."""

    endpoint: str | None  # None once answered early: further DATA is discarded
    headers: dict[str, str]
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    receiving: bool = True  # the peer has not ended its side
    unsent: bytes = b""  # answer body waiting for flow-control window


class Http2ServerSession:
    def __init__(
        self,
        limits: HttpServerLimits,
        admit: Admit,
        report_wire_error: ReportWireError,
        transport: asyncio.Transport,
        peer: str,
    ) -> None:
        self.limits = limits
        self.admit = admit
        self.report_wire_error = report_wire_error
        self.transport = transport
        self.peer = peer
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.h2_max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: limits.h2_window_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_size,
            },
        )
        self.h2.initiate_connection()
        if limits.h2_window_size > DEFAULT_WINDOW:
            self.h2.increment_flow_control_window(limits.h2_window_size - DEFAULT_WINDOW)
        self.goaways = GoawayFilter(preface_length=len(PREFACE))
        self.streams: dict[int, _Stream] = {}
        self.highest_stream_id = 0
        self.goaway_sent: int | None = None  # last_stream_id of our GOAWAY
        self.peer_goaway: Goaway | None = None
        self.closed = False
        self._handlers: dict[type[h2.events.Event], Callable[..., None]] = {
            h2.events.RequestReceived: self._on_request,
            h2.events.DataReceived: self._on_data,
            h2.events.StreamEnded: self._on_stream_ended,
            h2.events.StreamReset: self._on_stream_reset,
            h2.events.WindowUpdated: self._on_window,
            h2.events.RemoteSettingsChanged: self._on_window,
        }
        self._flush()

    # -- inbound ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            for part in self.goaways.feed(data):
                if isinstance(part, Goaway):
                    self._on_peer_goaway(part)
                    continue
                events = self.h2.receive_data(part)
                # A stream reset while h2 read this part (by the peer, or by h2 for a stream error such as
                # DATA after END_STREAM) is closed before its events are handled: never offer or answer it.
                gone = {event.stream_id for event in events if isinstance(event, h2.events.StreamReset)}
                for stream_id in gone:
                    self.streams.pop(stream_id, None)
                for event in events:
                    if isinstance(event, h2.events.RequestReceived) and event.stream_id in gone:
                        continue
                    handler = self._handlers.get(type(event))
                    if handler is not None:
                        handler(event)
                self._flush()  # answers go out before a later part can fail the connection
        except h2.exceptions.ProtocolError as exc:
            self._fail(exc)
            return
        self._close_if_done()

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        self.highest_stream_id = max(self.highest_stream_id, stream_id)
        if self.goaway_sent is not None and stream_id > self.goaway_sent:
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        pseudo: dict[bytes, bytes] = {}
        for name, value in event.headers or ():
            if name.startswith(b":") or name == b"content-length":
                pseudo[bytes(name)] = bytes(value)
        decision = route(pseudo.get(b":method", b""), pseudo.get(b":path", b""), self.limits.root)
        stream = _Stream(None, sink_headers((bytes(n), bytes(v)) for n, v in event.headers or ()))
        self.streams[stream_id] = stream
        if event.stream_ended is not None:
            stream.receiving = False
        if isinstance(decision, HttpAnswer):
            self._answer(stream_id, stream, decision)
            return
        length = declared_length(pseudo.get(b"content-length"))
        if length is not None and length > self.limits.body_limit:
            self._answer(stream_id, stream, TOO_LARGE)
            return
        stream.endpoint = decision.endpoint
        if not stream.receiving:
            self._offer(stream_id, stream)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream_id = event.stream_id
        self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if event.stream_ended is not None:
            stream.receiving = False  # h2 has closed its side already; StreamEnded follows
        if stream.endpoint is None:
            return
        stream.chunks.append(event.data)
        stream.size += len(event.data)
        if stream.size > self.limits.body_limit:
            stream.chunks.clear()
            stream.endpoint = None
            self._answer(stream_id, stream, TOO_LARGE)

    def _on_stream_ended(self, event: h2.events.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        stream.receiving = False
        if stream.endpoint is not None:
            self._offer(event.stream_id, stream)

    def _on_stream_reset(self, event: h2.events.StreamReset) -> None:
        # The peer abandoned this request: drop its partial body and any answer still queued.
        self.streams.pop(event.stream_id, None)

    def _on_window(self, event: h2.events.Event) -> None:
        for stream_id, stream in list(self.streams.items()):
            if stream.unsent:
                self._send_body(stream_id, stream)

    def _on_peer_goaway(self, goaway: Goaway) -> None:
        # The peer opens no more streams; the ones it has open still get their answers.
        self.peer_goaway = goaway
        if goaway.error_code != NO_ERROR:
            log.info(
                "HTTP/2 peer %s sent GOAWAY (error %d): %s",
                self.peer,
                goaway.error_code,
                goaway.debug_data.decode("utf-8", "replace"),
            )

    # -- answering ----------------------------------------------------------------------

    def _offer(self, stream_id: int, stream: _Stream) -> None:
        assert stream.endpoint is not None
        body = b"".join(stream.chunks)
        stream.chunks.clear()
        answer = self.admit(stream.endpoint, body, stream.headers)
        stream.endpoint = None
        self._answer(stream_id, stream, answer)

    def _answer(self, stream_id: int, stream: _Stream, answer: HttpAnswer) -> None:
        stream.endpoint = None
        headers = [
            (b":status", str(answer.status).encode()),
            *answer.headers,
            (b"content-length", str(len(answer.body)).encode()),
            (b"date", http_date()),
        ]
        self.h2.send_headers(stream_id, headers, end_stream=not answer.body)
        stream.unsent = answer.body
        if stream.unsent:
            self._send_body(stream_id, stream)
        else:
            self._answered(stream_id, stream)

    def _send_body(self, stream_id: int, stream: _Stream) -> None:
        window = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
        if window <= 0:
            return
        chunk, stream.unsent = stream.unsent[:window], stream.unsent[window:]
        self.h2.send_data(stream_id, chunk, end_stream=not stream.unsent)
        if not stream.unsent:
            self._answered(stream_id, stream)

    def _answered(self, stream_id: int, stream: _Stream) -> None:
        """The answer is complete; stop a body we will never read (RFC 9113 §8.1, NO_ERROR)."""
        if stream.receiving:
            try:
                self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
            except h2.exceptions.StreamClosedError:
                pass  # the peer's END_STREAM is later in the part h2 just read: nothing is left to stop
        del self.streams[stream_id]

    # -- connection life ------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self.streams

    def shutdown(self) -> None:
        """Graceful: GOAWAY naming the last stream we will serve; close once those are answered."""
        if self.closed:
            return
        if self.goaway_sent is None:
            self.goaway_sent = self.highest_stream_id
            self._flush()
            self.transport.write(encode_goaway(self.goaway_sent))
        self._close_if_done()

    def _close_if_done(self) -> None:
        if (self.goaway_sent is not None or self.peer_goaway is not None) and self.idle:
            self.closed = True
            self.transport.close()

    def _fail(self, exc: h2.exceptions.ProtocolError) -> None:
        if isinstance(exc, h2.exceptions.NoSuchStreamError):  # (and StreamClosedError) prints as a bare stream id
            reason = f"{type(exc).__name__}: a frame for stream {exc.stream_id}, which is not open"
        else:
            reason = str(exc) or type(exc).__name__
        self.report_wire_error(f"HTTP/2 from {self.peer}: {reason}")
        log.warning("closing HTTP/2 connection from %s: %s", self.peer, reason)
        self.h2.clear_outbound_data_buffer()  # h2 queued a GOAWAY without the reason: ours replaces it
        error_code = int(getattr(exc, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR))
        self.transport.write(encode_goaway(self.highest_stream_id, error_code, reason.encode()[:512]))
        self.streams.clear()
        self.closed = True
        self.transport.close()

    def eof_received(self) -> None:
        self.streams.clear()
        self.closed = True

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)
