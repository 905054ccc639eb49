"""Exception hierarchy shared by every layer.

Wire errors (bad bytes from a peer) are kept apart from request errors (a
call that did not produce a complete stream) so that callers can tell "the
peer broke the protocol" from "the request failed cleanly".
"""

from __future__ import annotations

import enum
from typing import Any, Protocol


class RequestPlaneError(Exception):
    """Base class for everything this package raises on purpose."""


# --- wire level: the peer sent bytes we cannot accept ----------------------


class ProtocolError(RequestPlaneError):
    """The framing or message protocol was violated: by the peer, or by us (:class:`LocalProtocolError`)."""


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


class LocalProtocolError(ProtocolError):
    """Our own code tried to do something the protocol does not allow (h11's name for it)."""


# --- request level: the call failed --------------------------------------------


class ErrorKind(enum.StrEnum):
    """Why a call failed, in one word (``CallError.kind``): what reports and the CLI print."""

    ERROR = "error"
    REJECTED = "rejected"
    UNAVAILABLE = "unavailable"
    OVERLOADED = "overloaded"
    TRANSPORT = "transport"
    ACK_TIMEOUT = "ack_timeout"
    CALLHOME_TIMEOUT = "callhome_timeout"
    PROLOGUE = "prologue"
    STREAM_INCOMPLETE = "stream_incomplete"
    STREAM_PROTOCOL = "stream_protocol"
    HANDLER_ERROR = "handler_error"


class CallError(RequestPlaneError):
    """A call did not produce a complete response stream."""

    kind: ErrorKind = ErrorKind.ERROR


class RequestRejected(CallError):
    """The worker answered the request with a non-empty ACK."""

    kind = ErrorKind.REJECTED

    def __init__(self, ack_text: str) -> None:
        super().__init__(ack_text)
        self.ack_text = ack_text


class WorkerUnavailable(RequestRejected):
    """ACK starting with ``Server unavailable:`` (unknown endpoint, shutting down)."""

    kind = ErrorKind.UNAVAILABLE


class WorkerOverloaded(RequestRejected):
    """ACK starting with ``Server overloaded:``."""

    kind = ErrorKind.OVERLOADED


class TransportError(CallError):
    """Could not deliver the request: connect failure, reset, no responders."""

    kind = ErrorKind.TRANSPORT


class AckTimeout(TransportError):
    kind = ErrorKind.ACK_TIMEOUT


class NatsPayloadTooLarge(TransportError, LocalProtocolError):
    """The message (headers + payload) exceeds the server's ``max_payload``; nothing was sent.

    A transport error, as Dynamo reports it (CannotConnect), and a local protocol error, as the TCP client's
    oversized frame is.
    """

    def __init__(self, subject: str, size: int, header_size: int, max_payload: int) -> None:
        super().__init__(
            f"request to {subject} is {size} bytes ({size - header_size} payload + {header_size} headers), "
            f"over the NATS server's max_payload of {max_payload} bytes"
        )
        self.size = size
        self.max_payload = max_payload


class CallHomeTimeout(CallError):
    """The worker acknowledged the request but never called home in time."""

    kind = ErrorKind.CALLHOME_TIMEOUT


class PrologueError(CallError):
    """The worker reported a failure in the response-stream prologue."""

    kind = ErrorKind.PROLOGUE

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

    kind = ErrorKind.STREAM_INCOMPLETE


class StreamProtocolViolation(CallError):
    """The worker sent something the response-stream protocol forbids."""

    kind = ErrorKind.STREAM_PROTOCOL


class ErrorClassification(Protocol):
    """How the worker classified an error item (``protocol.error_kinds.ErrorDetails`` is one)."""

    @property
    def error_class(self) -> str | None: ...

    @property
    def error_type(self) -> Any: ...

    @property
    def reason(self) -> str | None: ...


class HandlerError(CallError):
    """The worker's handler reported an error inside the stream.

    ``error_class`` is the worker's classification (``InvalidRequest``,
    ``Internal``, ``Unavailable``, ``DeadlineExceeded``, ``Cancelled``, ...;
    None when the item carried none), as Dynamo's caller reports it.
    """

    kind = ErrorKind.HANDLER_ERROR

    def __init__(self, message: str, details: ErrorClassification | None = None) -> None:
        super().__init__(message)
        self.error_class = details.error_class if details else None
        self.error_type = details.error_type if details else None
        self.reason = details.reason if details else None
