"""TCP request plane, caller side: pooled, pipelined connections.

Requests are written back to back on a connection and matched to ACKs
strictly first-in first-out.  A connection that breaks, sends a bad ACK or
misses an ACK deadline fails every request still waiting on it and leaves
the pool; the next request opens a fresh one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Mapping
from typing import cast

from reference_impl.errors import AckTimeout, LocalProtocolError, ProtocolError, TransportError
from reference_impl.routing import TcpTarget
from reference_impl.transport.flow import WriteFlowControl, set_nodelay
from reference_impl.wire.request_frame import DEFAULT_MAX_MESSAGE_SIZE, AckDecoder, encode_request

log = logging.getLogger(__name__)

DEFAULT_REQUEST_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 5.0


class _PipelinedConnection(asyncio.Protocol):
    def __init__(self, max_message_size: int) -> None:
        self.decoder = AckDecoder(max_message_size=max_message_size)
        self.waiting: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.flow = WriteFlowControl()
        self.broken: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # not isinstance: uvloop's transports are not subclasses
        set_nodelay(transport)

    @property
    def usable(self) -> bool:
        return self.broken is None and self.transport is not None and not self.transport.is_closing()

    def data_received(self, data: bytes) -> None:
        try:
            self.decoder.feed(data)
            for ack_bytes in self.decoder:
                if not self.waiting:
                    raise ProtocolError(f"unsolicited ACK {ack_bytes[:80]!r}: no request is waiting for one")
                future = self.waiting.popleft()
                if not future.done():
                    future.set_result(ack_bytes)
        except ProtocolError as exc:
            self.fail(TransportError(f"bad ACK stream from worker: {exc}"))

    def eof_received(self) -> bool | None:
        self.fail(TransportError("connection closed before the worker acknowledged the request"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.flow.lost(exc or ConnectionResetError("request connection closed"))
        self.fail(TransportError(f"request connection lost: {exc!r}" if exc else "request connection closed"))

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    def fail(self, error: BaseException) -> None:
        """Fail every waiting request and take the connection out of service."""
        if self.broken is None:
            self.broken = error
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    async def send(self, frame: bytes) -> asyncio.Future[bytes]:
        assert self.transport is not None
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_mark_retrieved)
        self.waiting.append(future)
        self.transport.write(frame)
        await self.flow.drain()
        return future


def _mark_retrieved(future: asyncio.Future[bytes]) -> None:
    """A caller that gave up no longer awaits its ACK; do not warn about it."""
    if not future.cancelled():
        future.exception()


class TcpRequestClient:
    """Send request frames and wait for their ACKs."""

    def __init__(
        self,
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        pool_size: int = 8,
        channel_buffer: int = 1024,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.pool_size = pool_size
        self.channel_buffer = channel_buffer
        self.max_message_size = max_message_size
        self._pools: dict[tuple[str, int], list[_PipelinedConnection]] = {}
        self._connecting: dict[tuple[str, int], asyncio.Task[_PipelinedConnection]] = {}

    async def _connection(self, host: str, port: int) -> _PipelinedConnection:
        key = (host, port)
        pool = [c for c in self._pools.get(key, []) if c.usable]
        self._pools[key] = pool
        if pool:
            best = min(pool, key=lambda c: len(c.waiting))
            if len(best.waiting) < self.channel_buffer or len(pool) >= self.pool_size:
                return best
        task = self._connecting.get(key)
        if task is None:
            task = asyncio.ensure_future(self._open(host, port))
            self._connecting[key] = task
            task.add_done_callback(lambda _: self._connecting.pop(key, None))
        connection = await asyncio.shield(task)
        if connection not in self._pools.setdefault(key, []):
            self._pools[key].append(connection)
        return connection

    async def _open(self, host: str, port: int) -> _PipelinedConnection:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _PipelinedConnection(self.max_message_size), host, port),
                self.connect_timeout,
            )
        except (TimeoutError, OSError) as exc:
            raise TransportError(f"cannot connect to worker at {host}:{port}: {exc!r}") from exc
        return protocol

    async def send(self, target: TcpTarget, headers: Mapping[str, str], payload: bytes) -> bytes:
        """Send one request; return its ACK bytes (empty = accepted)."""
        frame = encode_request(target.path, headers, payload)
        if len(frame) > self.max_message_size:
            raise LocalProtocolError(
                f"request frame of {len(frame)} bytes exceeds the limit of {self.max_message_size} bytes"
            )
        connection = await self._connection(target.host, target.port)
        future = await connection.send(frame)
        try:
            async with asyncio.timeout(self.request_timeout):  # cheaper than wait_for, once per request
                return await asyncio.shield(future)
        except TimeoutError:
            # FIFO matching cannot skip an ACK: a late one would be paired with
            # the next request.  The connection is out of step; retire it.
            error = AckTimeout(f"no ACK from {target.host}:{target.port} within {self.request_timeout:.1f}s")
            connection.fail(error)
            raise error from None

    async def close(self) -> None:
        for pool in self._pools.values():
            for connection in pool:
                if connection.transport is not None:
                    connection.transport.close()
        self._pools.clear()
