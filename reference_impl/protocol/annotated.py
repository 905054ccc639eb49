"""Dynamo's ``Annotated<T>`` item envelope, as its Python bindings use it.

This is an application convention carried inside the response items, not
part of the transport: a Python handler's yielded value ``v`` travels as
``{"data": v}`` and a handler failure as ``{"event": "error", "error":
{...}}``.  Speaking it lets reference workers serve Dynamo's Python callers
and lets the reference caller read Dynamo's Python workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reference_impl.protocol.error_kinds import BackendErrorType, ErrorDetails, details_of, error_object

ERROR_EVENT = "error"


def wrap(value: Any) -> dict[str, Any]:
    return {"data": value}


def error_item(message: str, error_type: BackendErrorType = BackendErrorType.UNKNOWN) -> dict[str, Any]:
    """An in-stream error, in the ``DynamoError`` shape Dynamo 1.6.1 emits (see ``error_kinds``)."""
    return {"event": ERROR_EVENT, "error": error_object(message, error_type)}


@dataclass(frozen=True, slots=True)
class Unwrapped:
    data: Any
    error: str | None
    details: ErrorDetails | None = field(default=None, compare=False)  # class, type, reason of an error


def unwrap(item: Any) -> Unwrapped:
    """Split an annotated item into its value or its error message.

    Accepts both the ``error`` object (Dynamo >= 1.2) and the older
    ``event: "error"`` plus ``comment`` list.
    """
    if not isinstance(item, dict):
        return Unwrapped(item, None)
    if item.get("event") == ERROR_EVENT or item.get("error") is not None:
        message = _error_message(item)
        return Unwrapped(None, message, details_of(item.get("error"), message))
    return Unwrapped(item.get("data"), None)


def _error_message(item: dict[Any, Any]) -> str:
    """The peer chooses what an error item holds: any shape gives a non-empty message, never an exception."""
    error = item.get("error")
    if isinstance(error, dict):
        message = _text(error.get("message") or error)
    elif error is not None:
        message = _text(error)
    else:
        comments = item.get("comment")
        message = "; ".join(map(_text, comments)) if isinstance(comments, list) else _text(comments or "")
    return message or "worker reported an error"


def _text(value: Any) -> str:
    try:
        return str(value)
    except RecursionError:  # msgpack nests deeper than repr() can follow
        return f"<{type(value).__name__} nested too deeply to show>"
