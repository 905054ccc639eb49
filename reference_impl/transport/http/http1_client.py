"""HTTP/1.1 keep-alive connections for the HTTP request plane, as Dynamo's reqwest caller uses them.

One request at a time per connection; a connection that finished its
exchange cleanly goes back to a small per-worker idle pool.  One that broke,
timed out or was told to close is dropped.  A request is never replayed on
another connection: a stale pooled connection fails that request with a
``TransportError`` (the worker may have seen it).
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

import h11

from reference_impl.errors import TransportError
from reference_impl.transport.flow import WriteFlowControl, set_nodelay
from reference_impl.transport.http.target import HeaderFields, HttpTarget, open_connection

MAX_ANSWER_BODY = 64 * 1024  # an ACK is empty and a rejection a line of text; keep no more than this


class Http1ClientConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.h11 = h11.Connection(h11.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.flow = WriteFlowControl()
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.status = 0
        self.chunks: list[bytes] = []
        self.size = 0
        self.broken: TransportError | None = None
        self.idle_since = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # not isinstance: uvloop's transports are not subclasses
        set_nodelay(transport)

    @property
    def reusable(self) -> bool:
        return (
            self.broken is None
            and self.transport is not None
            and not self.transport.is_closing()
            and self.h11.our_state is h11.IDLE
        )

    async def exchange(self, target: HttpTarget, fields: HeaderFields, payload: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        if self.broken is not None:
            raise self.broken
        answer: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.answer, self.status, self.size = answer, 0, 0
        self.chunks.clear()
        headers = [(b"host", target.authority), *fields, (b"content-length", str(len(payload)).encode())]
        request = h11.Request(method=b"POST", target=target.path, headers=headers)
        wire = [self.h11.send(request) or b""]
        if payload:
            wire.extend(self.h11.send_with_data_passthrough(h11.Data(data=payload)) or ())
        wire.append(self.h11.send(h11.EndOfMessage()) or b"")
        self.transport.writelines(wire)
        try:
            await self.flow.drain()
        except OSError:
            pass  # the connection is gone; the answer (or its failure) says what happened
        return await answer

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._process()

    def _process(self) -> None:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                self.fail(TransportError(f"bad HTTP/1.1 answer from worker: {exc}"))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.Data):
                if self.size < MAX_ANSWER_BODY:
                    self.chunks.append(event.data[: MAX_ANSWER_BODY - self.size])
                self.size += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._answered()
            elif isinstance(event, h11.ConnectionClosed):
                self.fail(TransportError("worker closed the HTTP/1.1 connection before answering"))
                return

    def _answered(self) -> None:
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        self.idle_since = time.monotonic()
        answer, self.answer = self.answer, None
        if answer is not None and not answer.done():
            answer.set_result((self.status, b"".join(self.chunks)))

    def eof_received(self) -> bool | None:
        self.h11.receive_data(b"")  # an answer delimited by the close completes here
        self._process()
        self.fail(TransportError("worker closed the HTTP/1.1 connection before answering"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.flow.lost(exc or ConnectionResetError("HTTP/1.1 connection closed"))
        self.fail(TransportError(f"HTTP/1.1 connection to worker lost: {exc!r}" if exc else "connection closed"))

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    def fail(self, error: TransportError) -> None:
        if self.broken is None:
            self.broken = error
        answer, self.answer = self.answer, None
        if answer is not None and not answer.done():
            answer.set_exception(error)
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.broken is None:
            self.broken = TransportError("HTTP/1.1 exchange abandoned")
        if self.transport is not None:
            self.transport.abort()


class Http1Pool:
    """Idle keep-alive connections per worker address (reqwest: 100 idle per host, 90 s)."""

    def __init__(self, *, connect_timeout: float, max_idle_per_host: int = 100, idle_timeout: float = 90.0) -> None:
        self.connect_timeout = connect_timeout
        self.max_idle_per_host = max_idle_per_host
        self.idle_timeout = idle_timeout
        self._idle: dict[tuple[str, int], list[Http1ClientConnection]] = {}

    async def exchange(self, target: HttpTarget, fields: HeaderFields, payload: bytes) -> tuple[int, bytes]:
        connection = self._take_idle(target) or await open_connection(
            Http1ClientConnection, target, self.connect_timeout
        )
        try:
            result = await connection.exchange(target, fields, payload)
        except BaseException:
            connection.abort()  # timed out or cancelled mid-exchange: its state is unknown
            raise
        self._give_back(target, connection)
        return result

    def _take_idle(self, target: HttpTarget) -> Http1ClientConnection | None:
        idle = self._idle.get((target.host, target.port))
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.reusable and now - connection.idle_since < self.idle_timeout:
                return connection
            connection.close()
        return None

    def _give_back(self, target: HttpTarget, connection: Http1ClientConnection) -> None:
        idle = self._idle.setdefault((target.host, target.port), [])
        if connection.reusable and len(idle) < self.max_idle_per_host:
            idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
