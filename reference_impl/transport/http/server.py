"""HTTP request plane, worker side (Dynamo 0.7-1.2's ``DYN_REQUEST_PLANE=http``).

One listener per worker process serves every endpoint, like hyper's "auto"
builder: a connection that opens with the HTTP/2 preface is h2c with prior
knowledge, anything else is HTTP/1.1 (an ``Upgrade: h2c`` request is simply
answered over HTTP/1.1).  A request is ``POST {root}/{endpoint}``; once its
body is complete it is offered to the sink synchronously and answered
``202 Accepted`` with an empty body: the ACK, sent before the payload is
decoded.  Routing and status codes are in ``http_routing``; the two wire
protocols in ``http1_server`` and ``http2_server``; the denial-of-service
limits in ``limits``.  The server owns what all its connections share: the
request-body byte budget, one ``DeadlineTimer`` (one event-loop timer for
every deadline, so each fires on time) and a periodic sweep that checks every
connection's deadlines as a backstop (cheaper than a timer per connection and
per stream).  A connection closed after an error answer lingers (``linger``):
its write side is shut once the answer is out and what the peer still sends
is dropped for a bounded time, so the close does not become a reset that
discards the answer before the peer reads it; the server bounds how many
connections linger at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Protocol, cast

from reference_impl.protocol import ack
from reference_impl.routing import DEFAULT_HTTP_ROOT, EndpointId, http_url
from reference_impl.transport.flow import peer_name, set_nodelay
from reference_impl.transport.http.budgets import ByteBudget, Deadline, DeadlineTimer
from reference_impl.transport.http.http1_server import Http1ServerSession
from reference_impl.transport.http.http2_server import PREFACE, Http2ServerSession
from reference_impl.transport.http.limits import HttpGuards
from reference_impl.transport.http.routing import (
    UNKNOWN_ENDPOINT,
    HttpAnswer,
    HttpServerLimits,
    answer_offer,
    normalize_root,
)
from reference_impl.transport.plane import Advertisement, RequestSink

log = logging.getLogger(__name__)

DEFAULT_BODY_LIMIT = 2 * 1024 * 1024  # axum's default body limit, which Dynamo keeps
DEFAULT_MAX_CONCURRENT_STREAMS = 1000
DEFAULT_H2_WINDOW = 1024 * 1024
DEFAULT_MAX_HEADER_SIZE = 64 * 1024


class _Session(Protocol):
    """What the connection needs from either wire protocol's driver."""

    @property
    def idle(self) -> bool: ...

    def piece_length(self, backlog: bytes | bytearray, start: int, most: int) -> int: ...

    def data_received(self, data: bytes, arrived_at: float | None = None) -> None: ...

    def eof_received(self) -> None: ...

    def shutdown(self) -> None: ...

    def check_deadlines(self, now: float) -> None: ...

    def connection_lost(self) -> None: ...


def sniff_protocol(prefix: bytes) -> str | None:
    """``"h2"`` or ``"http/1.1"`` from a connection's first bytes; None until they can tell."""
    if PREFACE.startswith(prefix[: len(PREFACE)]):
        return "h2" if len(prefix) >= len(PREFACE) else None
    return "http/1.1"


FEED_SLICE = 4096  # bytes handed to the driver at a time (~70 h2 HEADERS: ~15 ms in hyper-h2)
FEED_TURN_S = 0.01  # one feed pass (all connections together) works on reads about this long, then the loop runs


class _HttpConnection(asyncio.Protocol):
    """Buffers the first bytes until they tell h2 from HTTP/1.1, then hands over to that driver.

    A read is noted (its arrival time) at once and worked on in the server's
    next feed pass (``HttpRequestServer.want_feed``), after the other sockets
    ready by then have been read too; it is handed over in slices, and once a
    pass has had ``FEED_TURN_S`` of work, the rest of its read waits (and its
    socket is not read) until the event loop has run everything else that is
    ready.  Cheap frames in bulk (hundreds of h2 HEADERS in one 256 KiB read
    cost tens of milliseconds in hyper-h2) then delay other connections by one
    turn, not by the whole read.
    """

    def __init__(self, server: HttpRequestServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.session: _Session | None = None
        self.protocol: str | None = None
        self._sniffed = b""
        self._shutdown = False
        self._backlog = bytearray()  # the part of a read not yet handed to the driver
        self._backlog_at = 0
        self._arrived_at = 0.0  # when the oldest read in the backlog arrived
        self._continuation: asyncio.Handle | None = None
        self._eof_pending = False
        self._paused: set[str] = set()  # why reading is paused: "write" (peer not reading), "backlog"
        self.head_deadline = Deadline()  # until the first bytes tell the protocol
        self.send_deadline = Deadline()  # while the peer does not read what we write
        self.lingering = False  # closing after an error answer: input is dropped until the linger ends
        self.linger_deadline = Deadline()  # the linger ends then (its time is up, or the peer went silent)
        self._linger_until = 0.0
        self._linger_dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # not isinstance: uvloop's transports are not subclasses
        set_nodelay(transport)
        self.head_deadline.arm(time.monotonic(), self.server.guards.header_timeout)
        self.watch(self.head_deadline)
        self.server.connection_opened(self)

    def watch(self, deadline: Deadline) -> None:
        """Have this connection's deadlines checked when ``deadline`` passes (on time, not at the next sweep)."""
        self.server.timer.watch(deadline, self)

    def data_received(self, data: bytes) -> None:
        arrived_at = time.monotonic()
        if self.lingering:
            self._drop_lingering(len(data), arrived_at)
            return
        if self.session is None:
            data = self._sniffed + data
            protocol = sniff_protocol(data)
            if protocol is None:
                self._sniffed = data
                return
            self._sniffed = b""
            self.head_deadline.clear()
            self._start(protocol)
            assert self.session is not None
        if self._continuation is not None:
            self._backlog += data  # still working through an earlier read: keep the order
            return
        self._backlog = bytearray(data)
        self._backlog_at = 0
        self._arrived_at = arrived_at
        # Worked on in the loop's next pass, after every other socket ready now has been read and its arrival
        # noted: deadlines then run from when a request came, not from when a busy worker got to it.
        self._continuation = self.server.want_feed(self)
        if self._continuation is None:
            self._work()  # driven by hand, without a loop (tests)

    @property
    def backlog_left(self) -> int:
        """Bytes of reads not yet handed to the driver."""
        return len(self._backlog) - self._backlog_at

    def _work(self, until: float | None = None) -> None:
        """Hand the backlog to the driver slice by slice, until ``until`` (default: one turn); queue the rest."""
        self.server.drop_feed(self)
        self._continuation = None
        if until is None:
            until = time.perf_counter() + FEED_TURN_S
        worked = False  # every turn hands over at least one slice
        while self._backlog_at < len(self._backlog):
            if self.session is None or self.transport is None or self.transport.is_closing() or self.lingering:
                self._backlog.clear()
                self._backlog_at = 0
                return
            if worked and time.perf_counter() > until:
                self._continuation = self.server.want_feed(self)
                if self._continuation is not None:
                    self._pause("backlog")
                    return
                # driven by hand, without a loop (tests): nobody else to give a turn to
            # At most FEED_SLICE bytes, and for h2 at most ``h2_feed_frames`` frames: h2 cannot be stopped mid-call.
            end = self._backlog_at + self.session.piece_length(self._backlog, self._backlog_at, FEED_SLICE)
            piece = bytes(self._backlog[self._backlog_at : end])
            self._backlog_at += len(piece)
            self.session.data_received(piece, self._arrived_at)
            worked = True
        self._backlog.clear()
        self._backlog_at = 0
        self._resume("backlog")
        if self._eof_pending and self.session is not None and not self.lingering:
            self._eof_pending = False
            self.session.eof_received()

    def _pause(self, reason: str) -> None:
        if self.lingering:
            return  # lingering reads (and drops) whatever comes, whatever else holds
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused.add(reason)

    def _resume(self, reason: str) -> None:
        if reason not in self._paused:
            return
        self._paused.discard(reason)
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _start(self, protocol: str) -> None:
        assert self.transport is not None
        peer = peer_name(self.transport)
        self.protocol = protocol
        if protocol == "h2":
            session_type: type[Http1ServerSession | Http2ServerSession] = Http2ServerSession
        else:
            session_type = Http1ServerSession
        server = self.server
        self.session = session_type(
            server.limits,
            server.admit,
            server.record_wire_error,
            self.transport,
            peer,
            server.body_budget,
            self.watch,
            linger=self.linger,
        )
        if self._shutdown:
            self.session.shutdown()

    def eof_received(self) -> bool | None:
        if self.lingering:
            self._end_linger("the peer closed its side", reset=False)
            return True  # closed (or reset) above, not by the transport
        if self._continuation is not None:
            self._eof_pending = True  # after the rest of the last read
        elif self.session is not None:
            self.session.eof_received()
        return False

    def pause_writing(self) -> None:
        # The peer is not reading its answers: stop reading its requests, and give it until the deadline.
        self._pause("write")
        self.send_deadline.arm(time.monotonic(), self.server.guards.send_timeout)
        self.watch(self.send_deadline)

    def resume_writing(self) -> None:
        self.send_deadline.clear()
        self._resume("write")

    def check_deadlines(self, now: float) -> None:
        """The server's sweep: a peer too slow to say anything, or to read, loses its connection."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.lingering:
            if self.linger_deadline.expired(now):
                silent = now < self._linger_until
                self._end_linger("went silent" if silent else "linger time is up", reset=not silent)
            return
        if self.head_deadline.expired(now) or self.send_deadline.expired(now):
            reason = "sent no request in time" if self.head_deadline.expired(now) else "did not read its answers"
            log.info("closing HTTP connection from %s: it %s", peer_name(self.transport), reason)
            self.transport.abort()
        elif self.session is not None:
            self.session.check_deadlines(now)

    # -- lingering close ------------------------------------------------------------------------

    def linger(self) -> None:
        """Close after an error answer, lingering: write side shut once the answer is out, input dropped (bounded).

        Closing a socket with the peer's bytes unread makes the kernel reset
        the connection, and a reset can make the peer's kernel discard our
        answer (a GOAWAY, a 400) before the peer reads it.  So the write side
        is shut (FIN after what is queued), and what still comes is read and
        dropped until the peer closes, goes silent for ``linger_timeout``, has
        sent ``linger_bytes``, or ``linger_time`` is up (nginx's
        ``lingering_close``).  At most ``max_lingering`` connections linger at
        once; beyond, or with ``linger_time`` off, the close is immediate.
        """
        transport = self.transport
        if transport is None or self.lingering or transport.is_closing():
            return
        self._backlog.clear()
        self._backlog_at = 0
        self._eof_pending = False
        self.server.drop_feed(self)  # (the feed pass is the server's, shared: not cancelled)
        self._continuation = None
        guards = self.server.guards
        if guards.linger_time is None or not transport.can_write_eof() or not self.server.start_lingering(self):
            self._close_now(reset=False)
            return
        self.lingering = True
        transport.write_eof()  # asyncio shuts the write side once what is queued has been sent
        if self._paused:
            self._paused.clear()
            transport.resume_reading()
        now = time.monotonic()
        self._linger_until = now + guards.linger_time
        self._rearm_linger(now)

    def _rearm_linger(self, now: float) -> None:
        self.linger_deadline.at = min(self._linger_until, now + self.server.guards.linger_timeout)
        self.watch(self.linger_deadline)

    def _drop_lingering(self, size: int, now: float) -> None:
        self._linger_dropped += size
        if self._linger_dropped > self.server.guards.linger_bytes:
            self._end_linger(f"sent over {self.server.guards.linger_bytes} bytes after its answer", reset=True)
        else:
            self._rearm_linger(now)

    def _end_linger(self, why: str, *, reset: bool) -> None:
        if self.transport is not None:
            log.debug("HTTP connection from %s closed after lingering: %s", peer_name(self.transport), why)
        self.linger_deadline.clear()
        self._close_now(reset=reset)

    def _close_now(self, *, reset: bool) -> None:
        """Close; reset instead when told to, or when what we wrote cannot go out (the descriptor would stay)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if reset or transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._backlog.clear()
        self.linger_deadline.clear()
        self.server.drop_feed(self)
        self._continuation = None
        if self.session is not None:
            self.session.connection_lost()
        self.server.connection_closed(self)

    def shutdown(self) -> None:
        """Stop taking requests; close once the ones in flight are answered."""
        self._shutdown = True
        if self.lingering:
            self._end_linger("the server is closing", reset=False)
            return
        if self.session is not None:
            self.session.shutdown()
        elif self.transport is not None:
            self.transport.close()


class HttpRequestServer:
    """The worker's HTTP listener, shared by every endpoint it serves."""

    plane = "http"

    def __init__(
        self,
        sink: RequestSink,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        root: str = DEFAULT_HTTP_ROOT,
        body_limit: int = DEFAULT_BODY_LIMIT,
        h2_max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS,
        h2_window_size: int = DEFAULT_H2_WINDOW,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        shutdown_grace: float = 5.0,
        guards: HttpGuards | None = None,
    ) -> None:
        self.sink = sink
        self.host = host
        self.port = port
        self.root = normalize_root(root)
        self.body_limit = body_limit
        self.h2_max_concurrent_streams = h2_max_concurrent_streams
        self.h2_window_size = h2_window_size
        self.max_header_size = max_header_size
        self.shutdown_grace = shutdown_grace
        self.guards = guards if guards is not None else HttpGuards()
        self.limits = HttpServerLimits(
            self.root, body_limit, max_header_size, h2_max_concurrent_streams, h2_window_size, self.guards
        )
        self.body_budget = ByteBudget(self.guards.body_budget)  # shared by every connection
        self.timer = DeadlineTimer()
        self.endpoints: set[str] = set()  # bare endpoint names, as Dynamo keys its handler map
        self.connections: set[_HttpConnection] = set()
        self.lingering: set[_HttpConnection] = set()  # closing after an error answer (at most guards.max_lingering)
        self._feeding: dict[_HttpConnection, None] = {}  # connections with reads waiting for the next feed pass
        self._feed_handle: asyncio.Handle | None = None
        self.connections_accepted = 0
        self.wire_errors: list[str] = []
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._all_closed = asyncio.Event()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _HttpConnection(self), self.host, self.port, backlog=1024)
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        self._sweeper = asyncio.ensure_future(self._sweep())

    async def _sweep(self) -> None:
        """Check every connection's deadlines a few times per shortest timeout."""
        interval = self.guards.sweep_interval
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            started = time.perf_counter()
            for connection in list(self.connections):
                try:
                    connection.check_deadlines(now)
                except Exception:
                    log.exception("checking the deadlines of an HTTP connection failed")
                if time.perf_counter() - started > FEED_TURN_S:  # many expiries: let the loop run between them
                    await asyncio.sleep(0)
                    started = time.perf_counter()

    def advertise(self, endpoint: EndpointId, instance_id: int) -> Advertisement:
        """``http://host:port{root}/{endpoint}``, routed by the bare endpoint name (instance id unused)."""
        return Advertisement("http", http_url(self.host, self.port, endpoint.endpoint, self.root), endpoint.endpoint)

    async def serve_endpoint(self, endpoint: EndpointId, instance_id: int) -> Advertisement:
        """Route ``{root}/{endpoint}`` to the sink from now on.

        Keyed by the bare name, as Dynamo keys its handler map: a second
        component serving the same endpoint name in this process shares the route.
        """
        self.endpoints.add(endpoint.endpoint)
        return self.advertise(endpoint, instance_id)

    def admit(self, endpoint: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """A complete request: the sink decides, the answer is the ACK."""
        if endpoint not in self.endpoints:
            return UNKNOWN_ENDPOINT
        try:
            rejection = self.sink.offer(self.plane, endpoint, body, headers)
        except Exception:
            log.exception("request sink failed on a request for %r", endpoint)
            return answer_offer(endpoint, f"{ack.UNAVAILABLE_PREFIX} internal error admitting the request")
        return answer_offer(endpoint, rejection)

    def record_wire_error(self, reason: str) -> None:
        self.wire_errors.append(reason)
        del self.wire_errors[:-100]

    def connection_opened(self, connection: _HttpConnection) -> None:
        self.connections.add(connection)
        self.connections_accepted += 1
        self._all_closed.clear()

    def want_feed(self, connection: _HttpConnection) -> asyncio.Handle | None:
        """Queue ``connection``'s reads for the next feed pass; that pass's handle (None without a running loop)."""
        if self._feed_handle is None or self._feed_handle.cancelled():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return None
            self._feed_handle = loop.call_soon(self._feed)
        self._feeding[connection] = None
        return self._feed_handle

    def drop_feed(self, connection: _HttpConnection) -> None:
        self._feeding.pop(connection, None)

    def _feed(self) -> None:
        """One pass over the connections with reads waiting, for about ``FEED_TURN_S`` of work in all.

        Smallest backlog first: a caller's one request is worked on in the
        next pass, not after every flooding connection has had its turn (with
        a turn each, fifty connections full of h2 HEADERS would make every
        other read wait half a second or more).  Each connection worked on
        gets at least one slice, so the large backlogs progress too.
        """
        self._feed_handle = None
        until = time.perf_counter() + FEED_TURN_S
        for connection in sorted(self._feeding, key=lambda c: c.backlog_left):
            if connection not in self._feeding:
                continue  # closed by the work of one before it
            connection._work(until)
            if time.perf_counter() > until:
                break
        if self._feeding:  # those not reached, or not done: the next pass
            if self._feed_handle is None:
                self._feed_handle = asyncio.get_running_loop().call_soon(self._feed)
            for connection in self._feeding:
                connection._continuation = self._feed_handle

    def start_lingering(self, connection: _HttpConnection) -> bool:
        """Count ``connection`` as lingering; False (it must close at once) when ``max_lingering`` already do."""
        if len(self.lingering) >= self.guards.max_lingering:
            return False
        self.lingering.add(connection)
        return True

    def connection_closed(self, connection: _HttpConnection) -> None:
        self.lingering.discard(connection)
        self.connections.discard(connection)
        if not self.connections:
            self._all_closed.set()

    async def close(self) -> None:
        """Stop listening, let requests in flight be answered (up to ``shutdown_grace``), then drop the rest."""
        if self._server is None:
            return
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._server.close()
        self.timer.cancel()
        for connection in list(self.connections):
            connection.shutdown()
        if self.connections:
            try:
                await asyncio.wait_for(self._all_closed.wait(), self.shutdown_grace)
            except TimeoutError:
                busy = len(self.connections)
                log.warning("%d HTTP connections still busy after %.1fs; dropping them", busy, self.shutdown_grace)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        await self._server.wait_closed()
        self.timer.cancel()
        self._server = None
