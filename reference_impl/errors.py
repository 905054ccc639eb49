"""Exception hierarchy shared by every layer.

Wire errors (bad bytes from a peer) are kept apart from request errors (a
call that did not produce a complete stream) so that callers can tell "the
peer broke the protocol" from "the request failed cleanly".
"""

from __future__ import annotations


class RequestPlaneError(Exception):
    """Base class for everything this package raises on purpose."""


# --- wire level: the peer sent bytes we cannot accept ----------------------


class ProtocolError(RequestPlaneError):
    """The peer violated the framing or message protocol."""


class FrameTooLarge(ProtocolError):
    """A frame declared a size above the configured limit.

    Raised from the length prefix alone, before the body is buffered.
    """

    def __init__(self, declared: int, limit: int) -> None:
        super().__init__(f"message too large: {declared} bytes (max: {limit} bytes)")
        self.declared = declared
        self.limit = limit


class ChecksumMismatch(ProtocolError):
    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"checksum mismatch: frame says {expected:#018x}, content hashes to {actual:#018x}")
        self.expected = expected
        self.actual = actual


class TruncatedFrame(ProtocolError):
    """The byte stream ended in the middle of a frame."""

    def __init__(self, buffered: int, needed: int | None) -> None:
        wanted = "an unknown number of" if needed is None else str(needed)
        super().__init__(f"stream ended inside a frame: {buffered} bytes buffered, {wanted} bytes needed")
        self.buffered = buffered
        self.needed = needed


class MalformedMessage(ProtocolError):
    """A frame was well formed but its content was not the expected message."""


class LocalProtocolError(RequestPlaneError):
    """Our own code tried to do something the protocol does not allow."""


# --- request level: the call failed --------------------------------------------


class CallError(RequestPlaneError):
    """A call did not produce a complete response stream."""

    kind = "error"


class RequestRejected(CallError):
    """The worker answered the request with a non-empty ACK."""

    kind = "rejected"

    def __init__(self, ack_text: str) -> None:
        super().__init__(ack_text)
        self.ack_text = ack_text


class WorkerUnavailable(RequestRejected):
    """ACK starting with ``Server unavailable:`` (unknown endpoint, shutting down)."""

    kind = "unavailable"


class WorkerOverloaded(RequestRejected):
    """ACK starting with ``Server overloaded:``."""

    kind = "overloaded"


class TransportError(CallError):
    """Could not deliver the request: connect failure, reset, no responders."""

    kind = "transport"


class AckTimeout(TransportError):
    kind = "ack_timeout"


class CallHomeTimeout(CallError):
    """The worker acknowledged the request but never called home in time."""

    kind = "callhome_timeout"


class PrologueError(CallError):
    """The worker reported a failure in the response-stream prologue."""

    kind = "prologue"

    def __init__(self, message: str, typed_error: object | None = None) -> None:
        super().__init__(message)
        self.typed_error = typed_error

    @property
    def error_class(self) -> str | None:
        """The ``class`` of the worker's ``typed_error`` (e.g. ``Internal``), when it sent one."""
        value = self.typed_error.get("class") if isinstance(self.typed_error, dict) else None
        return value if isinstance(value, str) else None


class StreamIncomplete(CallError):
    """The response stream ended without ``complete_final``."""

    kind = "stream_incomplete"


class StreamProtocolViolation(CallError):
    """The worker sent something the response-stream protocol forbids."""

    kind = "stream_protocol"
