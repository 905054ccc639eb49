"""HTTP request plane, caller side.

A request is ``POST <url from discovery>`` with the envelope as an
``application/octet-stream`` body; any 2xx is the ACK (its body is ignored,
as Dynamo's caller ignores it).  Dynamo's caller (reqwest) speaks HTTP/1.1
with keep-alive; this one speaks that (``version="http/1.1"``) or h2c with
prior knowledge (``version="h2"``), where every request to one worker is a
stream on one connection.  The whole exchange is bounded by
``request_timeout`` (Dynamo: 5 s); nothing is retried once it may have
reached the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from reference_impl.errors import AckTimeout, RequestRejected, TransportError, WorkerOverloaded, WorkerUnavailable
from reference_impl.protocol import ack
from reference_impl.transport.http.http1_client import Http1Pool
from reference_impl.transport.http.http2_client import ConnectionRetired, Http2ClientConnection
from reference_impl.transport.http.target import HeaderFields, HttpTarget, open_connection, parse_http_url

DEFAULT_REQUEST_TIMEOUT = 5.0  # DYN_HTTP_REQUEST_TIMEOUT
DEFAULT_CONNECT_TIMEOUT = 5.0
VERSIONS = ("h2", "http/1.1")

# Framing and hop-by-hop headers are the client's own business; callers cannot set them.
RESERVED_HEADERS = frozenset(
    (b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"expect")
)


def request_headers(headers: Mapping[str, str]) -> HeaderFields:
    """What reqwest sends besides host and length: content type, accept, then the caller's headers."""
    fields = [(b"content-type", b"application/octet-stream"), (b"accept", b"*/*")]
    for name, value in headers.items():
        key = name.lower().encode("latin-1")
        if key in RESERVED_HEADERS or key.startswith(b":"):
            continue
        if key in (b"content-type", b"accept"):
            fields = [field for field in fields if field[0] != key]
        fields.append((key, value.encode("latin-1")))
    return fields


def ack_from_response(status: int, body: bytes) -> bytes:
    """2xx -> the empty ACK; anything else raises the matching rejection."""
    if 200 <= status < 300:
        return b""
    text = body.decode("utf-8", errors="replace")
    if text.startswith(ack.UNAVAILABLE_PREFIX):
        raise WorkerUnavailable(text)
    if text.startswith(ack.OVERLOADED_PREFIX):
        raise WorkerOverloaded(text)
    if status == 404:
        raise WorkerUnavailable(f"HTTP 404: {text}")
    raise RequestRejected(f"HTTP {status}: {text}")


class HttpRequestClient:
    """POST requests to workers and turn their answers into ACKs."""

    def __init__(
        self,
        *,
        version: str = "h2",
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_idle_per_host: int = 100,  # DYN_HTTP2_POOL_MAX_IDLE_PER_HOST
        idle_timeout: float = 90.0,  # DYN_HTTP2_POOL_IDLE_TIMEOUT_SECS
    ) -> None:
        if version not in VERSIONS:
            raise ValueError(f"HTTP version must be one of {VERSIONS}, got {version!r}")
        self.version = version
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self._http1 = Http1Pool(
            connect_timeout=connect_timeout, max_idle_per_host=max_idle_per_host, idle_timeout=idle_timeout
        )
        self._http2: dict[tuple[str, int], Http2ClientConnection] = {}
        self._connecting: dict[tuple[str, int], asyncio.Task[Http2ClientConnection]] = {}
        self._http2_all: set[Http2ClientConnection] = set()  # retired ones too, until they close

    async def send(self, url: str, headers: Mapping[str, str], payload: bytes) -> bytes:
        """POST one request; return the ACK (``b""``) or raise the rejection or transport error."""
        target = parse_http_url(url)
        fields = request_headers(headers)
        try:
            async with asyncio.timeout(self.request_timeout):
                if self.version == "h2":
                    status, body = await self._send_http2(target, fields, payload)
                else:
                    status, body = await self._http1.exchange(target, fields, payload)
        except TimeoutError:
            raise AckTimeout(f"no HTTP answer from {url} within {self.request_timeout:.1f}s") from None
        return ack_from_response(status, body)

    async def _send_http2(self, target: HttpTarget, fields: HeaderFields, payload: bytes) -> tuple[int, bytes]:
        for _ in range(3):
            connection = await self._http2_connection(target)
            try:
                return await connection.exchange(target, fields, payload)
            except ConnectionRetired:
                continue  # nothing was sent on it: a fresh connection is not a retry
        raise TransportError(f"worker at {target.authority.decode()} keeps refusing new HTTP/2 streams (GOAWAY)")

    async def _http2_connection(self, target: HttpTarget) -> Http2ClientConnection:
        key = (target.host, target.port)
        connection = self._http2.get(key)
        if connection is not None and connection.accepting:
            return connection
        task = self._connecting.get(key)
        if task is None:
            task = asyncio.ensure_future(self._connect_http2(key, target))
            self._connecting[key] = task
            task.add_done_callback(lambda done: self._connected(key, done))
        return await asyncio.shield(task)

    async def _connect_http2(self, key: tuple[str, int], target: HttpTarget) -> Http2ClientConnection:
        connection = await open_connection(Http2ClientConnection, target, self.connect_timeout)
        self._http2[key] = connection  # kept even if every request waiting for it has timed out
        self._http2_all = {c for c in self._http2_all if not c.closed} | {connection}
        return connection

    def _connected(self, key: tuple[str, int], task: asyncio.Task[Http2ClientConnection]) -> None:
        self._connecting.pop(key, None)
        if not task.cancelled():
            task.exception()  # waiters that gave up no longer read it; do not warn about it

    async def close(self) -> None:
        for connection in self._http2_all:
            connection.close()
        self._http2.clear()
        self._http2_all.clear()
        self._http1.close()
