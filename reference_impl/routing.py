"""Names and addresses: instance paths, transport strings, subjects, URLs.

Every name derived from an endpoint triple lives here so the worker that
advertises an address and the caller that parses it cannot drift apart.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

NAME_PATTERN = re.compile(r"^[a-z0-9_-]+$")


@dataclass(frozen=True, slots=True)
class EndpointId:
    namespace: str
    component: str
    endpoint: str

    @classmethod
    def parse(cls, dotted: str) -> EndpointId:
        """``ns.component.endpoint``, optionally prefixed by ``dyn://``."""
        text = dotted.removeprefix("dyn://")
        parts = text.split(".")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"endpoint must be 'namespace.component.endpoint', got {dotted!r}")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.namespace}.{self.component}.{self.endpoint}"


def escape_path_segment(segment: str) -> str:
    """``%`` then ``/`` percent-escaped, so a segment can never split the path."""
    return segment.replace("%", "%25").replace("/", "%2F")


def instance_path(endpoint: EndpointId, instance_id: int) -> str:
    """Routing key of one endpoint instance on the TCP plane (Dynamo >= 1.6)."""
    return "/".join(
        (
            f"{instance_id:x}",
            escape_path_segment(endpoint.namespace),
            escape_path_segment(endpoint.component),
            escape_path_segment(endpoint.endpoint),
        )
    )


def format_socket_address(host: str, port: int) -> str:
    """``ip:port`` with IPv6 bracketed, as Rust's ``SocketAddr`` displays it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tcp_transport(host: str, port: int, path: str) -> str:
    return f"{format_socket_address(host, port)}/{path}"


@dataclass(frozen=True, slots=True)
class TcpTarget:
    host: str
    port: int
    path: str


def parse_socket_address(text: str) -> tuple[str, int]:
    """Parse an IP-literal socket address; hostnames are refused, as Dynamo does."""
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"bad IPv6 socket address {text!r}")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"bad socket address {text!r}")
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        raise ValueError(f"socket address must be an IP literal and a port, got {text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {text!r}")
    return host, port


@functools.lru_cache(maxsize=1024)  # a caller parses the same few records' addresses on every request
def parse_tcp_transport(transport: str) -> TcpTarget:
    """``[tcp://]ip:port/path``: the address ends at the first ``/``."""
    text = transport.removeprefix("tcp://")
    address, sep, path = text.partition("/")
    if not sep:
        raise ValueError(f"TCP transport has no endpoint path: {transport!r}")
    host, port = parse_socket_address(address)
    return TcpTarget(host, port, path)


@functools.lru_cache(maxsize=1024)  # a worker sees the same few callers' addresses on every request
def parse_callhome_address(address: str) -> tuple[str, int]:
    """Call-home address: bracketed or not (1.2.x wrote ``::1:PORT``); split at the last colon."""
    if address.startswith("["):
        return parse_socket_address(address)
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"bad call-home address {address!r}")
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        raise ValueError(f"call-home address must be an IP literal and a port, got {address!r}") from None
    return host, port


def nats_subject(endpoint: EndpointId, instance_id: int) -> str:
    """Subject advertised in discovery: ``{ns}_{component}.{endpoint}-{id:x}`` (not slugified)."""
    return f"{endpoint.namespace}_{endpoint.component}.{endpoint.endpoint}-{instance_id:x}"


def slugify(text: str) -> str:
    """Dynamo's slug: lowercase, ``[a-z0-9_-]`` kept, others become ``_``, leading ``_`` trimmed."""
    lowered = text.lower()
    return re.sub(r"[^a-z0-9_-]", "_", lowered).lstrip("_")


def nats_service_name(endpoint: EndpointId) -> str:
    return slugify(f"{endpoint.namespace}_{endpoint.component}")


def nats_service_subject(endpoint: EndpointId, instance_id: int) -> str:
    """Subject the worker actually subscribes: the service group plus ``{endpoint}-{id:x}``."""
    return f"{nats_service_name(endpoint)}.{endpoint.endpoint}-{instance_id:x}"


DEFAULT_HTTP_ROOT = "/v1/rpc"


def http_url(host: str, port: int, endpoint_name: str, root: str = DEFAULT_HTTP_ROOT) -> str:
    return f"http://{format_socket_address(host, port)}{root}/{endpoint_name}"
