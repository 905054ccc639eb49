"""NATS request plane, caller side: one shared connection, request/reply ACKs.

A request is a NATS request with headers to the subject advertised in
discovery; any reply is the ACK.  An empty reply means "accepted"; a reply
carrying ``Nats-Service-Error`` headers is a rejection and :meth:`send`
returns its text (never empty), so ``protocol.ack.check_ack`` turns it into
the matching :class:`~reference_impl.errors.RequestRejected`, exactly as on TCP.

Where nats-py alone would mislead, this module checks for itself:

* nats-py compares only the payload with the server's ``max_payload``, but
  the server counts headers too and answers an oversized ``HPUB`` by closing
  the connection (nats-py then stays closed and the request just times out).
  :meth:`NatsRequestClient.send` counts both and refuses before publishing.
* nats-py keeps a request waiting through a reconnect until its timeout.
  Here a request in flight when the connection drops fails at once (the
  worker may or may not have received it), and a request made while
  reconnecting fails at once instead of being buffered.

* nats-py's ``flush()`` can overtake commands still in its buffer;
  :func:`confirm_sent` is the barrier to use instead.

:class:`NatsLink` (connect with bounded, logged reconnects) and
:func:`confirm_sent` are shared with the worker side in
:mod:`reference_impl.transport.nats.server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER

from reference_impl.errors import AckTimeout, LocalProtocolError, NatsPayloadTooLarge, TransportError

log = logging.getLogger(__name__)

DEFAULT_REQUEST_TIMEOUT = 10.0  # async-nats' default request timeout, which Dynamo keeps
DEFAULT_CONNECT_TIMEOUT = 5.0
# Dynamo connects with user/pass "user"/"user" when no NATS_AUTH_* variable is set; a server without auth accepts it.
DYNAMO_DEFAULT_CREDENTIALS = ("user", "user")


class NatsNoResponders(TransportError):
    """Nobody subscribes to the subject: the server answered the request with status 503."""


# --- the connection ------------------------------------------------------------------------------------------------

_CONNECTION_ERRORS = (OSError, nats.errors.UnexpectedEOF, nats.errors.StaleConnectionError)


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How long a connection keeps trying after losing its server: ``time_wait * max_attempts`` seconds at most."""

    time_wait: float = 0.5
    max_attempts: int = 240
    ping_interval: float = 10.0  # detects a silent server in ~3 intervals (2 outstanding pings)

    def __post_init__(self) -> None:
        # nats-py treats max_reconnect_attempts <= 0 as "forever"; keep every wait bounded.
        if self.max_attempts <= 0 or self.time_wait <= 0 or self.ping_interval <= 0:
            raise ValueError("reconnect policy values must be positive (nats-py reads <= 0 attempts as unlimited)")


class NatsLink:
    """One NATS connection with bounded, logged reconnects.

    ``lost`` is a future that fails when the current session drops, so work tied to that session (requests
    waiting for a reply) can fail at once; each reconnect starts a new one.  ``failure`` says why nats-py gave up,
    after which the connection is closed for good.
    """

    def __init__(
        self,
        url: str,
        *,
        label: str,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        reconnect: ReconnectPolicy | None = None,
        credentials: tuple[str, str] | None = DYNAMO_DEFAULT_CREDENTIALS,
        flush_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.label = label
        self.connect_timeout = connect_timeout
        self.reconnect = reconnect or ReconnectPolicy()
        self.credentials = credentials
        self.flush_timeout = flush_timeout
        self.failure: str | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._nc: NatsClient | None = None
        self._closing = False

    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise RuntimeError(f"{self.label}: NATS connection not open")
        return self._nc

    @property
    def usable(self) -> bool:
        """Open, or still reconnecting within its bounds."""
        return self._nc is not None and not self._nc.is_closed and not self._closing

    async def open(self) -> NatsClient:
        options: dict[str, Any] = {
            "name": self.label,
            "connect_timeout": max(1, math.ceil(self.connect_timeout)),  # per attempt; whole open is bounded below
            "reconnect_time_wait": self.reconnect.time_wait,
            "max_reconnect_attempts": self.reconnect.max_attempts,
            "ping_interval": self.reconnect.ping_interval,
            "flush_timeout": self.flush_timeout,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "closed_cb": self._on_closed,
        }
        if self.credentials is not None and not urlsplit(self.url).username:
            # nats-py would let these override credentials written in the URL, so only add them when it has none.
            options["user"], options["password"] = self.credentials
        try:
            self._nc = await asyncio.wait_for(nats.connect(self.url, **options), self.connect_timeout)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            raise TransportError(
                f"{self.label}: cannot connect to NATS at {self.url} within {self.connect_timeout:.1f}s ({reason})"
            ) from exc
        log.debug("%s: connected to NATS at %s (max_payload %d)", self.label, self.url, self._nc.max_payload)
        return self._nc

    async def close(self, timeout: float = 5.0) -> None:
        self._closing = True
        self._drop(TransportError(f"{self.label}: NATS connection closed"))
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.close(), timeout)
            except (TimeoutError, OSError, nats.errors.Error) as exc:
                log.debug("%s: closing the NATS connection: %r", self.label, exc)

    def _drop(self, error: TransportError) -> None:
        if not self.lost.done():
            self.lost.set_exception(error)
            self.lost.exception()  # retrieved: nobody may be waiting on this session

    # nats-py callbacks

    async def _on_error(self, exc: Exception) -> None:
        nc = self._nc
        if nc is not None and (nc.is_reconnecting or nc.is_connecting):
            log.debug("%s: reconnect attempt to %s failed: %r", self.label, self.url, exc)
        elif isinstance(exc, _CONNECTION_ERRORS):
            log.debug("%s: connection to %s broke: %r", self.label, self.url, exc)  # the disconnect is logged
        elif not self._closing:
            log.warning("%s: NATS error on %s: %r", self.label, self.url, exc)

    async def _on_disconnected(self) -> None:
        self._drop(TransportError(f"{self.label}: NATS connection to {self.url} lost"))
        if not self._closing:
            log.warning(
                "%s: lost NATS connection to %s; reconnecting every %.1fs, at most %d attempts",
                self.label,
                self.url,
                self.reconnect.time_wait,
                self.reconnect.max_attempts,
            )

    async def _on_reconnected(self) -> None:
        self.lost = asyncio.get_running_loop().create_future()
        log.warning("%s: reconnected to NATS at %s; subscriptions restored", self.label, self.url)

    async def _on_closed(self) -> None:
        self._drop(TransportError(f"{self.label}: NATS connection to {self.url} closed"))
        if self._closing:
            return
        last = self._nc.last_error if self._nc is not None else None
        self.failure = f"NATS connection to {self.url} closed: {last!r}" if last else "NATS connection closed"
        log.error("%s: gave up on NATS at %s: %s", self.label, self.url, self.failure)


async def confirm_sent(nc: NatsClient, timeout: float) -> None:
    """Return once the server has processed everything this connection sent before the call.

    nats-py's ``flush()`` writes its PING straight to the socket, ahead of commands still in its pending buffer, so
    its PONG proves nothing about them (a SUB can still be unknown to the server).  A message to ourselves, queued
    behind them, does.
    """
    subscription = await nc.subscribe(nc.new_inbox())
    try:
        await nc.publish(subscription.subject, b"")
        await subscription.next_msg(timeout=timeout)
    finally:
        with contextlib.suppress(nats.errors.Error):
            await subscription.unsubscribe()


# --- requests ------------------------------------------------------------------------------------------------------


def encoded_header_size(headers: Mapping[str, str] | None) -> int:
    """Bytes of the ``NATS/1.0`` header block nats-py writes for these headers (0 when there are none)."""
    if headers is None:
        return 0
    size = len(b"NATS/1.0\r\n\r\n")
    for key, value in headers.items():
        name = key.strip()
        if name:
            size += len(name.encode()) + 2 + len(value.strip().encode()) + 2
    return size


def ack_from_reply(reply: Msg) -> bytes:
    """The ACK text of a reply: its payload, or for a service error with no payload the error itself."""
    headers = reply.headers or {}
    description = headers.get(ERROR_HEADER)
    if description is None or reply.data:
        return reply.data
    return f"NATS service error {headers.get(ERROR_CODE_HEADER, '')}: {description}".encode()


class NatsRequestClient:
    """Send request envelopes as NATS requests and return their ACKs."""

    def __init__(
        self,
        nats_url: str,
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        reconnect: ReconnectPolicy | None = None,
        credentials: tuple[str, str] | None = DYNAMO_DEFAULT_CREDENTIALS,
    ) -> None:
        self.nats_url = nats_url
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.reconnect = reconnect or ReconnectPolicy()
        self.credentials = credentials
        self._link: NatsLink | None = None
        self._connect_lock = asyncio.Lock()
        self._closed = False

    async def _usable_link(self) -> NatsLink:
        """The shared connection, opened on first use and reopened if nats-py gave up on the last one."""
        async with self._connect_lock:
            if self._closed:
                raise TransportError("NATS request client is closed")
            if self._link is None or not self._link.usable:
                link = NatsLink(
                    self.nats_url,
                    label="nats request client",
                    connect_timeout=self.connect_timeout,
                    reconnect=self.reconnect,
                    credentials=self.credentials,
                    flush_timeout=self.request_timeout,
                )
                await link.open()
                self._link = link
            return self._link

    async def send(self, subject: str, headers: Mapping[str, str], payload: bytes) -> bytes:
        """Send one request; return its ACK bytes (empty = accepted, otherwise the rejection text)."""
        link = await self._usable_link()
        nc = link.nc
        if not nc.is_connected:
            raise TransportError(
                f"not connected to NATS at {self.nats_url} (reconnecting); request to {subject} not sent"
            )
        header_map = dict(headers) or None
        header_size = encoded_header_size(header_map)
        if header_size + len(payload) > nc.max_payload:
            raise NatsPayloadTooLarge(subject, header_size + len(payload), header_size, nc.max_payload)
        lost = link.lost
        request = asyncio.ensure_future(nc.request(subject, payload, timeout=self.request_timeout, headers=header_map))
        try:
            waiters: set[asyncio.Future[Any]] = {request, lost}
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not request.done():
                request.cancel()
        if request not in done:
            raise TransportError(
                f"NATS connection to {self.nats_url} lost while waiting for the ACK on {subject}; "
                "the worker may or may not have received the request"
            )
        return self._ack(subject, request)

    def _ack(self, subject: str, request: asyncio.Future[Msg]) -> bytes:
        try:
            return ack_from_reply(request.result())
        except nats.errors.NoRespondersError:
            raise NatsNoResponders(f"no responders on {subject} (NATS at {self.nats_url}): no worker subscribes to it")
        except nats.errors.TimeoutError:
            raise AckTimeout(f"no ACK on {subject} within {self.request_timeout:.1f}s")
        except nats.errors.MaxPayloadError:
            raise TransportError(f"request to {subject} exceeds the NATS server's max_payload")
        except (nats.errors.BadHeaderError, nats.errors.BadSubjectError) as exc:
            raise LocalProtocolError(f"cannot send a request to {subject!r}: {exc}")
        except (nats.errors.Error, OSError) as exc:
            raise TransportError(f"NATS request to {subject} failed: {exc!r}") from exc

    async def close(self) -> None:
        """Close the shared connection; requests still waiting fail with a TransportError."""
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            with contextlib.suppress(Exception):
                await link.close(timeout=self.connect_timeout)
