"""The TCP plane's settings: the worker's listener and its limits, the caller's client.

Read from the variables Dynamo's TCP plane reads (``DYN_TCP_*``), plus the
reference's own denial-of-service limits (``RP_TCP_*``, Dynamo has none).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reference_impl import config as cfg
from reference_impl.wire.request_frame import DEFAULT_MAX_REQUEST_SIZE

MIB = 1024 * 1024

_S = cfg.setting


@dataclass
class TcpWorkerConfig(cfg.Settings):
    """Where the worker's TCP listener binds, and what one connection (and all together) may cost."""

    host: str = field(default="127.0.0.1", metadata=_S("DYN_TCP_RPC_HOST", check=cfg.not_empty))
    port: int = field(default=0, metadata=_S("DYN_TCP_RPC_PORT", cfg.parse_int, cfg.port))
    max_message_size: int = field(
        default=DEFAULT_MAX_REQUEST_SIZE, metadata=_S("DYN_TCP_MAX_MESSAGE_SIZE", cfg.parse_int, cfg.positive)
    )
    # --- denial-of-service limits (Dynamo has none of these; 0 turns a timeout off) ---
    # Bytes all TCP connections together may hold in incomplete frames: four maximal frames at once.
    buffer_budget: int = field(default=128 * MIB, metadata=_S("RP_TCP_BUFFER_BUDGET", cfg.parse_int, cfg.positive))
    # Bytes one TCP connection may hold in its incomplete frame: one maximal frame.
    connection_buffer_limit: int = field(
        default=DEFAULT_MAX_REQUEST_SIZE, metadata=_S("RP_TCP_CONNECTION_BUFFER_LIMIT", cfg.parse_int, cfg.positive)
    )
    # A frame's first byte to its last: 32 MiB at ~1 MiB/s, far slower than any link a worker is on.
    frame_read_timeout: float | None = field(
        default=30.0, metadata=_S("RP_TCP_FRAME_READ_TIMEOUT", cfg.parse_seconds_or_off, cfg.optional(cfg.positive))
    )
    # A request connection that sends nothing is closed (callers pool connections: keep it long).
    idle_timeout: float | None = field(
        default=300.0, metadata=_S("RP_TCP_IDLE_TIMEOUT", cfg.parse_seconds_or_off, cfg.optional(cfg.positive))
    )
    # A caller that leaves its ACKs unread this long (its requests unread meanwhile) is dropped.
    ack_write_timeout: float | None = field(
        default=30.0, metadata=_S("RP_TCP_ACK_WRITE_TIMEOUT", cfg.parse_seconds_or_off, cfg.optional(cfg.positive))
    )
    # Requests one TCP connection may have admitted at once; None (or 0): half of the worker's max_concurrency.
    max_inflight_per_connection: int | None = field(
        default=None,
        metadata=_S("RP_TCP_MAX_INFLIGHT_PER_CONNECTION", cfg.parse_size_or_unlimited, cfg.optional(cfg.positive)),
    )


@dataclass
class TcpCallerConfig(cfg.Settings):
    """How the caller's TCP client connects and how long it waits for an ACK."""

    request_timeout: float = field(default=5.0, metadata=_S("DYN_TCP_REQUEST_TIMEOUT", cfg.parse_seconds, cfg.positive))
    # Dynamo's one connect timeout: every plane's client reads it.
    connect_timeout: float = field(default=5.0, metadata=_S("DYN_TCP_CONNECT_TIMEOUT", cfg.parse_seconds, cfg.positive))
    max_message_size: int = field(
        default=DEFAULT_MAX_REQUEST_SIZE, metadata=_S("DYN_TCP_MAX_MESSAGE_SIZE", cfg.parse_int, cfg.positive)
    )
