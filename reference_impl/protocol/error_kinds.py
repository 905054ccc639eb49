"""How a handler's exception is classified in an in-stream error item, as Dynamo 1.6.1 does it.

Dynamo's Python worker maps the exception to a ``BackendError`` variant
(``error_type``), and each variant to a semantic ``class`` and ``reason``;
its caller reads the class back (it raises ``"<class>: <message>"``).  A
worker that always says ``Unknown`` makes every failure look internal to
the router (an invalid request is then retried or reported as a server
fault), so the reference classifies the same way.  The mapping was observed
on the real runtime (``fixtures/golden/error-items-1.6.1.json``): it follows
subclasses (a ``ValueError`` subclass is ``InvalidArgument``), and anything
unlisted is ``Unknown``.
"""

from __future__ import annotations

import asyncio
import enum
import re
from dataclasses import dataclass
from typing import Any


class BackendErrorType(enum.Enum):
    """``error_type`` of a handler failure: serialised as ``{"Backend": value}``."""

    INVALID_ARGUMENT = "InvalidArgument"
    CONNECTION_TIMEOUT = "ConnectionTimeout"
    CANNOT_CONNECT = "CannotConnect"
    DISCONNECTED = "Disconnected"
    CANCELLED = "Cancelled"
    UNKNOWN = "Unknown"

    @property
    def error_class(self) -> str:
        return _CLASSES[self]

    @property
    def reason(self) -> str:
        """``backend.<variant in snake_case>``, e.g. ``backend.invalid_argument``."""
        return "backend." + re.sub(r"(?<!^)(?=[A-Z])", "_", self.value).lower()


_CLASSES = {
    BackendErrorType.INVALID_ARGUMENT: "InvalidRequest",
    BackendErrorType.CONNECTION_TIMEOUT: "DeadlineExceeded",
    BackendErrorType.CANNOT_CONNECT: "Unavailable",
    BackendErrorType.DISCONNECTED: "Unavailable",
    BackendErrorType.CANCELLED: "Cancelled",
    BackendErrorType.UNKNOWN: "Internal",
}

# Most specific first: ConnectionRefusedError is a ConnectionError.
_BY_EXCEPTION: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], BackendErrorType], ...] = (
    ((ValueError, TypeError), BackendErrorType.INVALID_ARGUMENT),
    (TimeoutError, BackendErrorType.CONNECTION_TIMEOUT),
    (ConnectionRefusedError, BackendErrorType.CANNOT_CONNECT),
    (ConnectionError, BackendErrorType.DISCONNECTED),
    (asyncio.CancelledError, BackendErrorType.CANCELLED),
)


def classify(exc: BaseException) -> BackendErrorType:
    for types, error_type in _BY_EXCEPTION:
        if isinstance(exc, types):
            return error_type
    return BackendErrorType.UNKNOWN


def describe(exc: BaseException) -> str:
    """``"<ExceptionName>: <str(exc)>"``, the message Dynamo puts in the item."""
    return f"{type(exc).__name__}: {exc}"


def error_object(message: str, error_type: BackendErrorType = BackendErrorType.UNKNOWN) -> dict[str, Any]:
    """A ``DynamoError`` in Dynamo 1.6.1's field order."""
    return {
        "error_type": {"Backend": error_type.value},
        "class": error_type.error_class,
        "reason": error_type.reason,
        "message": message,
        "diagnostic": message,
    }


def error_object_for(exc: BaseException) -> dict[str, Any]:
    return error_object(describe(exc), classify(exc))


def prologue_typed_error(message: str) -> dict[str, Any]:
    """The ``typed_error`` Dynamo 1.6.1 puts in a prologue when the handler fails when called: unclassified."""
    return {
        "error_type": "Unknown",
        "class": "Internal",
        "reason": "runtime.unclassified",
        "message": message,
        "diagnostic": message,
    }


@dataclass(frozen=True, slots=True)
class ErrorDetails:
    """What a caller can tell about an error item: its message and, when the worker said, its class."""

    message: str
    error_class: str | None = None
    error_type: Any = None
    reason: str | None = None


def details_of(error: Any, message: str) -> ErrorDetails:
    """Read class, type and reason from an item's ``error`` object, tolerating any shape."""
    if not isinstance(error, dict):
        return ErrorDetails(message)
    error_class = error.get("class")
    if not isinstance(error_class, str):
        error_class = _class_of_legacy_type(error.get("error_type"))
    reason = error.get("reason")
    return ErrorDetails(message, error_class, error.get("error_type"), reason if isinstance(reason, str) else None)


def _class_of_legacy_type(error_type: Any) -> str | None:
    """Older senders give only ``error_type``: derive the class from a known backend variant."""
    if isinstance(error_type, dict) and len(error_type) == 1:
        value = error_type.get("Backend")
        for member in BackendErrorType:
            if member.value == value:
                return member.error_class
    return None
