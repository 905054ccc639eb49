"""Sans-IO codec for the TCP request plane.

Request frame, caller to worker::

    u16 path_len | path | u16 headers_len | headers JSON | u32 payload_len | payload

ACK frame, worker to caller, one per request in request order::

    u32 len | text      (empty text = accepted)

All integers big-endian.  The size limit covers the whole request frame and
is checked as soon as each length field arrives, never after buffering the
payload.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from reference_impl.errors import FrameTooLarge, LocalProtocolError, TruncatedFrame

U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
U16_MAX = 0xFFFF
U32_MAX = 0xFFFFFFFF
FIXED_OVERHEAD = 2 + 2 + 4
DEFAULT_MAX_MESSAGE_SIZE = 32 * 1024 * 1024  # DYN_TCP_MAX_MESSAGE_SIZE default


def encode_headers(headers: Mapping[str, str] | None) -> bytes:
    if not headers:
        return b""
    return json.dumps(dict(headers), separators=(",", ":"), ensure_ascii=False).encode()


def parse_headers(raw: bytes) -> dict[str, str] | None:
    """Headers as a ``{str: str}`` map, or ``None`` when they are not one."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return None
    return value


@dataclass(frozen=True, slots=True)
class RequestFrame:
    path: bytes
    headers_raw: bytes
    payload: bytes

    @property
    def wire_size(self) -> int:
        return FIXED_OVERHEAD + len(self.path) + len(self.headers_raw) + len(self.payload)

    def headers(self) -> dict[str, str]:
        """Lenient view, as Dynamo's worker reads them: not a string map means no headers."""
        return parse_headers(self.headers_raw) or {}


def encode_request(path: str | bytes, headers: Mapping[str, str] | bytes | None, payload: bytes) -> bytes:
    path_bytes = path.encode() if isinstance(path, str) else path
    headers_bytes = headers if isinstance(headers, (bytes, bytearray)) else encode_headers(headers)
    if len(path_bytes) > U16_MAX:
        raise LocalProtocolError(f"endpoint path too long: {len(path_bytes)} bytes (max {U16_MAX})")
    if len(headers_bytes) > U16_MAX:
        raise LocalProtocolError(f"headers too large: {len(headers_bytes)} bytes (max {U16_MAX})")
    if len(payload) > U32_MAX:
        raise LocalProtocolError(f"payload too large: {len(payload)} bytes (max {U32_MAX})")
    return b"".join(
        (
            U16.pack(len(path_bytes)),
            path_bytes,
            U16.pack(len(headers_bytes)),
            headers_bytes,
            U32.pack(len(payload)),
            payload,
        )
    )


class RequestFrameDecoder:
    """Incremental decoder for request frames, poisoned after the first wire error."""

    __slots__ = ("_buf", "_error", "_max", "_pos")

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._max = max_message_size
        self._error: Exception | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    @property
    def max_message_size(self) -> int:
        return self._max

    def pending_frame_size(self) -> int:
        """Bytes the frame being received will occupy: its declared size once known, else what is buffered."""
        if not self.buffered:
            return 0
        size, exact = self._declared_size()
        return size if exact else self.buffered

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise self._error
        self._buf += data

    def _fail(self, error: Exception) -> Exception:
        self._error = error
        return error

    def _declared_size(self) -> tuple[int, bool]:
        """Lower bound of the pending frame's size and whether it is exact."""
        buf, pos, avail = self._buf, self._pos, len(self._buf) - self._pos
        if avail < 2:
            return FIXED_OVERHEAD, False
        path_len = U16.unpack_from(buf, pos)[0]
        if avail < 4 + path_len:
            return FIXED_OVERHEAD + path_len, False
        headers_len = U16.unpack_from(buf, pos + 2 + path_len)[0]
        if avail < 8 + path_len + headers_len:
            return FIXED_OVERHEAD + path_len + headers_len, False
        payload_len = U32.unpack_from(buf, pos + 4 + path_len + headers_len)[0]
        return FIXED_OVERHEAD + path_len + headers_len + payload_len, True

    def next_frame(self) -> RequestFrame | None:
        if self._error is not None:
            raise self._error
        size, exact = self._declared_size()
        if size > self._max:
            raise self._fail(FrameTooLarge(size, self._max))
        if not exact or self.buffered < size:
            return None
        buf, pos = self._buf, self._pos
        path_len = U16.unpack_from(buf, pos)[0]
        headers_at = pos + 4 + path_len
        headers_len = U16.unpack_from(buf, pos + 2 + path_len)[0]
        payload_at = headers_at + headers_len + 4
        end = pos + size
        frame = RequestFrame(
            path=bytes(buf[pos + 2 : pos + 2 + path_len]),
            headers_raw=bytes(buf[headers_at : headers_at + headers_len]),
            payload=bytes(buf[payload_at:end]),
        )
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end > 65536 and end * 2 > len(buf):
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        return frame

    def __iter__(self) -> Iterator[RequestFrame]:
        while (frame := self.next_frame()) is not None:
            yield frame

    def feed_eof(self) -> None:
        if self._error is not None:
            raise self._error
        if self.buffered:
            size, exact = self._declared_size()
            raise self._fail(TruncatedFrame(self.buffered, size if exact else None))


def encode_ack(text: str | bytes = b"") -> bytes:
    body = text.encode() if isinstance(text, str) else text
    return U32.pack(len(body)) + body


class AckDecoder:
    """Incremental decoder for ACK frames (``u32 len | text``)."""

    __slots__ = ("_buf", "_error", "_max")

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_message_size
        self._error: Exception | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise self._error
        self._buf += data

    def next_ack(self) -> bytes | None:
        if self._error is not None:
            raise self._error
        buf = self._buf
        if len(buf) < 4:
            return None
        size = 4 + U32.unpack_from(buf, 0)[0]
        if size > self._max:
            self._error = FrameTooLarge(size, self._max)
            raise self._error
        if len(buf) < size:
            return None
        ack = bytes(buf[4:size])
        del buf[:size]
        return ack

    def __iter__(self) -> Iterator[bytes]:
        while (ack := self.next_ack()) is not None:
            yield ack

    def feed_eof(self) -> None:
        if self._error is not None:
            raise self._error
        if self._buf:
            needed = 4 + U32.unpack_from(self._buf, 0)[0] if len(self._buf) >= 4 else None
            self._error = TruncatedFrame(len(self._buf), needed)
            raise self._error
