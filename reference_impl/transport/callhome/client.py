"""Worker side of the response stream: dial the caller and stream frames.

Writes are flow controlled (a caller that stops reading blocks the handler
instead of growing a buffer).  ``"stop"``/``"kill"`` from the caller are
reported through callbacks as soon as they arrive, so they reach the
handler while it is still producing.

Frames written in the same event-loop turn are corked and leave in one
``write`` at the end of the turn (or as soon as :data:`CORK_LIMIT` bytes
wait): a small request's handshake, prologue, item, final frame and
sentinel cost one or two ``send`` syscalls instead of five, and a burst of
small items one per 64 KiB.  The byte stream is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from reference_impl.errors import TransportError
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.protocol.response_stream import CancelReceived, ProtocolViolation, WorkerStream
from reference_impl.routing import parse_callhome_address
from reference_impl.transport.flow import WriteFlowControl, set_nodelay

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_FIN_WAIT = 10.0
CORK_LIMIT = 64 * 1024


class CallHomeConnection(asyncio.Protocol):
    """One call-home connection, driven by a :class:`WorkerStream`."""

    def __init__(
        self,
        subject: str,
        codec: PayloadCodec,
        on_cancel: Callable[[str], None],
        *,
        write_checksum: bool = False,
    ) -> None:
        self.stream = WorkerStream(subject, codec, write_checksum=write_checksum)
        self._on_cancel = on_cancel
        self._flow = WriteFlowControl()
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._peer_closed = self._loop.create_future()
        self._corked: list[bytes] = []
        self._corked_bytes = 0
        self.lost = False

    # -- asyncio callbacks ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        set_nodelay(transport)

    def data_received(self, data: bytes) -> None:
        for event in self.stream.receive_data(data):
            if isinstance(event, CancelReceived):
                self._on_cancel(event.kind)
            elif isinstance(event, ProtocolViolation):
                log.warning("caller broke the response-stream protocol: %s; killing the stream", event.reason)
                self._on_cancel("kill")
                self.abort()

    def eof_received(self) -> bool | None:
        if not self._peer_closed.done():
            self._peer_closed.set_result(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._flow.lost(exc or ConnectionResetError("call-home connection closed by the caller"))
        if not self._peer_closed.done():
            self._peer_closed.set_result(None)

    def pause_writing(self) -> None:
        self._flow.pause()

    def resume_writing(self) -> None:
        self._flow.resume()

    # -- worker API -------------------------------------------------------------

    async def send(self, frame: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise TransportError("call-home connection is closed")
        if not self._corked:
            self._loop.call_soon(self._flush)
        self._corked.append(frame)
        self._corked_bytes += len(frame)
        if self._corked_bytes >= CORK_LIMIT:
            self._flush()
        await self._flow.drain()

    def _flush(self) -> None:
        """Write what is corked, in one piece (a no-op once flushed)."""
        if not self._corked:
            return
        frames, self._corked, self._corked_bytes = self._corked, [], 0
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    async def send_item(self, data: Any) -> None:
        await self.send(self.stream.item(data))

    async def finish(self, fin_wait: float = DEFAULT_FIN_WAIT) -> None:
        """Final frame, sentinel, then wait for the caller's FIN before closing."""
        await self.send(self.stream.final())
        await self.send(self.stream.sentinel())
        await self.wait_peer_close(fin_wait)

    async def wait_peer_close(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):  # cheaper than wait_for: no extra future or callbacks
                await asyncio.shield(self._peer_closed)
        except TimeoutError:
            log.info("caller did not close the response stream within %.1fs of the sentinel", timeout)
        self.close()

    def close(self) -> None:
        self._flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self._corked, self._corked_bytes = [], 0
        if self.transport is not None:
            self.transport.abort()


async def dial_caller(
    address: str,
    subject: str,
    codec: PayloadCodec,
    on_cancel: Callable[[str], None],
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
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
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        async with asyncio.timeout(connect_timeout):
            if not _connect_at_once(sock, (host, port)):
                await loop.sock_connect(sock, (host, port))
            _, protocol = await loop.create_connection(
                lambda: CallHomeConnection(subject, codec, on_cancel, write_checksum=write_checksum), sock=sock
            )
    except BaseException as exc:
        sock.close()
        if isinstance(exc, (TimeoutError, OSError)):
            raise TransportError(f"cannot call home to {address}: {exc!r}") from exc
        raise
    await protocol.send(protocol.stream.handshake())
    return protocol


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
