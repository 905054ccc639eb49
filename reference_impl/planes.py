"""The one registry of request planes: which exist, and how to serve and reach each.

Adding a plane: a folder under ``transport/`` with its server, client and a
:class:`~reference_impl.transport.plane.Plane` describing them, and one line below.
"""

from __future__ import annotations

from reference_impl.transport.http.plane import HTTP
from reference_impl.transport.nats.plane import NATS
from reference_impl.transport.plane import Plane
from reference_impl.transport.tcp.plane import TCP

REGISTRY: dict[str, Plane] = {plane.name: plane for plane in (TCP, NATS, HTTP)}

PLANES = tuple(REGISTRY)  # names, in the order they are offered (DYN_REQUEST_PLANE's values)
_BY_TRANSPORT_KIND = {plane.transport_kind: plane for plane in REGISTRY.values()}


def plane_named(name: str) -> Plane:
    """The plane ``DYN_REQUEST_PLANE`` names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown request plane {name!r}; this build supports {', '.join(PLANES)}") from None


def plane_of_transport(transport_kind: str) -> Plane | None:
    """The plane a discovery record's transport key belongs to; None for one this build does not speak."""
    return _BY_TRANSPORT_KIND.get(transport_kind)
