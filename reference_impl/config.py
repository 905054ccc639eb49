"""Settings read from the environment, validated once, with errors that name the variable.

Dynamo's worker and caller take their request-plane settings from ``DYN_*``
variables by default; the reference does the same.  Each config dataclass
tags its fields with :func:`setting` (the variable, how to parse it, what is
valid).  ``from_env(**overrides)`` reads the variables for every field not
overridden, and construction checks every field, so a bad port, plane,
codec or size fails where the object is made, as one :class:`ConfigError`
naming the field and its variable, instead of deep inside a server later.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self, TypeVar

from reference_impl.errors import RequestPlaneError

Parse = Callable[[str], Any]
Check = Callable[[Any], str | None]  # a problem, or None when the value is valid


class ConfigError(RequestPlaneError, ValueError):
    """An invalid setting; the message names the field and its environment variable."""


def setting(var: str | None, parse: Parse | None = None, check: Check | None = None) -> dict[str, Any]:
    """Field metadata: ``dataclasses.field(default=..., metadata=setting("DYN_X", parse_int, port))``."""
    return {"env": var, "parse": parse, "check": check}


# --- parsers (raise ValueError with a short reason) --------------------------------------


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("not an integer") from None


def parse_seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("not a number of seconds") from None


def parse_seconds_or_off(text: str) -> float | None:
    """``0`` or a negative number turns the timeout off (``None``)."""
    seconds = parse_seconds(text)
    return None if seconds <= 0 else seconds


def parse_size_or_unlimited(text: str) -> int | None:
    """``0`` means no limit (``None``), as in Dynamo."""
    size = parse_int(text)
    if size < 0:
        raise ValueError("a size cannot be negative (0 means no limit)")
    return None if size == 0 else size


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    """Comma-separated CIDRs (``10.0.0.0/8,127.0.0.1/32``); empty means no restriction (``None``)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        return None
    try:
        return tuple(ipaddress.ip_network(part, strict=False) for part in parts)
    except ValueError as exc:
        raise ValueError(f"expected comma-separated CIDRs such as 10.0.0.0/8 ({exc})") from None


def lower(text: str) -> str:
    return text.lower()


# --- checks ----------------------------------------------------------------------------------


def port(value: Any) -> str | None:
    return None if isinstance(value, int) and 0 <= value <= 65535 else "a port is an integer in 0..65535"


def positive(value: Any) -> str | None:
    return None if isinstance(value, int | float) and value > 0 else "must be greater than 0"


def non_negative(value: Any) -> str | None:
    return None if isinstance(value, int | float) and value >= 0 else "cannot be negative"


def optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def one_of(choices: Iterable[Any]) -> Check:
    allowed = tuple(choices)

    def check(value: Any) -> str | None:
        return None if value in allowed else f"expected one of {', '.join(map(str, allowed))}"

    return check


def not_empty(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "cannot be empty"


NATS_SCHEMES = ("nats", "tls", "ws", "wss")


def nats_servers(value: Any) -> str | None:
    """One ``nats://host:port`` URL (``tls``, ``ws``, ``wss`` too)."""
    if not isinstance(value, str) or not value.strip():
        return "cannot be empty"
    scheme, separator, rest = value.strip().partition("://")
    if not separator or scheme not in NATS_SCHEMES or not rest or "," in rest:
        return f"expected one URL such as nats://127.0.0.1:4222 ({'/'.join(NATS_SCHEMES)} schemes)"
    return None


def url_path(value: Any) -> str | None:
    return None if isinstance(value, str) and value.startswith("/") else "a URL path starts with '/'"


# --- reading and validating ------------------------------------------------------------------

Config = TypeVar("Config")


def _where(config_type: type, name: str, var: str | None) -> str:
    return f"{var} ({config_type.__name__}.{name})" if var else f"{config_type.__name__}.{name}"


def validate(config: Any) -> None:
    """Check every field that has a check; raise :class:`ConfigError` naming the first bad one."""
    for field in dataclasses.fields(config):
        check = field.metadata.get("check")
        if check is None:
            continue
        value = getattr(config, field.name)
        problem = check(value)
        if problem is not None:
            where = _where(type(config), field.name, field.metadata.get("env"))
            raise ConfigError(f"invalid {where}: {value!r}: {problem}")


def from_environment(
    config_type: type[Config], overrides: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Config:
    """Defaults, then the environment, then ``overrides``; validated by the constructor."""
    environ = os.environ if environ is None else environ
    names = {field.name for field in dataclasses.fields(config_type)}  # type: ignore[arg-type]
    unknown = set(overrides) - names
    if unknown:
        raise unknown_settings(config_type, unknown)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(config_type):  # type: ignore[arg-type]
        var = field.metadata.get("env")
        if field.name in overrides or var is None:
            continue
        raw = environ.get(var)
        if raw is None or raw.strip() == "":
            continue
        parse = field.metadata.get("parse") or str
        try:
            values[field.name] = parse(raw.strip())
        except ValueError as exc:
            raise ConfigError(f"invalid {_where(config_type, field.name, var)}: {raw!r}: {exc}") from None
    return config_type(**values, **overrides)


def unknown_settings(config_type: type, names: Iterable[str]) -> ConfigError:
    """The error for setting names ``config_type`` does not have (with the type's hint, if it gives one)."""
    listed = ", ".join(sorted(names))
    hint = getattr(config_type, "where_moved", None)
    where = hint(names) if hint is not None else None
    return ConfigError(f"{config_type.__name__} has no setting {listed}" + (f": {where}" if where else ""))


class Settings:
    """Base of every config dataclass: checked at construction, read from the environment by ``from_env``.

    An unknown keyword is a :class:`ConfigError` naming it (not a ``TypeError`` from the generated
    ``__init__``), so an old or misspelt setting name says what it is.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        if kwargs:
            unknown = set(kwargs) - {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
            if unknown:
                raise unknown_settings(cls, unknown)
        return super().__new__(cls)

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Defaults, overridden by the environment (Dynamo's variables), overridden by ``overrides``."""
        return from_environment(cls, overrides, environ)
