"""The HTTP plane's settings: the worker's listener and its limits, the caller's client.

Read from the variables Dynamo's HTTP plane reads (``DYN_HTTP_*``), plus the
reference's own limits (``RP_HTTP_*``; defaults and reasons in ``limits.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reference_impl import config as cfg
from reference_impl.transport.http import limits

_S = cfg.setting


@dataclass
class HttpWorkerConfig(cfg.Settings):
    """Where the worker's HTTP listener binds, its route root, and what one request may cost."""

    host: str = field(default="127.0.0.1", metadata=_S("DYN_HTTP_RPC_HOST", check=cfg.not_empty))
    port: int = field(default=0, metadata=_S("DYN_HTTP_RPC_PORT", cfg.parse_int, cfg.port))
    root: str = field(default="/v1/rpc", metadata=_S("DYN_HTTP_RPC_ROOT_PATH", check=cfg.url_path))
    # Dynamo's HTTP plane: axum's default body limit
    body_limit: int = field(default=2 * 1024 * 1024, metadata=_S("RP_HTTP_BODY_LIMIT", cfg.parse_int, cfg.positive))
    # HTTP plane denial-of-service limits (defaults and reasons: reference_impl/transport/http/limits.py)
    header_timeout: float | None = field(
        default=limits.DEFAULT_HEADER_TIMEOUT,
        metadata=_S("RP_HTTP_HEADER_TIMEOUT", cfg.parse_seconds_or_off, cfg.optional(cfg.positive)),
    )
    body_timeout: float | None = field(
        default=limits.DEFAULT_BODY_TIMEOUT,
        metadata=_S("RP_HTTP_BODY_TIMEOUT", cfg.parse_seconds_or_off, cfg.optional(cfg.positive)),
    )
    send_timeout: float | None = field(
        default=limits.DEFAULT_SEND_TIMEOUT,
        metadata=_S("RP_HTTP_SEND_TIMEOUT", cfg.parse_seconds_or_off, cfg.optional(cfg.positive)),
    )
    idle_timeout: float | None = field(
        default=limits.DEFAULT_IDLE_TIMEOUT,
        metadata=_S("RP_HTTP_IDLE_TIMEOUT", cfg.parse_seconds_or_off, cfg.optional(cfg.positive)),
    )
    body_budget: int | None = field(
        default=limits.DEFAULT_BODY_BUDGET,
        metadata=_S("RP_HTTP_BODY_BUDGET", cfg.parse_size_or_unlimited, cfg.optional(cfg.positive)),
    )
    h2_connection_body_budget: int = field(
        default=limits.DEFAULT_H2_CONNECTION_BODY_BUDGET,
        metadata=_S("RP_HTTP_H2_CONNECTION_BODY_BUDGET", cfg.parse_int, cfg.positive),
    )
    h2_reset_burst: int = field(
        default=limits.DEFAULT_H2_RESET_BURST, metadata=_S("RP_HTTP_H2_RESET_BURST", cfg.parse_int, cfg.positive)
    )
    h2_reset_rate: float = field(
        default=limits.DEFAULT_H2_RESET_RATE, metadata=_S("RP_HTTP_H2_RESET_RATE", cfg.parse_seconds, cfg.non_negative)
    )
    h2_control_burst: int = field(
        default=limits.DEFAULT_H2_CONTROL_BURST, metadata=_S("RP_HTTP_H2_CONTROL_BURST", cfg.parse_int, cfg.positive)
    )
    h2_control_rate: float = field(
        default=limits.DEFAULT_H2_CONTROL_RATE,
        metadata=_S("RP_HTTP_H2_CONTROL_RATE", cfg.parse_seconds, cfg.non_negative),
    )
    max_body_chunks: int = field(
        default=limits.DEFAULT_MAX_BODY_CHUNKS, metadata=_S("RP_HTTP_MAX_BODY_CHUNKS", cfg.parse_int, cfg.positive)
    )
    # Bytes of one h2 header block before END_HEADERS (CONTINUATION flood); why the default: limits.py.
    h2_max_header_block: int = field(
        default=limits.DEFAULT_H2_MAX_HEADER_BLOCK,
        metadata=_S("RP_HTTP_H2_MAX_HEADER_BLOCK", cfg.parse_int, cfg.positive),
    )
    # Answers one h2 connection may hold behind a zero window; past it GOAWAY ENHANCE_YOUR_CALM (limits.py).
    h2_max_parked_streams: int = field(
        default=limits.DEFAULT_H2_MAX_PARKED_STREAMS,
        metadata=_S("RP_HTTP_H2_MAX_PARKED_STREAMS", cfg.parse_int, cfg.positive),
    )
    # The lingering close after an error answer: how long, how long silent, how many bytes, how many at once.
    linger_time: float | None = field(
        default=limits.DEFAULT_LINGER_TIME,
        metadata=_S("RP_HTTP_LINGER_TIME", cfg.parse_seconds_or_off, cfg.optional(cfg.positive)),
    )
    linger_timeout: float = field(
        default=limits.DEFAULT_LINGER_TIMEOUT,
        metadata=_S("RP_HTTP_LINGER_TIMEOUT", cfg.parse_seconds, cfg.positive),
    )
    linger_bytes: int = field(
        default=limits.DEFAULT_LINGER_BYTES, metadata=_S("RP_HTTP_LINGER_BYTES", cfg.parse_int, cfg.positive)
    )
    max_lingering: int = field(
        default=limits.DEFAULT_MAX_LINGERING, metadata=_S("RP_HTTP_MAX_LINGERING", cfg.parse_int, cfg.positive)
    )
    # h2 frames of one connection handed to hyper-h2 at a time, the loop free between slices (limits.py).
    h2_feed_frames: int = field(
        default=limits.DEFAULT_H2_FEED_FRAMES, metadata=_S("RP_HTTP_H2_FEED_FRAMES", cfg.parse_int, cfg.positive)
    )

    @property
    def guards(self) -> limits.HttpGuards:
        """The limit settings as the server's ``HttpGuards``."""
        return limits.HttpGuards(
            header_timeout=self.header_timeout,
            body_timeout=self.body_timeout,
            send_timeout=self.send_timeout,
            idle_timeout=self.idle_timeout,
            body_budget=self.body_budget,
            h2_connection_body_budget=self.h2_connection_body_budget,
            h2_reset_burst=self.h2_reset_burst,
            h2_reset_rate=self.h2_reset_rate,
            h2_control_burst=self.h2_control_burst,
            h2_control_rate=self.h2_control_rate,
            max_body_chunks=self.max_body_chunks,
            h2_max_header_block=self.h2_max_header_block,
            h2_max_parked_streams=self.h2_max_parked_streams,
            linger_time=self.linger_time,
            linger_timeout=self.linger_timeout,
            linger_bytes=self.linger_bytes,
            max_lingering=self.max_lingering,
            h2_feed_frames=self.h2_feed_frames,
        )


@dataclass
class HttpCallerConfig(cfg.Settings):
    """Which HTTP the caller's client speaks, and how long it waits."""

    # "h2" (prior knowledge, multiplexed) or "http/1.1" (what Dynamo's caller speaks)
    version: str = field(default="h2", metadata=_S("RP_HTTP_VERSION", cfg.lower, cfg.one_of(("h2", "http/1.1"))))
    # DYN_HTTP_REQUEST_TIMEOUT: the whole POST, up to its answer
    request_timeout: float = field(
        default=5.0, metadata=_S("DYN_HTTP_REQUEST_TIMEOUT", cfg.parse_seconds, cfg.positive)
    )
    # Dynamo's one connect timeout: every plane's client reads it.
    connect_timeout: float = field(default=5.0, metadata=_S("DYN_TCP_CONNECT_TIMEOUT", cfg.parse_seconds, cfg.positive))
