"""HTTP/2 (h2c, prior knowledge) on the worker's HTTP request plane.

One ``Http2ServerSession`` drives hyper-h2 for one connection.  Each stream
is one request: its body is collected under the size limit, then offered to
the sink and answered.  Per-stream trouble (too large, early answers, a
stream past MAX_CONCURRENT_STREAMS, which is refused alone) ends only that
stream; a protocol error ends the connection with a GOAWAY naming the
reason.  GOAWAY frames bypass h2 (see ``http2_goaway``) so that a graceful
shutdown, ours or the peer's, lets the streams in flight finish.

Denial of service (limits in ``limits.HttpGuards``): bodies count against a
per-connection and a server-wide byte budget before they are buffered; DATA
is acknowledged (the peer's window reopened) only while the connection is
within its budget, otherwise only as buffered bodies are consumed or
dropped; a stream whose body stalls, or whose answer waits for window, past
its deadline is answered 408 or reset; streams reset by the peer and control
frames (PING, SETTINGS, PRIORITY, empty DATA) spend rate budgets, and a
connection that overspends gets GOAWAY ENHANCE_YOUR_CALM and is closed.
Answers parked behind a zero window are bounded per connection (past the
bound, GOAWAY ENHANCE_YOUR_CALM); when every stream of a connection is parked
past its deadline the connection is given up as a whole (one GOAWAY, not a
reset per stream), and otherwise at most ``GIVE_UP_SLICE`` streams are given
up per deadline check, so a burst of expiries never holds the event loop.
Every close after an error goes through ``linger`` (the connection's
lingering close).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from h2.frame_buffer import FrameBuffer
from hyperframe.frame import Frame, HeadersFrame, PushPromiseFrame

from reference_impl.transport.http.budgets import ByteBudget, Deadline, RateBudget
from reference_impl.transport.http.http2_goaway import NO_ERROR, PROTOCOL_ERROR, Goaway, GoawayFilter, encode_goaway
from reference_impl.transport.http.http2_slices import FrameCounter
from reference_impl.transport.http.routing import (
    BODY_BUDGET_EXHAUSTED,
    BODY_TIMEOUT,
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
ENHANCE_YOUR_CALM = int(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
READ_SLICE = 16_384  # bytes handed to h2 at a time (one default-size DATA frame, ~1000 PINGs)
# Streams given up (408 or RST_STREAM, ~150 us each in hyper-h2) per deadline check: ~7 ms; the rest are due again
# at once and wait for the next check, one event-loop turn later, so thousands expiring together never hold the loop.
GIVE_UP_SLICE = 50

# Events that cost the server work (and, for PING and SETTINGS, an answer) but carry no request.
_CONTROL_EVENTS = (
    h2.events.PingReceived,
    h2.events.PingAckReceived,
    h2.events.RemoteSettingsChanged,
    h2.events.SettingsAcknowledged,
    h2.events.PriorityUpdated,
    h2.events.UnknownFrameReceived,
)


class HeaderBlockTooLarge(h2.exceptions.ProtocolError):
    """A header block grew past ``HttpGuards.h2_max_header_block`` before it ended: GOAWAY ENHANCE_YOUR_CALM."""

    error_code = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


class _BoundedFrameBuffer(FrameBuffer):
    """hyper-h2's frame reader, with a byte limit on a header block that spans CONTINUATION frames.

    h2 gathers a block's frames until END_HEADERS and caps them only at 64
    frames (1 MiB at the default frame size): a peer that never ends its block
    (CVE-2024-27316 class) is cut off here once the block passes the limit.
    """

    def __init__(self, max_block: int) -> None:
        super().__init__(server=True)
        self.max_block = max_block
        self.block_bytes = 0  # bytes of the header block not yet ended (0: none under way)

    @property
    def block_open(self) -> bool:
        return bool(self._headers_buffer)

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        starts = isinstance(f, HeadersFrame | PushPromiseFrame) and "END_HEADERS" not in f.flags
        if f is not None and (self._headers_buffer or starts):
            data = getattr(f, "data", b"")
            self.block_bytes += len(data)
            if self.block_bytes > self.max_block:
                raise HeaderBlockTooLarge(
                    f"header block over {self.max_block} bytes without END_HEADERS (RP_HTTP_H2_MAX_HEADER_BLOCK)"
                )
        frame = super()._update_header_buffer(f)
        if not self._headers_buffer:
            self.block_bytes = 0
        return frame


def _unwatched(deadline: Deadline) -> None:
    """No timer: the server's periodic sweep finds the deadline."""


class _RefusingH2Connection(h2.connection.H2Connection):
    """hyper-h2, except that a stream past MAX_CONCURRENT_STREAMS does not fail the connection.

    h2 raises ``TooManyStreamsError`` (a connection error) for it; RFC 9113
    §5.1.2 lets a server refuse just that stream, as hyper does.  h2 is told no
    stream is open (so it lets the stream in) and each new stream over the
    limit is noted in ``over_limit``; the session refuses those with
    REFUSED_STREAM once h2 has read them (their headers still go through
    HPACK, which must see every block).
    """

    max_inbound_streams = 2**31
    over_limit: set[int]

    @property
    def open_inbound_streams(self) -> int:
        return 0  # the limit is applied in _receive_headers_frame below, per stream

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Frame], list[h2.events.Event]]:
        # h2's own count (it also forgets closed streams), taken before this stream exists.  The count walks every
        # stream h2 holds (~100 us per 100 streams), so it is taken only when h2 holds enough streams, open or not yet
        # forgotten, to be at the limit: below that, a HEADERS frame does not cost a walk over every parked stream.
        if (
            frame.stream_id not in self.streams
            and len(self.streams) >= self.max_inbound_streams
            and super().open_inbound_streams >= self.max_inbound_streams
        ):
            self.over_limit.add(frame.stream_id)
        return super()._receive_headers_frame(frame)


@dataclass(slots=True)
class _Stream:
    """One request in flight: collecting its body, or waiting for window to send its answer."""

    endpoint: str | None  # None once answered early: further DATA is discarded
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)
    receiving: bool = True  # the peer has not ended its side
    unsent: bytes = b""  # answer body waiting for flow-control window
    owed: int = 0  # flow-controlled bytes received and buffered but not yet acknowledged
    parked: bool = False  # its answer waits for the peer to open a window (counted in ``parked_streams``)
    body_deadline: Deadline = field(default_factory=Deadline)  # next DATA due
    send_deadline: Deadline = field(default_factory=Deadline)  # window for the answer due


class Http2ServerSession:
    def __init__(
        self,
        limits: HttpServerLimits,
        admit: Admit,
        report_wire_error: ReportWireError,
        transport: asyncio.Transport,
        peer: str,
        body_budget: ByteBudget | None = None,
        watch: Callable[[Deadline], None] | None = None,
        *,
        linger: Callable[[], None] | None = None,
    ) -> None:
        self.limits = limits
        guards = limits.guards
        self.guards = guards
        self.body_budget = body_budget if body_budget is not None else ByteBudget(guards.body_budget)
        # Never below the body limit: one request at the limit must always be able to complete.
        self.connection_budget = ByteBudget(max(guards.h2_connection_body_budget, limits.body_limit))
        self.reset_budget = RateBudget(guards.h2_reset_burst, guards.h2_reset_rate)
        self.control_budget = RateBudget(guards.h2_control_burst, guards.h2_control_rate)
        self.admit = admit
        self.report_wire_error = report_wire_error
        self.transport = transport
        self.peer = peer
        # Shown every deadline as it is armed, so that it fires on time (the server's DeadlineTimer).
        self.watch: Callable[[Deadline], None] = watch if watch is not None else _unwatched
        # How the connection closes after an error: lingering (the connection's), or at once (driven alone).
        self.linger: Callable[[], None] = linger if linger is not None else transport.close
        # When the read being handled arrived (set by the connection around each slice): deadlines of what it
        # carries run from then, not from when a busy worker got round to it.
        self.arrived_at: float | None = None
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False
        )
        self.h2 = _RefusingH2Connection(config=config)
        self.h2.max_inbound_streams = limits.h2_max_concurrent_streams
        self.h2.over_limit = set()
        self.frames = _BoundedFrameBuffer(guards.h2_max_header_block)
        self.h2.incoming_buffer = self.frames
        self.block_deadline = Deadline()  # a header block under way (CONTINUATION frames to come) must end by then
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
        self.frame_counter = FrameCounter(preface_length=len(PREFACE))  # where the slices handed to h2 may end
        self.streams: dict[int, _Stream] = {}
        self.parked_streams = 0  # streams whose answer waits for window
        self.highest_stream_id = 0
        self.goaway_sent: int | None = None  # last_stream_id of our GOAWAY
        self.peer_goaway: Goaway | None = None
        self.closed = False
        self.settings_received = False
        self.settings_deadline = Deadline()  # the peer's SETTINGS (the rest of its preface) are due
        self._arm(self.settings_deadline, time.monotonic(), guards.header_timeout)
        self.idle_deadline = Deadline()
        self._owing: dict[int, None] = {}  # streams with DATA not yet acknowledged, oldest first
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

    def piece_length(self, backlog: bytes | bytearray, start: int, most: int) -> int:
        """Bytes of ``backlog`` from ``start`` to hand over next: up to ``most``, and ``h2_feed_frames`` frames at most.

        h2 does all the work of a slice in one call; a few frames at a time,
        the server's feed pass can let the loop serve other connections
        between slices (see ``http2_slices``).
        """
        return self.frame_counter.cut(backlog, start, most, self.guards.h2_feed_frames)

    def data_received(self, data: bytes, arrived_at: float | None = None) -> None:
        """Take a read (or a slice of one) that reached the connection at ``arrived_at`` (default: now)."""
        self.frame_counter.advance(data)
        if self.closed:
            return
        self.arrived_at = arrived_at
        try:
            self._take(data)
        finally:
            self.arrived_at = None

    def _take(self, data: bytes) -> None:
        try:
            for part in self.goaways.feed(data):
                if isinstance(part, Goaway):
                    self._on_peer_goaway(part)
                    continue
                # h2 handles a whole read at once; in slices, the rate budgets are checked every few hundred
                # frames, so a flood is stopped before one read (256 KiB of tiny frames) stalls the loop.
                for start in range(0, len(part), READ_SLICE):
                    self._receive(part[start : start + READ_SLICE])
                    if self.closed:
                        return
        except h2.exceptions.ProtocolError as exc:
            self._fail(exc)
            return
        self._close_if_done()

    def _receive(self, part: bytes) -> None:
        events = self.h2.receive_data(part)
        if not self.frames.block_open:
            self.block_deadline.clear()
        elif self.block_deadline.at is None:
            self._arm(self.block_deadline, self._now(), self.guards.header_timeout)
        if not self._within_rate_budgets(events):
            return
        # A stream reset while h2 read this part (by the peer, or by h2 for a stream error such as
        # DATA after END_STREAM) is closed before its events are handled: never offer or answer it.
        gone = {event.stream_id for event in events if isinstance(event, h2.events.StreamReset)}
        for stream_id in gone:
            self._forget(stream_id)
            self.h2.over_limit.discard(stream_id)
        for event in events:
            if self.closed:
                return  # ended by an event before this one (a budget overspent): nothing more is answered
            if isinstance(event, h2.events.RequestReceived) and event.stream_id in gone:
                continue
            handler = self._handlers.get(type(event))
            if handler is not None:
                handler(event)
        self._flush()  # answers go out before a later part can fail the connection

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        self.highest_stream_id = max(self.highest_stream_id, stream_id)
        if self.goaway_sent is not None and stream_id > self.goaway_sent:
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        if stream_id in self.h2.over_limit:
            self.h2.over_limit.discard(stream_id)
            # Past the advertised limit: refuse this stream alone; refusals spend the reset budget.
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            if not self.reset_budget.spend():
                self._calm("too many streams refused past MAX_CONCURRENT_STREAMS")
            return
        self.idle_deadline.clear()
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
        else:
            self._arm(stream.body_deadline, self._now(), self.guards.body_timeout)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream_id = event.stream_id
        length = event.flow_controlled_length
        stream = self.streams.get(stream_id)
        if stream is not None and event.stream_ended is not None:
            stream.receiving = False  # h2 has closed its side already; StreamEnded follows
        if stream is None or stream.endpoint is None:
            self.h2.acknowledge_received_data(length, stream_id)  # nothing kept: the window reopens at once
            return
        data = event.data
        if not data and not event.stream_ended and not self.control_budget.spend():
            self._calm("too many empty DATA frames")
            return
        if len(stream.body) + len(data) > self.limits.body_limit:
            self._drop_body(stream_id, stream)
            self.h2.acknowledge_received_data(length, stream_id)
            self._answer(stream_id, stream, TOO_LARGE)
            return
        if not self.body_budget.fits(len(data)):
            # The server as a whole holds all the request bodies it may: refuse this one, do not buffer.
            self._drop_body(stream_id, stream)
            self.h2.acknowledge_received_data(length, stream_id)
            self._answer(stream_id, stream, BODY_BUDGET_EXHAUSTED)
            return
        stream.body += data
        self.connection_budget.take(len(data))
        self.body_budget.take(len(data))
        stream.owed += length
        self._owing[stream_id] = None
        self._arm(stream.body_deadline, self._now(), self.guards.body_timeout)
        self._pay_owed()

    def _pay_owed(self) -> None:
        """Reopen the peer's windows for buffered DATA while this connection and the server are within budget."""
        while self._owing and not (self.connection_budget.exhausted or self.body_budget.exhausted):
            stream_id = next(iter(self._owing))
            del self._owing[stream_id]
            stream = self.streams.get(stream_id)
            if stream is not None and stream.owed:
                owed, stream.owed = stream.owed, 0
                self.h2.acknowledge_received_data(owed, stream_id)

    def _drop_body(self, stream_id: int, stream: _Stream) -> None:
        """Stop collecting a stream's body: release its bytes and hand back the window they held."""
        stream.endpoint = None
        stream.body_deadline.clear()
        if stream.body:
            self.connection_budget.release(len(stream.body))
            self.body_budget.release(len(stream.body))
            stream.body = bytearray()
        if stream.owed:
            owed, stream.owed = stream.owed, 0
            self.h2.acknowledge_received_data(owed, stream_id)

    def _forget(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            self._release(stream)

    def _unpark(self, stream: _Stream) -> None:
        if stream.parked:
            stream.parked = False
            self.parked_streams -= 1

    def _release(self, stream: _Stream) -> None:
        """A stream gone from h2 (reset, connection closing): release its bytes; its window no longer matters."""
        self._unpark(stream)
        if stream.body:
            self.connection_budget.release(len(stream.body))
            self.body_budget.release(len(stream.body))
            stream.body = bytearray()
        stream.endpoint = None

    def _on_stream_ended(self, event: h2.events.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        stream.receiving = False
        if stream.endpoint is not None:
            self._offer(event.stream_id, stream)

    def _on_stream_reset(self, event: h2.events.StreamReset) -> None:
        # The peer abandoned this request: drop its partial body and any answer still queued.
        self._forget(event.stream_id)
        self._pay_owed()

    def _on_window(self, event: h2.events.Event) -> None:
        for stream_id, stream in list(self.streams.items()):
            if self.closed:
                return
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
        endpoint = stream.endpoint
        body = bytes(stream.body)
        self._drop_body(stream_id, stream)  # consumed: its bytes are the sink's now, its window reopens
        answer = self.admit(endpoint, body, stream.headers)
        self._answer(stream_id, stream, answer)
        self._pay_owed()

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
        if self.closed:
            return
        window = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
        if window <= 0:
            if not stream.parked:  # parked: the peer has until the deadline to open its window
                stream.parked = True
                self.parked_streams += 1
                self._arm(stream.send_deadline, self._now(), self.guards.send_timeout)
                if self.parked_streams > self.guards.h2_max_parked_streams:
                    self._calm(
                        f"over {self.guards.h2_max_parked_streams} answers left unread behind a zero window"
                        " (RP_HTTP_H2_MAX_PARKED_STREAMS)"
                    )
            return
        self._unpark(stream)
        stream.send_deadline.clear()
        chunk, stream.unsent = stream.unsent[:window], stream.unsent[window:]
        self.h2.send_data(stream_id, chunk, end_stream=not stream.unsent)
        if not stream.unsent:
            self._answered(stream_id, stream)
        else:
            self._arm(stream.send_deadline, self._now(), self.guards.send_timeout)

    def _answered(self, stream_id: int, stream: _Stream) -> None:
        """The answer is complete; stop a body we will never read (RFC 9113 §8.1, NO_ERROR)."""
        if stream.receiving:
            try:
                self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
            except h2.exceptions.StreamClosedError:
                pass  # the peer's END_STREAM is later in the part h2 just read: nothing is left to stop
        del self.streams[stream_id]
        self._release(stream)

    # -- connection life ------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self.streams

    # -- deadlines and budgets --------------------------------------------------------------

    def _now(self) -> float:
        """The start of a deadline armed now: the arrival of the read being handled, if one is."""
        return self.arrived_at if self.arrived_at is not None else time.monotonic()

    def _arm(self, deadline: Deadline, now: float, seconds: float | None) -> None:
        deadline.arm(now, seconds)
        self.watch(deadline)

    def _within_rate_budgets(self, events: list[h2.events.Event]) -> bool:
        """Spend the reset and control-frame budgets on what the peer just sent; False once it is calmed."""
        resets = sum(1 for e in events if isinstance(e, h2.events.StreamReset) and e.remote_reset)
        controls = sum(1 for e in events if isinstance(e, _CONTROL_EVENTS))
        if not self.settings_received and any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events):
            self.settings_received = True
            self.settings_deadline.clear()
        if resets and not self.reset_budget.spend(resets):
            self._calm(f"too many streams reset (budget {self.guards.h2_reset_burst}, {self.guards.h2_reset_rate}/s)")
            return False
        if controls and not self.control_budget.spend(controls):
            self._calm(
                f"too many control frames (budget {self.guards.h2_control_burst}, {self.guards.h2_control_rate}/s)"
            )
            return False
        return True

    def check_deadlines(self, now: float) -> None:
        """Called by the server's sweep: end streams past their deadlines, close an idle connection."""
        if self.closed:
            return
        if self.settings_deadline.expired(now):
            self._fail_slow("sent no SETTINGS after its preface in time")
            return
        if self.block_deadline.expired(now):
            self._fail_slow("did not end a header block (CONTINUATION frames) in time")
            return
        every_answer_overdue = len(self.streams) > 1 and self.parked_streams == len(self.streams)
        if every_answer_overdue and all(stream.send_deadline.expired(now) for stream in self.streams.values()):
            # Every answer unread past its deadline: the peer reads nothing; one GOAWAY, not a reset each.
            self._calm(f"left all {len(self.streams)} answers unread past RP_HTTP_SEND_TIMEOUT")
            return
        self._give_up_overdue(now)
        self._pay_owed()  # other connections may have released server-wide budget
        if self.streams:
            self.idle_deadline.clear()
        elif self.idle_deadline.at is None:
            self._arm(self.idle_deadline, now, self.guards.idle_timeout)
        elif self.idle_deadline.expired(now):
            self.shutdown()
            return
        self._flush()
        self._close_if_done()

    def _give_up_overdue(self, now: float) -> None:
        """408 the stalled bodies and reset the unread answers past their deadlines, ``GIVE_UP_SLICE`` at a time."""
        given_up = 0
        for stream_id, stream in list(self.streams.items()):
            stalled = stream.body_deadline.expired(now) and stream.endpoint is not None
            if not (stalled or stream.send_deadline.expired(now)):
                continue
            if given_up == GIVE_UP_SLICE:  # the rest at the next check, one loop turn from now
                self.watch(stream.body_deadline if stalled else stream.send_deadline)
                return
            given_up += 1
            if stalled:
                self._drop_body(stream_id, stream)
                self._answer(stream_id, stream, BODY_TIMEOUT)
            else:
                # The peer keeps its window shut: give up on this answer.
                self.streams.pop(stream_id, None)
                self._release(stream)
                try:
                    self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                except h2.exceptions.StreamClosedError:
                    pass

    def _fail_slow(self, reason: str) -> None:
        log.info("closing HTTP/2 connection from %s: it %s", self.peer, reason)
        self.transport.write(encode_goaway(self.highest_stream_id, PROTOCOL_ERROR, reason.encode()))
        self._drop_all()
        self.closed = True
        self.linger()

    def _calm(self, reason: str) -> None:
        """GOAWAY ENHANCE_YOUR_CALM naming the reason, and close (hyper, nghttp2 and Go do the same)."""
        self.report_wire_error(f"HTTP/2 from {self.peer}: {reason}")
        log.warning("closing HTTP/2 connection from %s: %s", self.peer, reason)
        self.h2.clear_outbound_data_buffer()  # queued PING/SETTINGS acks are not owed to this peer any more
        self.transport.write(encode_goaway(self.highest_stream_id, ENHANCE_YOUR_CALM, reason.encode()[:512]))
        self._drop_all()
        self.closed = True
        self.linger()

    def _drop_all(self) -> None:
        for stream in self.streams.values():
            self._release(stream)
        self.streams.clear()

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
        self._drop_all()
        self.closed = True
        self.linger()

    def eof_received(self) -> None:
        self._drop_all()
        self.closed = True

    def connection_lost(self) -> None:
        """The socket is gone: whatever this connection still held goes back to the server's budget."""
        self._drop_all()
        self.closed = True

    def _flush(self) -> None:
        if self.closed:
            return  # ended (and maybe lingering, its write side shut): what h2 queued since is not sent
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)
