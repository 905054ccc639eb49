"""ACK texts on the request plane and how a caller reads them.

An empty ACK means "accepted and queued", not "succeeded".  Dynamo >= 1.6
callers fail fast on two prefixes; the reference also refuses any other
non-empty ACK, because no version of the protocol sends one on success.
"""

from __future__ import annotations

from reference_impl.errors import RequestRejected, WorkerOverloaded, WorkerUnavailable

UNAVAILABLE_PREFIX = "Server unavailable:"
OVERLOADED_PREFIX = "Server overloaded:"
AT_CAPACITY = f"{OVERLOADED_PREFIX} worker at capacity"
SHUTTING_DOWN = f"{UNAVAILABLE_PREFIX} worker shutting down"


def unknown_endpoint(path: str) -> str:
    return f"{UNAVAILABLE_PREFIX} unknown endpoint {path}"


def invalid_endpoint_path() -> str:
    return f"{UNAVAILABLE_PREFIX} invalid endpoint path (not UTF-8)"


def connection_at_capacity(limit: int) -> str:
    """One connection already has ``limit`` requests admitted: others still get their share of the worker."""
    return f"{OVERLOADED_PREFIX} {limit} requests already in flight on this connection"


def buffer_budget_exhausted(wanted: int, available: int) -> str:
    """The process-wide budget for incomplete request frames cannot hold this frame now."""
    return f"{OVERLOADED_PREFIX} request buffer budget exhausted ({wanted} bytes wanted, {available} free)"


def admitted_bytes_exhausted(wanted: int, available: int) -> str:
    """Refusal when the payloads admitted but not yet started would exceed the worker's bytes budget."""
    return f"{OVERLOADED_PREFIX} admitted request bytes budget exhausted ({wanted} bytes wanted, {available} free)"


def read_error(reason: str) -> str:
    """Fatal read error: sent just before the worker closes the connection."""
    return f"{UNAVAILABLE_PREFIX} read error: {reason}"


def check_ack(ack: bytes) -> None:
    """Raise the matching rejection for a non-empty ACK."""
    if not ack:
        return
    text = ack.decode("utf-8", errors="replace")
    if text.startswith(UNAVAILABLE_PREFIX):
        raise WorkerUnavailable(text)
    if text.startswith(OVERLOADED_PREFIX):
        raise WorkerOverloaded(text)
    raise RequestRejected(text)
