"""JSON control messages of the request envelope and the response stream.

Field names and order follow Dynamo's serde structs, so encoded bytes match
the real runtime's.  Parsing is strict about types (a clear
:class:`MalformedMessage`) and lenient about unknown fields, as serde is.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from reference_impl.errors import MalformedMessage
from reference_impl.protocol.payload_codec import PayloadCodec, dumps_compact

TCP_SERVER_TRANSPORT = "tcp_server"
RESPONSE_STREAM = "response"
REQUEST_STREAM = "request"

# Header-only control frames on the call-home connection (JSON strings).
STOP = b'"stop"'
KILL = b'"kill"'
SENTINEL = b'"sentinel"'
CONTROL_WORDS = {STOP: "stop", KILL: "kill", SENTINEL: "sentinel"}


class Cancel(enum.StrEnum):
    """A caller's cancellation word, ordered by force: ``STOP < KILL``.

    A kill overrides a stop, never the reverse, and a word is said once:
    :meth:`overrides` is that rule, for every end that sends or applies one.
    Members are the words themselves (``Cancel.STOP == "stop"``).
    """

    STOP = "stop"
    KILL = "kill"

    @property
    def frame_header(self) -> bytes:
        """The header-only control frame's header (a JSON string)."""
        return STOP if self is Cancel.STOP else KILL

    def overrides(self, current: str | None) -> bool:
        """True when this word says more than ``current`` (None: nothing said yet)."""
        return current is None or self > current

    def __lt__(self, other: str) -> bool:
        return _FORCE[self] < _FORCE[Cancel(other)]

    def __le__(self, other: str) -> bool:
        return _FORCE[self] <= _FORCE[Cancel(other)]

    def __gt__(self, other: str) -> bool:
        return _FORCE[self] > _FORCE[Cancel(other)]

    def __ge__(self, other: str) -> bool:
        return _FORCE[self] >= _FORCE[Cancel(other)]


_FORCE = {Cancel.STOP: 1, Cancel.KILL: 2}

# Dynamo >= 1.6 refuses control messages above this size.
CONTROL_MESSAGE_MAX_BYTES = 128 * 1024


def load_json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedMessage(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise MalformedMessage(f"{what} must be a JSON object, got {type(value).__name__}")
    if b"\\u" in raw:
        _reject_lone_surrogates(value, what)
    return value


def _reject_lone_surrogates(value: Any, what: str) -> None:
    """A ``\\ud800`` escape without its pair is not a string serde_json accepts, nor one Python can encode again."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                raise MalformedMessage(
                    f"{what} holds a lone UTF-16 surrogate escape, which is not valid Unicode"
                ) from None


def require_str(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise MalformedMessage(f"{what}: field {key!r} must be a string, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class TcpStreamConnectionInfo:
    """Where and under which subject the worker calls home."""

    address: str
    subject: str
    context: str
    stream_type: str = RESPONSE_STREAM

    def to_json(self) -> str:
        return dumps_compact(
            {"address": self.address, "subject": self.subject, "context": self.context, "stream_type": self.stream_type}
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> TcpStreamConnectionInfo:
        obj = load_json_object(text.encode(), "connection_info.info")
        what = "connection_info.info"
        return cls(
            address=require_str(obj, "address", what),
            subject=require_str(obj, "subject", what),
            context=require_str(obj, "context", what),
            stream_type=require_str(obj, "stream_type", what),
        )


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    transport: str
    info: str

    @classmethod
    def for_tcp(cls, info: TcpStreamConnectionInfo) -> ConnectionInfo:
        return cls(TCP_SERVER_TRANSPORT, info.to_json())

    def as_dict(self) -> dict[str, str]:
        return {"transport": self.transport, "info": self.info}

    @classmethod
    def from_obj(cls, obj: Any, what: str = "connection_info") -> ConnectionInfo:
        if not isinstance(obj, dict):
            raise MalformedMessage(f"{what} must be an object")
        return cls(require_str(obj, "transport", what), require_str(obj, "info", what))

    def tcp(self) -> TcpStreamConnectionInfo:
        """The TCP call-home details; any other transport is refused."""
        if self.transport != TCP_SERVER_TRANSPORT:
            raise MalformedMessage(
                f"unsupported response transport {self.transport!r}; only {TCP_SERVER_TRANSPORT!r} is implemented"
            )
        return TcpStreamConnectionInfo.from_json(self.info)


@dataclass(frozen=True, slots=True)
class RequestControlMessage:
    """Header of the request envelope; always JSON whatever the payload codec."""

    id: str
    connection_info: ConnectionInfo
    request_type: str = "single_in"
    response_type: str = "many_out"
    payload_codec: str | None = "json"
    metadata: dict[str, str] = field(default_factory=dict)
    frontend_send_ts_ns: int | None = None
    request_stream_connection_info: ConnectionInfo | None = None

    @property
    def codec(self) -> PayloadCodec:
        return PayloadCodec.parse(self.payload_codec)

    def to_json_bytes(self) -> bytes:
        obj: dict[str, Any] = {"id": self.id, "request_type": self.request_type, "response_type": self.response_type}
        if self.payload_codec is not None:
            obj["payload_codec"] = self.payload_codec
        obj["connection_info"] = self.connection_info.as_dict()
        if self.metadata:
            obj["metadata"] = dict(sorted(self.metadata.items()))
        if self.frontend_send_ts_ns is not None:
            obj["frontend_send_ts_ns"] = self.frontend_send_ts_ns
        if self.request_stream_connection_info is not None:
            obj["request_stream_connection_info"] = self.request_stream_connection_info.as_dict()
        return dumps_compact(obj)

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> RequestControlMessage:
        what = "request control message"
        obj = load_json_object(raw, what)
        request_type = require_str(obj, "request_type", what)
        response_type = require_str(obj, "response_type", what)
        if request_type not in ("single_in", "many_in"):
            raise MalformedMessage(f"{what}: unknown request_type {request_type!r}")
        if response_type not in ("single_out", "many_out"):
            raise MalformedMessage(f"{what}: unknown response_type {response_type!r}")
        codec = obj.get("payload_codec")
        if codec is not None and not isinstance(codec, str):
            raise MalformedMessage(f"{what}: payload_codec must be a string")
        PayloadCodec.parse(codec)
        metadata = obj.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise MalformedMessage(f"{what}: metadata must be a map of strings")
        ts = obj.get("frontend_send_ts_ns")
        if ts is not None and not (isinstance(ts, int) and ts >= 0):
            raise MalformedMessage(f"{what}: frontend_send_ts_ns must be a non-negative integer")
        request_stream = obj.get("request_stream_connection_info")
        return cls(
            id=require_str(obj, "id", what),
            request_type=request_type,
            response_type=response_type,
            payload_codec=codec,
            connection_info=ConnectionInfo.from_obj(obj.get("connection_info")),
            metadata=metadata,
            frontend_send_ts_ns=ts,
            request_stream_connection_info=(
                None
                if request_stream is None
                else ConnectionInfo.from_obj(request_stream, "request_stream_connection_info")
            ),
        )


@dataclass(frozen=True, slots=True)
class CallHomeHandshake:
    subject: str
    stream_type: str = RESPONSE_STREAM

    def to_json_bytes(self) -> bytes:
        return dumps_compact({"subject": self.subject, "stream_type": self.stream_type})

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> CallHomeHandshake:
        what = "call-home handshake"
        obj = load_json_object(raw, what)
        stream_type = require_str(obj, "stream_type", what)
        if stream_type not in (RESPONSE_STREAM, REQUEST_STREAM):
            raise MalformedMessage(f"{what}: unknown stream_type {stream_type!r}")
        return cls(require_str(obj, "subject", what), stream_type)


@dataclass(frozen=True, slots=True)
class ResponseStreamPrologue:
    error: str | None = None
    typed_error: Any = None

    def to_json_bytes(self) -> bytes:
        obj: dict[str, Any] = {"error": self.error}
        if self.typed_error is not None:
            obj["typed_error"] = self.typed_error
        return dumps_compact(obj)

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> ResponseStreamPrologue:
        obj = load_json_object(raw, "response stream prologue")
        error = obj.get("error")
        if error is not None and not isinstance(error, str):
            raise MalformedMessage(f"response stream prologue: error must be a string or null, got {error!r}")
        return cls(error, obj.get("typed_error"))


# --- response items: NetworkStreamWrapper<U> ----------------------------------

_FINAL_FRAMES = {codec: codec.encode({"complete_final": True}) for codec in PayloadCodec}


def encode_item(codec: PayloadCodec, data: Any) -> bytes:
    return codec.encode({"data": data, "complete_final": False})


def encode_final(codec: PayloadCodec) -> bytes:
    return _FINAL_FRAMES[codec]


@dataclass(frozen=True, slots=True)
class StreamWrapper:
    has_data: bool
    data: Any
    complete_final: bool


def decode_wrapper(codec: PayloadCodec, raw: bytes) -> StreamWrapper:
    value = codec.decode(raw)
    if not isinstance(value, dict):
        raise MalformedMessage(f"response item must be a map, got {type(value).__name__}")
    final = value.get("complete_final", False)
    if not isinstance(final, bool):
        raise MalformedMessage(f"complete_final must be a boolean, got {final!r}")
    has_data = "data" in value and value["data"] is not None
    return StreamWrapper(has_data, value.get("data"), final)


def control_word(header: bytes) -> str | None:
    """``stop`` / ``kill`` / ``sentinel`` for a control frame header, else None."""
    word = CONTROL_WORDS.get(header)
    if word is not None:
        return word
    try:
        value = json.loads(header)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value if value in ("stop", "kill", "sentinel") else None
