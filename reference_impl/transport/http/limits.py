"""The HTTP plane's denial-of-service limits, with their defaults and why each exists.

Every limit here bounds what a peer can make the worker hold or spend without
completing a request: memory for bodies not yet complete, time a connection
may take to send its headers or body or to take its answers, and the rate of
h2 frames that cost work but carry no request.  ``HttpWorkerConfig`` exposes each
as an ``RP_HTTP_*`` setting (Dynamo's HTTP request plane has no server-side
variables for these: its ``DYN_HTTP2_*`` ones configure its client).
``None`` turns a timeout off.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024

DEFAULT_HEADER_TIMEOUT = 5.0  # first byte (or accept) -> complete request head; nginx/hyper use 30-60 s on the web
DEFAULT_BODY_TIMEOUT = 10.0  # longest silence while a request body is incomplete (nginx client_body_timeout)
DEFAULT_SEND_TIMEOUT = 5.0  # longest an answer may wait for a peer that does not read (h2 zero window, h1 buffer)
DEFAULT_IDLE_TIMEOUT = 120.0  # nothing in flight; above reqwest's 90 s pool idle: callers never race it
DEFAULT_BODY_BUDGET = 64 * MIB  # request-body bytes buffered by the whole server at once
DEFAULT_H2_CONNECTION_BODY_BUDGET = 4 * MIB  # per h2 connection (two full bodies); past it windows reopen as bodies go
DEFAULT_H2_RESET_BURST = 100  # nghttp2 allows 1000 (C); h2 spends ~200 µs per stream, so 20 ms of loop
DEFAULT_H2_RESET_RATE = 33.0  # nghttp2's stream_reset_rate, per second
DEFAULT_H2_CONTROL_BURST = 1000  # PING/SETTINGS/PRIORITY/empty DATA frames at once (nghttp2 max_outbound_ack: 1000)
DEFAULT_H2_CONTROL_RATE = 100.0  # per second after the burst
DEFAULT_MAX_BODY_CHUNKS = 1024  # chunks in one HTTP/1.1 chunked body (2 MiB in 2 KiB chunks); h11 costs ~30 µs each
# --- added for issue 13 (dos2) ---
# Bytes of one h2 header block (HEADERS + CONTINUATION frames) before it ends: the 64 KiB header list the server
# advertises (SETTINGS_MAX_HEADER_LIST_SIZE), as HPACK is never much larger than the list it encodes.  hyper-h2
# alone allows 64 CONTINUATION frames, 1 MiB at the default frame size, per connection (CVE-2024-27316 class).
DEFAULT_H2_MAX_HEADER_BLOCK = 64 * 1024
# --- added for issue 13 (zero window, lingering close) ---
# Answers one h2 connection may hold parked behind a zero flow-control window.  Each parked answer is a stream
# the server must give up at its send deadline (a RST_STREAM: ~150 us in hyper-h2), so a peer that stops reading on
# MAX_CONCURRENT_STREAMS (1000) streams of each of many connections makes the server pay for all of them at once.
# A caller that reads takes its answers (the ACKs are bodiless; error answers are ~100 bytes of a 64 KiB window):
# past this many, the peer is holding answers, not reading them, and the connection is ended as a whole (GOAWAY
# ENHANCE_YOUR_CALM, one frame), as nghttp2 (max_outbound_ack) and Go (maxQueuedControlFrames) end a connection
# whose peer leaves the frames queued for it unread, instead of queueing more.
DEFAULT_H2_MAX_PARKED_STREAMS = 100
# A close after an error answer (GOAWAY, 400, 408, 413) lingers: the write side is shut after the answer is
# flushed, and what the peer still sends is read and dropped, so that the close does not turn into a reset that
# makes the peer's kernel discard the answer before it is read.  Bounded like nginx's lingering_time (30 s) and
# lingering_timeout (5 s), shorter here (the answers are tiny), plus bytes and a server-wide count:
DEFAULT_LINGER_TIME = 2.0  # longest a closing connection lingers
DEFAULT_LINGER_TIMEOUT = 0.5  # the peer silent this long while lingering: it has stopped sending, close now
DEFAULT_LINGER_BYTES = 1 * MIB  # dropped while lingering; past it the connection is reset (a flood still coming)
DEFAULT_MAX_LINGERING = 512  # connections lingering at once, server-wide; beyond, a close is immediate
# --- added for issue 13 (zero window: event-loop fairness) ---
# h2 frames of one connection handed to hyper-h2 at a time.  h2 does all the work of what it is handed in one call,
# and a request's HEADERS answered at once cost ~0.5-2 ms (HPACK both ways, stream state, the answer's frames): one
# 3 KB read of 200 of them held the event loop for 100-500 ms, whatever the feed pass's time budget, which is
# checked between slices.  16 frames bound a slice to ~10-30 ms on a busy 2-core machine; a connection's DATA still
# goes over 4 KiB at a time (a slice is also at most that many bytes), so bodies cost no extra slices.
DEFAULT_H2_FEED_FRAMES = 16


@dataclass(frozen=True, slots=True)
class HttpGuards:
    """The limits every HTTP connection of a server enforces (see the module docstring)."""

    header_timeout: float | None = DEFAULT_HEADER_TIMEOUT
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT
    send_timeout: float | None = DEFAULT_SEND_TIMEOUT
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    body_budget: int | None = DEFAULT_BODY_BUDGET
    h2_connection_body_budget: int = DEFAULT_H2_CONNECTION_BODY_BUDGET
    h2_reset_burst: int = DEFAULT_H2_RESET_BURST
    h2_reset_rate: float = DEFAULT_H2_RESET_RATE
    h2_control_burst: int = DEFAULT_H2_CONTROL_BURST
    h2_control_rate: float = DEFAULT_H2_CONTROL_RATE
    max_body_chunks: int = DEFAULT_MAX_BODY_CHUNKS
    h2_max_header_block: int = DEFAULT_H2_MAX_HEADER_BLOCK
    h2_max_parked_streams: int = DEFAULT_H2_MAX_PARKED_STREAMS
    linger_time: float | None = DEFAULT_LINGER_TIME
    linger_timeout: float = DEFAULT_LINGER_TIMEOUT
    linger_bytes: int = DEFAULT_LINGER_BYTES
    max_lingering: int = DEFAULT_MAX_LINGERING
    h2_feed_frames: int = DEFAULT_H2_FEED_FRAMES

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout", "send_timeout", "idle_timeout", "body_budget", "linger_time"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"HttpGuards.{name} must be > 0 (or None for no limit), got {value!r}")
        for name in (
            "h2_connection_body_budget",
            "h2_reset_burst",
            "h2_control_burst",
            "max_body_chunks",
            "h2_max_header_block",
            "h2_max_parked_streams",
            "linger_timeout",
            "linger_bytes",
            "max_lingering",
            "h2_feed_frames",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"HttpGuards.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("h2_reset_rate", "h2_control_rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"HttpGuards.{name} cannot be negative, got {getattr(self, name)!r}")

    @property
    def sweep_interval(self) -> float:
        """How often the server checks deadlines: a tenth of the shortest timeout, within 0.05..1 s."""
        timeouts = [t for t in (self.header_timeout, self.body_timeout, self.send_timeout, self.idle_timeout) if t]
        return min(1.0, max(0.05, min(timeouts, default=10.0) / 10))


DEFAULT_GUARDS = HttpGuards()
