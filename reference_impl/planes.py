"""The one registry of request planes: which exist, how to serve and reach each, and their settings.

Adding a plane: a folder under ``transport/`` with its server, client, config types and a
:class:`~reference_impl.transport.plane.Plane` describing them, and one line below.
``WorkerConfig``/``CallerConfig`` hold one config per plane registered here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from reference_impl import config as cfg
from reference_impl.transport.http.plane import HTTP
from reference_impl.transport.nats.plane import NATS
from reference_impl.transport.plane import Plane
from reference_impl.transport.tcp.plane import TCP

REGISTRY: dict[str, Plane[Any, Any]] = {plane.name: plane for plane in (TCP, NATS, HTTP)}

PLANES = tuple(REGISTRY)  # this build's planes, in the order they are offered (DYN_REQUEST_PLANE's values)
_BY_TRANSPORT_KIND = {plane.transport_kind: plane for plane in REGISTRY.values()}


def register(plane: Plane[Any, Any]) -> None:
    """Add a plane from outside this package (a test's toy plane); this build's own are listed above."""
    if plane.name in REGISTRY or plane.transport_kind in _BY_TRANSPORT_KIND:
        raise ValueError(f"a plane named {plane.name!r} or published as {plane.transport_kind!r} is registered")
    REGISTRY[plane.name] = plane
    _BY_TRANSPORT_KIND[plane.transport_kind] = plane


def unregister(name: str) -> None:
    plane = REGISTRY.pop(name)
    del _BY_TRANSPORT_KIND[plane.transport_kind]


def plane_named(name: str) -> Plane[Any, Any]:
    """The plane ``DYN_REQUEST_PLANE`` names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown request plane {name!r}; this build supports {', '.join(REGISTRY)}") from None


def plane_of_transport(transport_kind: str) -> Plane[Any, Any] | None:
    """The plane a discovery record's transport key belongs to; None for one this build does not speak."""
    return _BY_TRANSPORT_KIND.get(transport_kind)


def registered(value: Any) -> str | None:
    """A config check (``DYN_REQUEST_PLANE``): ``value`` names a registered plane."""
    return None if value in REGISTRY else f"expected one of {', '.join(REGISTRY)}"


# --- each plane's settings, for WorkerConfig and CallerConfig ------------------------------------

Role = Literal["worker", "caller"]


def config_type(plane: Plane[Any, Any], role: Role) -> type[cfg.Settings]:
    return plane.worker_config if role == "worker" else plane.caller_config


def read_plane_configs(
    role: Role, given: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, cfg.Settings]:
    """One config per registered plane: a given config as it is, a given mapping as overrides over the
    environment, and the environment (over the defaults) for every plane not given.  A name that is
    no registered plane is passed on, for the config's construction to refuse."""
    configs: dict[str, cfg.Settings] = {name: value for name, value in given.items() if name not in REGISTRY}
    for name, plane in REGISTRY.items():
        value = given.get(name)
        if value is None or isinstance(value, Mapping):
            configs[name] = config_type(plane, role).from_env(environ, **(value or {}))
        else:
            configs[name] = value
    return configs


def complete_plane_configs(role: Role, configs: Mapping[str, Any]) -> dict[str, cfg.Settings]:
    """``configs`` with defaults for the registered planes it lacks; an unknown plane or a config of
    another type is a :class:`~reference_impl.config.ConfigError`."""
    unknown = set(configs) - set(REGISTRY)
    if unknown:
        named = ", ".join(sorted(unknown))
        raise cfg.ConfigError(
            f"the {role}'s planes name no request plane {named}; this build has {', '.join(REGISTRY)}"
        )
    complete: dict[str, cfg.Settings] = {}
    for name, plane in REGISTRY.items():
        expected = config_type(plane, role)
        value = configs.get(name)
        if value is None:
            value = expected()
        elif not isinstance(value, expected):
            raise cfg.ConfigError(f"the {name} plane's {role} settings are a {expected.__name__}, not {value!r}")
        complete[name] = value
    return complete


def where_moved(role: Role, names: Iterable[str]) -> str | None:
    """For settings a Worker/CallerConfig does not have: the plane config that has them, if one does
    (the flat ``port``, ``http_port``, ``nats_url`` of earlier versions are ``tcp.port``, ``http.port``,
    ``nats.url``)."""
    hints = []
    for name in sorted(names):
        if name in REGISTRY:
            hints.append(f"{name} is a plane: pass planes={{{name!r}: ...}}, or from_env({name}=...)")
            continue
        homes = []
        for plane_name, plane in REGISTRY.items():
            kind = config_type(plane, role)
            short = name.removeprefix(f"{plane_name}_")
            if short in kind.__dataclass_fields__:  # type: ignore[attr-defined]
                homes.append(f"from_env({plane_name}={{{short!r}: ...}}) ({kind.__name__}.{short})")
        if homes:
            hints.append(f"{name} is a plane's setting now: {' or '.join(homes)}")
    return "; ".join(hints) or None
