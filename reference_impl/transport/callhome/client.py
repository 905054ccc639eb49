"""Worker side of the response stream: dial the caller and stream frames.

Writes are flow controlled (a caller that stops reading blocks the handler
instead of growing a buffer).  ``"stop"``/``"kill"`` from the caller are
reported through callbacks as soon as they arrive, so they reach the
handler while it is still producing.

Frames written in the same event-loop turn are corked and leave in one
``send`` at the end of the turn (or as soon as :data:`CORK_LIMIT` bytes
wait): a small request's handshake, prologue, item, final frame and
sentinel cost one ``send`` syscall instead of five, and a burst of small
items one per 64 KiB.  The byte stream is unchanged.

The connection drives its non-blocking socket itself (``add_reader`` /
``add_writer`` on the running loop) instead of through an asyncio
transport: there is one of these per request, and a transport costs a
dozen event-loop callbacks, futures and ``getsockname``/``getpeername``
calls to set up and tear down (profiled: about a quarter of a worker's CPU
per small request).  What it keeps from a transport: writes buffered past
what the kernel takes, write pressure above :data:`HIGH_WATER` bytes
blocking the writer until the buffer drains below :data:`LOW_WATER`, EOF
from the caller closing the connection once what is queued has been sent.

A caller that stops reading blocks the handler, but not for ever: a writer
that has waited ``write_timeout`` seconds for the buffer to drain (or a
graceful close for its last bytes to leave) drops the connection with a
logged reason, and the handler sees a :class:`TransportError`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from reference_impl.errors import TransportError
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.protocol.response_stream import CancelReceived, ProtocolViolation, WorkerStream
from reference_impl.routing import parse_callhome_address

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_FIN_WAIT = 10.0
DEFAULT_WRITE_TIMEOUT = 60.0  # WorkerConfig.callhome_write_timeout says why
CORK_LIMIT = 64 * 1024
HIGH_WATER = 64 * 1024  # bytes the kernel would not take yet: above this, send() waits (asyncio's default)
LOW_WATER = HIGH_WATER // 4
READ_SIZE = 64 * 1024


class CallHomeConnection:
    """One call-home connection, driven by a :class:`WorkerStream`, on a connected non-blocking socket."""

    def __init__(
        self,
        sock: socket.socket,
        subject: str,
        codec: PayloadCodec,
        on_cancel: Callable[[str], None],
        *,
        write_timeout: float | None = DEFAULT_WRITE_TIMEOUT,
        write_checksum: bool = False,
    ) -> None:
        self.stream = WorkerStream(subject, codec, write_checksum=write_checksum)
        self._write_timeout = write_timeout
        self._on_cancel = on_cancel
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        self._loop = asyncio.get_running_loop()
        self._peer_closed = self._loop.create_future()
        self._corked: list[bytes] = []
        self._corked_bytes = 0
        self._backlog = bytearray()  # bytes the kernel did not take yet
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._error: TransportError | None = None
        self._closing = False  # no more writes; close once the backlog is sent
        self._reading = True  # registered with the loop for reading ...
        self._writing = False  # ... and for writing (removing an unregistered fd is not free in asyncio)
        self.lost = False
        self._loop.add_reader(self._fd, self._readable)

    # -- event-loop callbacks -------------------------------------------------------

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not data:
            # The caller's FIN: like an asyncio transport whose eof_received() returns False,
            # stop reading and close once what is queued has left.
            self._reading = False
            self._loop.remove_reader(self._fd)
            if not self._peer_closed.done():
                self._peer_closed.set_result(None)
            self.close()
            return
        for event in self.stream.receive_data(data):
            if isinstance(event, CancelReceived):
                self._on_cancel(event.kind)
            elif isinstance(event, ProtocolViolation):
                log.warning("caller broke the response-stream protocol: %s; killing the stream", event.reason)
                self._on_cancel("kill")
                self.abort()
                return

    def _writable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sent = sock.send(self._backlog)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        del self._backlog[:sent]
        if not self._backlog:
            self._writing = False
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._release()
        if len(self._backlog) <= LOW_WATER:
            self._wake_writers(None)

    def _lost(self, exc: BaseException | None) -> None:
        """The connection broke (reset, broken pipe): fail writers, resolve the FIN wait, release the socket."""
        self.lost = True
        if self._error is None:
            self._error = TransportError(f"call-home connection lost: {exc!r}" if exc else "call-home connection lost")
        self._corked, self._corked_bytes = [], 0
        self._backlog.clear()
        self._wake_writers(self._error)
        if not self._peer_closed.done():
            self._peer_closed.set_result(None)
        self._release()

    def _wake_writers(self, error: BaseException | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)

    def _release(self) -> None:
        """Forget the socket: off the selector, closed (a FIN, or the queued bytes then a FIN)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._fd)
        sock.close()
        self.lost = True

    # -- worker API -----------------------------------------------------------------

    async def send(self, frame: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._sock is None or self._closing:
            raise TransportError("call-home connection is closed")
        if not self._corked:
            self._loop.call_soon(self._flush)
        self._corked.append(frame)
        self._corked_bytes += len(frame)
        if self._corked_bytes >= CORK_LIMIT:
            self._flush()
        if len(self._backlog) > HIGH_WATER:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            if self._write_timeout is None:
                await waiter
                return
            timer = self._loop.call_later(self._write_timeout, self._stalled)
            try:
                await waiter
            finally:
                timer.cancel()

    def _stalled(self) -> None:
        """The caller has not read for ``write_timeout`` seconds: drop the stream, saying why."""
        if self._sock is None:
            return
        reason = f"caller read nothing of its response stream for {self._write_timeout}s"
        log.warning("dropping call-home connection for %s: %s", self.stream.subject, reason)
        self._error = TransportError(f"call-home connection dropped: {reason}")
        self.abort()

    def _flush(self) -> None:
        """Send what is corked, in one piece (a no-op once flushed); queue what the kernel does not take."""
        if not self._corked:
            return
        frames, self._corked, self._corked_bytes = self._corked, [], 0
        sock = self._sock
        if sock is None:
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        if self._backlog:
            self._backlog += data
            return
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._lost(exc)
            return
        if sent < len(data):
            self._backlog += memoryview(data)[sent:]
            self._writing = True
            self._loop.add_writer(self._fd, self._writable)

    async def send_item(self, data: object) -> None:
        await self.send(self.stream.item(data))

    async def finish(self, fin_wait: float = DEFAULT_FIN_WAIT) -> None:
        """Final frame, sentinel, then wait for the caller's FIN before closing."""
        await self.send(self.stream.final())
        await self.send(self.stream.sentinel())
        await self.wait_peer_close(fin_wait)

    async def wait_peer_close(self, timeout: float) -> None:
        """Wait (bounded) for the caller's FIN, then close.  Once per request: a plain timer, not a timeout scope."""
        if not self._peer_closed.done():
            timer = self._loop.call_later(timeout, self._fin_wait_expired, timeout)
            try:
                await self._peer_closed
            finally:
                timer.cancel()
        self.close()

    def _fin_wait_expired(self, timeout: float) -> None:
        if not self._peer_closed.done():
            log.info("caller did not close the response stream within %.1fs of the sentinel", timeout)
            self._peer_closed.set_result(None)

    def close(self) -> None:
        """Graceful close: what is corked or queued is sent first, then FIN."""
        if self._sock is None:
            return
        self._flush()
        self._closing = True
        if not self._backlog:
            self._release()
        elif self._write_timeout is not None:  # the last bytes must leave in time too
            self._loop.call_later(self._write_timeout, self._stalled)

    def abort(self) -> None:
        """Drop whatever is queued and close now."""
        self._corked, self._corked_bytes = [], 0
        self._backlog.clear()
        self._closing = True
        self._wake_writers(self._error or TransportError("call-home connection aborted"))
        self._release()


async def dial_caller(
    address: str,
    subject: str,
    codec: PayloadCodec,
    on_cancel: Callable[[str], None],
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    write_timeout: float | None = DEFAULT_WRITE_TIMEOUT,
    write_checksum: bool = False,
) -> CallHomeConnection:
    """Connect to the caller's listener and send the handshake.

    One connection per request, so the connect is kept lean: the address is
    an IP literal (no resolution, no trying address after address as
    ``create_connection(host, port)`` does), and a connect that has already
    completed when ``connect()`` returns, as it has on loopback, is not
    waited for through the selector.
    """
    host, port = parse_callhome_address(address)
    loop = asyncio.get_running_loop()
    # Non-blocking from the start (SOCK_NONBLOCK): no separate ioctl per request.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    try:
        if not _connect_at_once(sock, (host, port)):
            async with asyncio.timeout(connect_timeout):  # armed only when there is something to wait for
                await loop.sock_connect(sock, (host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = CallHomeConnection(
            sock, subject, codec, on_cancel, write_timeout=write_timeout, write_checksum=write_checksum
        )
    except BaseException as exc:
        sock.close()
        if isinstance(exc, (TimeoutError, OSError)):
            raise TransportError(f"cannot call home to {address}: {exc!r}") from exc
        raise
    await connection.send(connection.stream.handshake())
    return connection


def _connect_at_once(sock: socket.socket, address: tuple[str, int]) -> bool:
    """Start a non-blocking connect; True when it is already established (a refusal raises)."""
    try:
        sock.connect(address)
    except BlockingIOError:
        try:
            sock.getpeername()
        except OSError:
            return False  # still in progress: wait for it through the selector
    return True
