"""HTTP/1.1 on the worker's HTTP request plane (what Dynamo's reqwest caller speaks).

One ``Http1ServerSession`` drives h11 for one keep-alive connection:
requests are answered one after another, in order (pipelined requests wait
in h11's buffer).  The body limit is checked against ``content-length``
before any body is read and against the running total of a chunked body.  An
answer sent before the body was read (413, 404 outside the root, 405) closes
the connection afterwards unless the rest of the body is small enough to
read and drop; a malformed request gets a 400 and a close.  A
close after an answer is a lingering one (write side first, input drained
for a moment) so the peer can read the answer before its unread body turns
the close into a reset.
"""

from __future__ import annotations

import asyncio
import logging

import h11

from reference_impl.transport.http.routing import (
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

LINGER_SECONDS = 2.0


class Http1ServerSession:
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
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_size)
        self.endpoint: str | None = None  # set while collecting the body of a routed request
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.in_request = False  # a request has started and is not yet answered
        self.draining = False  # answered and closing: input is read and dropped
        self.stopping = False  # server shutdown: close after the current answer

    # -- inbound ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.draining:
            return
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
                self._on_data(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._on_end()
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return

    def _on_request(self, request: h11.Request) -> None:
        self.in_request = True
        decision = route(request.method, request.target, self.limits.root)
        if isinstance(decision, HttpAnswer):
            self._answer_early(decision, request)
            return
        length = declared_length(_header(request, b"content-length"))
        if length is not None and length > self.limits.body_limit:
            self._answer_early(TOO_LARGE, request)
            return
        self.endpoint = decision.endpoint
        self.headers = sink_headers(request.headers)
        self.chunks.clear()
        self.size = 0
        if self.h11.they_are_waiting_for_100_continue:
            self._write(self.h11.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")))

    def _on_data(self, data: bytes) -> None:
        if self.endpoint is None:
            return
        self.size += len(data)
        if self.size > self.limits.body_limit:
            self.chunks.clear()
            self.endpoint = None
            self._answer(TOO_LARGE, close=True)
            return
        self.chunks.append(data)

    def _on_end(self) -> None:
        if self.endpoint is None:
            return  # answered already
        endpoint, self.endpoint = self.endpoint, None
        body = b"".join(self.chunks)
        self.chunks.clear()
        self._answer(self.admit(endpoint, body, self.headers), close=self.stopping)

    def _next_cycle(self) -> bool:
        """Both sides finished a request: get ready for the next one on this connection."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        return False

    # -- answering ----------------------------------------------------------------------

    def _answer_early(self, answer: HttpAnswer, request: h11.Request) -> None:
        """Answer before reading the body.

        A body of known length within the limit is then read and dropped, so the
        connection stays usable (hyper does the same); a larger or chunked one
        is not worth reading, and the connection closes after the answer.
        """
        length = declared_length(_header(request, b"content-length")) or 0
        chunked = _header(request, b"transfer-encoding") is not None
        self.endpoint = None
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

    def _reject_malformed(self, exc: h11.RemoteProtocolError) -> None:
        reason = str(exc) or "malformed request"
        self.report_wire_error(f"HTTP/1.1 from {self.peer}: {reason}")
        log.warning("closing HTTP/1.1 connection from %s: %s", self.peer, reason)
        status = exc.error_status_hint
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
        """Send what is queued, then FIN; read and drop input until the peer closes (bounded)."""
        if self.draining:
            return
        self.draining = True
        self.in_request = False
        if self.transport.can_write_eof():
            self.transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def _write(self, data: bytes) -> None:
        if data and not self.transport.is_closing():
            self.transport.write(data)

    # -- connection life ------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self.in_request

    def shutdown(self) -> None:
        """Graceful: close now if between requests, else right after the current answer."""
        self.stopping = True
        if self.idle and not self.draining:
            self.draining = True
            self.transport.close()


def _header(request: h11.Request, name: bytes) -> bytes | None:
    for key, value in request.headers:
        if key == name:
            return bytes(value)
    return None
