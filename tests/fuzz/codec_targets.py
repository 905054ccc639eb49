"""Fuzz targets for the wire codecs: two-part frames, TCP request frames and ACKs.

Each target decodes arbitrary bytes in the chunking the input picks and checks them
against a one-shot oracle written independently from the spec: same frames, same
error type, whatever the chunking.  Only the documented wire errors may escape the
decoder, each with a message, and the decoder never holds more than one frame's worth
of bytes below the size limit once drained.
"""

from __future__ import annotations

import struct

from reference_impl.errors import ChecksumMismatch, FrameTooLarge, ProtocolError, RequestRejected, TruncatedFrame
from reference_impl.protocol.ack import check_ack
from reference_impl.wire import request_frame, two_part
from reference_impl.wire.checksum import xxh3_64
from reference_impl.wire.request_frame import AckDecoder, RequestFrame, RequestFrameDecoder, parse_headers
from reference_impl.wire.two_part import PRELUDE_SIZE, TwoPartDecoder, TwoPartMessage
from tests.fuzz.checks import require, require_clear_error, require_poisoned
from tests.fuzz.fuzz_input import FuzzInput

WIRE_ERRORS = (FrameTooLarge, ChecksumMismatch, TruncatedFrame)


def error_type(error: ProtocolError | None) -> type[ProtocolError] | None:
    return None if error is None else type(error)


# --- two-part frames -------------------------------------------------------------------------------

TWO_PART_LIMITS = (PRELUDE_SIZE, 40, 256, 4096, two_part.DEFAULT_MAX_FRAME_SIZE)
_U64X3 = struct.Struct(">QQQ")


def two_part_oracle(stream: bytes, limit: int, verify: bool) -> tuple[list[TwoPartMessage], type[ProtocolError] | None]:
    """Frames and first error of a complete byte stream, read front to back."""
    messages: list[TwoPartMessage] = []
    position = 0
    while len(stream) - position >= 24:
        header_len, body_len, checksum = _U64X3.unpack_from(stream, position)
        if 24 + header_len + body_len > limit:
            return messages, FrameTooLarge
        if len(stream) - position < 24 + header_len + body_len:
            return messages, TruncatedFrame
        header = stream[position + 24 : position + 24 + header_len]
        body = stream[position + 24 + header_len : position + 24 + header_len + body_len]
        if verify and checksum != 0 and checksum != xxh3_64(header, body):
            return messages, ChecksumMismatch
        messages.append(TwoPartMessage(header, body))
        position += 24 + header_len + body_len
    return messages, (TruncatedFrame if position < len(stream) else None)


def fuzz_two_part(raw: bytes) -> None:
    fuzz = FuzzInput.parse(raw)
    limit = fuzz.choose(0, TWO_PART_LIMITS)
    verify = fuzz.flag(1, 0)
    decoder = TwoPartDecoder(max_message_size=limit, verify_checksum=verify)
    messages: list[TwoPartMessage] = []
    error: ProtocolError | None = None
    try:
        for chunk in fuzz.chunks():
            decoder.feed(chunk)
            messages.extend(decoder)
            # Drained: what is left is one partial frame, which the limit bounds.
            require(decoder.buffered < max(limit, PRELUDE_SIZE), f"{decoder.buffered} bytes buffered, limit {limit}")
        decoder.feed_eof()
    except ProtocolError as exc:
        error = exc
    if error is not None:
        require_clear_error(error, WIRE_ERRORS)
        require(decoder.error is error, "the decoder does not remember its error")
        require_poisoned(lambda: decoder.feed(b"\x00"), error)
        require_poisoned(decoder.next_message, error)
        require_poisoned(decoder.feed_eof, error)
    expected, expected_error = two_part_oracle(fuzz.stream, limit, verify)
    require(messages == expected, f"decoded {len(messages)} frames, the oracle {len(expected)}")
    require(error_type(error) is expected_error, f"decoder raised {error!r}, the oracle {expected_error}")


# --- TCP request frames ------------------------------------------------------------------------------

REQUEST_LIMITS = (request_frame.FIXED_OVERHEAD, 40, 300, 4096, request_frame.DEFAULT_MAX_REQUEST_SIZE)


def request_frame_oracle(stream: bytes, limit: int) -> tuple[list[RequestFrame], type[ProtocolError] | None]:
    """Frames and first error; the limit applies to each length field as soon as it is readable."""
    frames: list[RequestFrame] = []
    position = 0
    while position < len(stream):
        rest = stream[position:]
        size = 8  # the three length fields
        lengths: list[int] = []
        offset = 0
        for width in (2, 2, 4):
            if len(rest) < offset + width:
                break
            length = int.from_bytes(rest[offset : offset + width], "big")
            lengths.append(length)
            size += length
            offset += width + length
        if size > limit:
            return frames, FrameTooLarge
        if len(lengths) < 3 or len(rest) < size:
            return frames, TruncatedFrame
        path_len, headers_len, _ = lengths
        path = rest[2 : 2 + path_len]
        headers = rest[4 + path_len : 4 + path_len + headers_len]
        payload = rest[8 + path_len + headers_len : size]
        frames.append(RequestFrame(path, headers, payload))
        position += size
    return frames, None


def fuzz_request_frame(raw: bytes) -> None:
    fuzz = FuzzInput.parse(raw)
    limit = fuzz.choose(0, REQUEST_LIMITS)
    decoder = RequestFrameDecoder(max_message_size=limit)
    frames: list[RequestFrame] = []
    error: ProtocolError | None = None
    try:
        for chunk in fuzz.chunks():
            decoder.feed(chunk)
            frames.extend(decoder)
            require(decoder.buffered < limit, f"{decoder.buffered} bytes buffered, limit {limit}")
        decoder.feed_eof()
    except ProtocolError as exc:
        error = exc
    if error is not None:
        require_clear_error(error, WIRE_ERRORS)
        require_poisoned(lambda: decoder.feed(b"\x00"), error)
        require_poisoned(decoder.next_frame, error)
    expected, expected_error = request_frame_oracle(fuzz.stream, limit)
    require(frames == expected, f"decoded {len(frames)} frames, the oracle {len(expected)}")
    require(error_type(error) is expected_error, f"decoder raised {error!r}, the oracle {expected_error}")
    for frame in frames:
        parsed = parse_headers(frame.headers_raw)
        lenient = frame.headers()
        require(parsed is None or parsed == lenient, "the lenient headers view differs from the strict one")
        require(all(isinstance(k, str) and isinstance(v, str) for k, v in lenient.items()), "headers not a string map")


# --- ACKs --------------------------------------------------------------------------------------------

ACK_LIMITS = (4, 40, 4096, request_frame.DEFAULT_MAX_REQUEST_SIZE)


def ack_oracle(stream: bytes, limit: int) -> tuple[list[bytes], type[ProtocolError] | None]:
    acks: list[bytes] = []
    position = 0
    while position < len(stream):
        if len(stream) - position < 4:
            return acks, TruncatedFrame
        size = 4 + int.from_bytes(stream[position : position + 4], "big")
        if size > limit:
            return acks, FrameTooLarge
        if len(stream) - position < size:
            return acks, TruncatedFrame
        acks.append(stream[position + 4 : position + size])
        position += size
    return acks, None


def fuzz_tcp_ack(raw: bytes) -> None:
    fuzz = FuzzInput.parse(raw)
    limit = fuzz.choose(0, ACK_LIMITS)
    decoder = AckDecoder(max_message_size=limit)
    acks: list[bytes] = []
    error: ProtocolError | None = None
    try:
        for chunk in fuzz.chunks():
            decoder.feed(chunk)
            acks.extend(decoder)
            require(decoder.buffered < max(limit, 4), f"{decoder.buffered} bytes buffered, limit {limit}")
        decoder.feed_eof()
    except ProtocolError as exc:
        error = exc
    if error is not None:
        require_clear_error(error, WIRE_ERRORS)
        require_poisoned(decoder.next_ack, error)
    expected, expected_error = ack_oracle(fuzz.stream, limit)
    require(acks == expected, f"decoded {len(acks)} ACKs, the oracle {len(expected)}")
    require(error_type(error) is expected_error, f"decoder raised {error!r}, the oracle {expected_error}")
    for ack in acks:
        try:
            check_ack(ack)
        except RequestRejected as rejection:
            require(bool(ack), "an empty ACK was read as a rejection")
            require(rejection.ack_text == ack.decode("utf-8", "replace"), "the rejection does not carry the ACK text")
        else:
            require(not ack, f"a non-empty ACK {ack[:40]!r} was read as success")
