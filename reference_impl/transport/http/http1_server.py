"""HTTP/1.1 on the worker's HTTP request plane (what Dynamo's reqwest caller speaks).

One ``Http1ServerSession`` drives h11 for one keep-alive connection:
requests are answered one after another, in order (pipelined requests wait
in h11's buffer).  The body limit is checked against ``content-length``
before any body is read and against the running total of a chunked body.  An
answer sent before the body was read (413, 404 outside the root, 405) closes
the connection afterwards unless the rest of the body is small enough to
read and drop; a malformed request gets a 400 and a close.  A
close after an answer is a lingering one (the connection's ``linger``: write
side first, input drained for a bounded moment) so the peer can read the
answer before its unread body turns the close into a reset.

Denial of service and smuggling (limits in ``limits.HttpGuards``): a request
head must be complete within the header timeout of its first byte (of the
accept, for the first request), a body may not go silent for longer than the
body timeout, and a keep-alive connection with nothing in flight is closed
after the idle timeout; bodies are gathered in one ``bytearray`` and count
against the server-wide body budget; a chunked body of too many chunks is
refused; ``Content-Length`` with ``Transfer-Encoding`` and bare-LF line
endings in a head are rejected with 400 and a close (RFC 9112 §6.1, §2.2),
which h11 alone would accept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import h11

from reference_impl.transport.http.budgets import ByteBudget, Deadline
from reference_impl.transport.http.routing import (
    BODY_BUDGET_EXHAUSTED,
    BODY_TIMEOUT,
    TOO_LARGE,
    Admit,
    HttpAnswer,
    HttpServerLimits,
    ReportWireError,
    bad_request,
    declared_length,
    http_date,
    route,
    sink_headers,
    text_answer,
)

log = logging.getLogger(__name__)

HEAD_TIMEOUT = "request head not received in time"
TOO_MANY_CHUNKS = "too many chunks in a chunked body"


def _unwatched(deadline: Deadline) -> None:
    """No timer: the server's periodic sweep finds the deadline."""


class Http1ServerSession:
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
        self.guards = limits.guards
        self.body_budget = body_budget if body_budget is not None else ByteBudget(self.guards.body_budget)
        self.admit = admit
        self.report_wire_error = report_wire_error
        self.transport = transport
        self.peer = peer
        # Shown every deadline as it is armed, so that it fires on time (the server's DeadlineTimer).
        self.watch: Callable[[Deadline], None] = watch if watch is not None else _unwatched
        # How the connection closes after an answer it must close on: lingering (the connection's), or at once.
        self.linger: Callable[[], None] = linger if linger is not None else transport.close
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_size)
        self.endpoint: str | None = None  # set while collecting the body of a routed request
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.chunk_count = 0
        self.in_request = False  # a request has started and is not yet answered
        self.draining = False  # answered and closing: input is read and dropped
        self.stopping = False  # server shutdown: close after the current answer
        self.awaiting_head = True  # between requests: the next bytes start a request head
        self.head_scanned = False  # the pending head was checked for bare LF
        self.head_deadline = Deadline()  # armed by the first byte of a head (here: the accept, just before)
        self.body_deadline = Deadline()
        self.idle_deadline = Deadline()
        self._arm(self.head_deadline, time.monotonic(), self.guards.header_timeout)

    # -- inbound ----------------------------------------------------------------------

    def piece_length(self, backlog: bytes | bytearray, start: int, most: int) -> int:
        """Bytes of ``backlog`` from ``start`` to hand over next: up to ``most`` (h11's cost follows the bytes)."""
        return min(most, len(backlog) - start)

    def data_received(self, data: bytes, arrived_at: float | None = None) -> None:
        """Take a read (or a slice of one) that reached the connection at ``arrived_at`` (default: now)."""
        if self.draining:
            return
        now = arrived_at if arrived_at is not None else time.monotonic()
        if self.awaiting_head and self.head_deadline.at is None:
            self._arm(self.head_deadline, now, self.guards.header_timeout)
        self.idle_deadline.clear()
        if self.endpoint is not None:
            self._arm(self.body_deadline, now, self.guards.body_timeout)
        self.h11.receive_data(data)
        self._process()

    def eof_received(self) -> None:
        if self.draining:
            self.transport.close()
            return
        self.h11.receive_data(b"")
        self._process()

    def _process(self) -> None:
        while not self.draining:
            if self.awaiting_head and not self._head_is_clean():
                return
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._reject_malformed(exc)
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                if not self._next_cycle():
                    return
            elif isinstance(event, h11.Request):
                self._on_request(event)
            elif isinstance(event, h11.Data):
                self._on_data(event)
            elif isinstance(event, h11.EndOfMessage):
                self._on_end()
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return

    def _head_is_clean(self) -> bool:
        """Reject a head with bare-LF line endings (h11 takes them), looking only at the head's bytes."""
        if self.head_scanned:
            return True
        pending = _unparsed(self.h11)
        end = pending.find(b"\r\n\r\n")
        head = pending if end < 0 else pending[: end + 4]
        if head.count(b"\n") != head.count(b"\r\n"):  # a "\r" still waiting for its "\n" is no bare LF
            self._reject(400, "bare LF line ending in the request head (CRLF required)")
            return False
        if end >= 0:
            self.head_scanned = True
        return True

    def _on_request(self, request: h11.Request) -> None:
        self.in_request = True
        self.awaiting_head = False
        self.head_deadline.clear()
        if _header(request, b"content-length") is not None and _header(request, b"transfer-encoding") is not None:
            self._reject(400, "both Content-Length and Transfer-Encoding (RFC 9112 section 6.1)")
            return
        decision = route(request.method, request.target, self.limits.root)
        if isinstance(decision, HttpAnswer):
            self._answer_early(decision, request)
            return
        length = declared_length(_header(request, b"content-length"))
        if length is not None and length > self.limits.body_limit:
            self._answer_early(TOO_LARGE, request)
            return
        self._drop_body()
        self.endpoint = decision.endpoint
        self.headers = sink_headers(request.headers)
        self._arm(self.body_deadline, time.monotonic(), self.guards.body_timeout)
        if self.h11.they_are_waiting_for_100_continue:
            self._write(self.h11.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")))

    def _on_data(self, event: h11.Data) -> None:
        if self.endpoint is None:
            return
        data = event.data
        if event.chunk_start:
            self.chunk_count += 1
            if self.chunk_count > self.guards.max_body_chunks:
                self._drop_body()
                self._answer(text_answer(413, f"Bad request: {TOO_MANY_CHUNKS}"), close=True)
                return
        if len(self.body) + len(data) > self.limits.body_limit:
            self._drop_body()
            self._answer(TOO_LARGE, close=True)
            return
        if not self.body_budget.fits(len(data)):
            self._drop_body()
            self._answer(BODY_BUDGET_EXHAUSTED, close=True)
            return
        self.body += data
        self.body_budget.take(len(data))

    def _drop_body(self) -> None:
        """Stop collecting (or hand over) the body: its bytes leave the server's budget."""
        self.endpoint = None
        self.body_deadline.clear()
        self.chunk_count = 0
        if self.body:
            self.body_budget.release(len(self.body))
            self.body = bytearray()

    def _on_end(self) -> None:
        if self.endpoint is None:
            return  # answered already
        endpoint = self.endpoint
        body = bytes(self.body)
        self._drop_body()
        self._answer(self.admit(endpoint, body, self.headers), close=self.stopping)

    def _next_cycle(self) -> bool:
        """Both sides finished a request: get ready for the next one on this connection."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            self._await_head()
            return True
        return False

    def _await_head(self) -> None:
        self.awaiting_head = True
        self.head_scanned = False
        self.head_deadline.clear()
        self._arm(self.idle_deadline, time.monotonic(), self.guards.idle_timeout)

    # -- answering ----------------------------------------------------------------------

    def _answer_early(self, answer: HttpAnswer, request: h11.Request) -> None:
        """Answer before reading the body.

        A body of known length within the limit is then read and dropped, so the
        connection stays usable (hyper does the same); a larger or chunked one
        is not worth reading, and the connection closes after the answer.
        """
        length = declared_length(_header(request, b"content-length")) or 0
        chunked = _header(request, b"transfer-encoding") is not None
        self._drop_body()
        self._answer(answer, close=chunked or length > self.limits.body_limit or self.stopping)

    def _answer(self, answer: HttpAnswer, *, close: bool) -> None:
        headers = [
            *answer.headers,
            (b"content-length", str(len(answer.body)).encode()),
            (b"date", http_date()),
        ]
        if close:
            headers.append((b"connection", b"close"))
        response = h11.Response(status_code=answer.status, headers=headers, reason=answer.reason)
        parts = [self.h11.send(response), self.h11.send(h11.Data(data=answer.body)) if answer.body else None]
        parts.append(self.h11.send(h11.EndOfMessage()))
        self._write(b"".join(part for part in parts if part))
        self.in_request = False
        if self.h11.our_state is h11.MUST_CLOSE:
            self._linger_close()
        else:
            self._next_cycle()  # now, not when the next bytes come: the idle deadline runs from here

    def _reject_malformed(self, exc: h11.RemoteProtocolError) -> None:
        self._reject(exc.error_status_hint, str(exc) or "malformed request")

    def _reject(self, status: int, reason: str) -> None:
        """A request that cannot be served on this connection: an answer naming why, then a close."""
        self._drop_body()
        self.report_wire_error(f"HTTP/1.1 from {self.peer}: {reason}")
        log.warning("closing HTTP/1.1 connection from %s: %s", self.peer, reason)
        answer = bad_request(reason) if status == 400 else text_answer(status, reason)
        # h11 will not write after a peer error in every state: the answer is formatted by hand.
        head = [
            f"HTTP/1.1 {answer.status} {answer.reason.decode()}".encode(),
            *(name + b": " + value for name, value in answer.headers),
            b"content-length: " + str(len(answer.body)).encode(),
            b"date: " + http_date(),
            b"connection: close",
        ]
        self._write(b"\r\n".join(head) + b"\r\n\r\n" + answer.body)
        self._linger_close()

    def _linger_close(self) -> None:
        """Send what is queued, then FIN; read and drop input until the peer closes (bounded: ``linger``)."""
        if self.draining:
            return
        self.draining = True
        self.in_request = False
        self.linger()

    def _write(self, data: bytes) -> None:
        if data and not self.draining and not self.transport.is_closing():
            self.transport.write(data)

    # -- connection life ------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self.in_request

    def _arm(self, deadline: Deadline, now: float, seconds: float | None) -> None:
        deadline.arm(now, seconds)
        self.watch(deadline)

    def check_deadlines(self, now: float) -> None:
        """Called by the server's sweep: a head or body too slow, or a keep-alive idle too long, ends here."""
        if self.draining:
            return
        if self.head_deadline.expired(now):
            self._reject(408, HEAD_TIMEOUT)
        elif self.body_deadline.expired(now) and self.endpoint is not None:
            self._drop_body()
            self._answer(BODY_TIMEOUT, close=True)
        elif self.idle_deadline.expired(now) and self.idle:
            self.draining = True
            self.transport.close()

    def connection_lost(self) -> None:
        self._drop_body()

    def shutdown(self) -> None:
        """Graceful: close now if between requests, else right after the current answer."""
        self.stopping = True
        if self.idle and not self.draining:
            self.draining = True
            self.transport.close()


def _unparsed(connection: h11.Connection) -> bytes:
    """The bytes h11 holds but has not parsed (its public ``trailing_data`` copies them all)."""
    buffer = getattr(getattr(connection, "_receive_buffer", None), "_data", None)
    if isinstance(buffer, bytearray):
        return bytes(buffer[:65536])
    return connection.trailing_data[0][:65536]


def _header(request: h11.Request, name: bytes) -> bytes | None:
    for key, value in request.headers:
        if key == name:
            return bytes(value)
    return None
