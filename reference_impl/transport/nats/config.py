"""The NATS plane's settings: the broker both roles use, and the caller's waits."""

from __future__ import annotations

from dataclasses import dataclass, field

from reference_impl import config as cfg

_S = cfg.setting

DEFAULT_URL = "nats://127.0.0.1:4222"


@dataclass
class NatsWorkerConfig(cfg.Settings):
    """The broker the worker subscribes through."""

    url: str = field(default=DEFAULT_URL, metadata=_S("NATS_SERVER", check=cfg.nats_servers))


@dataclass
class NatsCallerConfig(cfg.Settings):
    """The broker the caller publishes through, and how long it waits."""

    url: str = field(default=DEFAULT_URL, metadata=_S("NATS_SERVER", check=cfg.nats_servers))
    request_timeout: float = field(  # async-nats' default; Dynamo's variable
        default=10.0, metadata=_S("DYN_NATS_REQUEST_TIMEOUT_SECS", cfg.parse_seconds, cfg.positive)
    )
    # Dynamo's one connect timeout: every plane's client reads it.
    connect_timeout: float = field(default=5.0, metadata=_S("DYN_TCP_CONNECT_TIMEOUT", cfg.parse_seconds, cfg.positive))
