"""Where an HTTP request-plane request goes, and opening the connection to it."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from reference_impl.errors import TransportError
from reference_impl.routing import format_socket_address

_P = TypeVar("_P", bound=asyncio.BaseProtocol)

HeaderFields = list[tuple[bytes, bytes]]  # lowercase names, in sending order


@dataclass(frozen=True, slots=True)
class HttpTarget:
    host: str
    port: int
    path: bytes  # origin-form request target: path and query

    @property
    def authority(self) -> bytes:
        return format_socket_address(self.host, self.port).encode()


def parse_http_url(url: str) -> HttpTarget:
    """``http://ip:port/path``, the form Dynamo advertises (IPv6 bracketed).  No TLS: the plane has none."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"HTTP request plane URL must be http://, got {url!r}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    if not host:
        raise ValueError(f"no host in {url!r}")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        pass  # a name: Dynamo advertises IPs, but connecting to a name does no harm
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return HttpTarget(host, port or 80, path.encode())


async def open_connection(factory: Callable[[], _P], target: HttpTarget, timeout: float) -> _P:
    """Connect within ``timeout``; any failure is a ``TransportError`` (Dynamo: ``CannotConnect``)."""
    loop = asyncio.get_running_loop()
    try:
        _, protocol = await asyncio.wait_for(loop.create_connection(factory, target.host, target.port), timeout)
    except (TimeoutError, OSError) as exc:
        where = target.authority.decode()
        raise TransportError(f"cannot connect to worker at {where}: {exc!r}") from exc
    return protocol
