"""Properties of the TCP request frame and its ACK.

Request: ``u16 path_len | path | u16 headers_len | headers JSON | u32 payload_len | payload``.
ACK: ``u32 len | text``.  All big-endian.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_impl.errors import FrameTooLarge, LocalProtocolError, ProtocolError, TruncatedFrame
from reference_impl.wire.request_frame import (
    FIXED_OVERHEAD,
    U16_MAX,
    U32_MAX,
    AckDecoder,
    RequestFrame,
    RequestFrameDecoder,
    encode_ack,
    encode_headers,
    encode_request,
)
from tests.strategies import bodies, chunks_of, header_maps

paths = st.text(max_size=40) | st.binary(max_size=40)
requests = st.tuples(paths, header_maps, bodies)


def as_bytes(path: str | bytes) -> bytes:
    return path.encode() if isinstance(path, str) else path


def expected_frame(path: str | bytes, headers: dict[str, str], payload: bytes) -> RequestFrame:
    return RequestFrame(as_bytes(path), encode_headers(headers), payload)


def decode_one(wire: bytes, **options: int) -> RequestFrame:
    decoder = RequestFrameDecoder(**options)
    decoder.feed(wire)
    frame = decoder.next_frame()
    assert frame is not None
    assert decoder.buffered == 0
    return frame


# --- request frame: layout and round trip -------------------------------------------


def test_request_frame_layout() -> None:
    wire = encode_request("a/b", {"k": "v"}, b"xy")
    assert wire == b'\x00\x03a/b\x00\x09{"k":"v"}\x00\x00\x00\x02xy'


@pytest.mark.parametrize("headers", [None, {}, b""])
def test_no_headers_encode_as_zero_length(headers: dict[str, str] | bytes | None) -> None:
    assert encode_request("p", headers, b"") == b"\x00\x01p\x00\x00\x00\x00\x00\x00"


@given(path=paths, headers=header_maps, payload=bodies)
def test_request_round_trip(path: str | bytes, headers: dict[str, str], payload: bytes) -> None:
    wire = encode_request(path, headers, payload)
    frame = decode_one(wire)
    assert frame == expected_frame(path, headers, payload)
    assert frame.headers() == headers
    assert frame.wire_size == len(wire)


@given(frames=st.lists(requests, max_size=8), data=st.data())
def test_any_chunking_decodes_to_the_same_frames(
    frames: list[tuple[str | bytes, dict[str, str], bytes]], data: st.DataObject
) -> None:
    wire = b"".join(encode_request(*frame) for frame in frames)
    decoder = RequestFrameDecoder()
    decoded: list[RequestFrame] = []
    for chunk in data.draw(chunks_of(wire), label="chunks"):
        decoder.feed(chunk)
        decoded.extend(decoder)
    decoder.feed_eof()
    assert decoded == [expected_frame(*frame) for frame in frames]


@given(frames=st.lists(requests, min_size=1, max_size=3))
def test_every_prefix_yields_a_prefix_of_the_frames_and_never_a_wrong_one(
    frames: list[tuple[str | bytes, dict[str, str], bytes]],
) -> None:
    encoded = [encode_request(*frame) for frame in frames]
    expected = [expected_frame(*frame) for frame in frames]
    wire = b"".join(encoded)
    boundaries = {sum(len(e) for e in encoded[:n]) for n in range(len(encoded) + 1)}
    for cut in range(len(wire) + 1):
        decoder = RequestFrameDecoder()
        decoder.feed(wire[:cut])
        decoded = list(decoder)
        assert decoded == expected[: len(decoded)]
        assert decoder.buffered == cut - sum(f.wire_size for f in decoded)
        if cut in boundaries:
            decoder.feed_eof()
        else:
            with pytest.raises(TruncatedFrame):
                decoder.feed_eof()


def test_truncated_frame_reports_needed_size_only_once_every_length_is_in() -> None:
    wire = encode_request("ab", {"k": "v"}, b"payload")
    lengths_known_at = len(wire) - len(b"payload")
    for cut in range(1, len(wire)):
        decoder = RequestFrameDecoder()
        decoder.feed(wire[:cut])
        with pytest.raises(TruncatedFrame) as info:
            decoder.feed_eof()
        assert info.value.buffered == cut
        assert info.value.needed == (len(wire) if cut >= lengths_known_at else None)


# --- u16 / u32 field limits ------------------------------------------------------------


def test_path_and_headers_up_to_u16_max_round_trip() -> None:
    path = b"p" * U16_MAX
    headers_raw = b"h" * U16_MAX
    frame = decode_one(encode_request(path, headers_raw, b"body"))
    assert (frame.path, frame.headers_raw, frame.payload) == (path, headers_raw, b"body")


def test_encoder_refuses_a_path_over_u16_max() -> None:
    with pytest.raises(LocalProtocolError):
        encode_request(b"p" * (U16_MAX + 1), None, b"")


@pytest.mark.parametrize(
    "headers", [b"h" * (U16_MAX + 1), {"k": "v" * U16_MAX}], ids=["raw-bytes", "map-encoding-too-long"]
)
def test_encoder_refuses_headers_over_u16_max(headers: dict[str, str] | bytes) -> None:
    with pytest.raises(LocalProtocolError):
        encode_request("p", headers, b"")


# --- lenient headers ---------------------------------------------------------------------


@given(raw=st.binary(max_size=64))
def test_headers_view_never_raises_and_is_always_a_string_map(raw: bytes) -> None:
    headers = RequestFrame(b"p", raw, b"").headers()
    assert isinstance(headers, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe\x00",
        b"[1,2]",
        b'"text"',
        b"null",
        b"42",
        b'{"a":1}',
        b'{"a":"b","c":null}',
        b'{"a":{"b":"c"}}',
        b"{",
        b"[" * U16_MAX,
        b'{"a":' * (U16_MAX // 5),
    ],
    ids=lambda raw: repr(raw[:16]),
)
def test_headers_that_are_not_a_string_map_read_as_no_headers(raw: bytes) -> None:
    """Dynamo's worker ignores unparsable headers rather than failing the request."""
    assert len(raw) <= U16_MAX
    assert RequestFrame(b"p", raw, b"").headers() == {}


@given(headers=header_maps)
def test_string_map_headers_are_read_back(headers: dict[str, str]) -> None:
    assert RequestFrame(b"p", encode_headers(headers), b"").headers() == headers


# --- size limit ------------------------------------------------------------------------


def known_lower_bound(prefix_len: int, path_len: int, headers_len: int, payload_len: int) -> int:
    """What the length fields received so far prove about the frame's size."""
    bound = FIXED_OVERHEAD
    if prefix_len >= 2:
        bound += path_len
    if prefix_len >= 4 + path_len:
        bound += headers_len
    if prefix_len >= 8 + path_len + headers_len:
        bound += payload_len
    return bound


@given(
    path=st.binary(max_size=20),
    headers_raw=st.binary(max_size=20),
    payload_len=st.integers(min_value=0, max_value=U32_MAX),
    limit=st.integers(min_value=FIXED_OVERHEAD, max_value=100),
)
def test_oversize_is_detected_as_soon_as_each_length_field_arrives(
    path: bytes, headers_raw: bytes, payload_len: int, limit: int
) -> None:
    """Every prefix up to the payload: fail exactly when the lengths seen so far already exceed the limit."""
    head = struct.pack(">H", len(path)) + path + struct.pack(">H", len(headers_raw)) + headers_raw
    head += struct.pack(">I", payload_len)
    for cut in range(len(head) + 1):
        bound = known_lower_bound(cut, len(path), len(headers_raw), payload_len)
        decoder = RequestFrameDecoder(max_message_size=limit)
        decoder.feed(head[:cut])
        if bound > limit:
            with pytest.raises(FrameTooLarge) as info:
                decoder.next_frame()
            assert (info.value.declared, info.value.limit) == (bound, limit)
            return
        frame = decoder.next_frame()
        if cut == len(head) and payload_len == 0:
            assert frame == RequestFrame(path, headers_raw, b"")
        else:
            assert frame is None
            assert decoder.buffered == cut


@pytest.mark.parametrize(
    ("prefix", "declared"),
    [
        (b"\xff\xff", FIXED_OVERHEAD + U16_MAX),
        (b"\x00\x00\xff\xff", FIXED_OVERHEAD + U16_MAX),
        (b"\x00\x00\x00\x00\xff\xff\xff\xff", FIXED_OVERHEAD + U32_MAX),
    ],
    ids=["path_len", "headers_len", "payload_len"],
)
def test_maximal_length_fields_fail_before_their_content(prefix: bytes, declared: int) -> None:
    decoder = RequestFrameDecoder(max_message_size=1024)
    decoder.feed(prefix)
    with pytest.raises(FrameTooLarge) as info:
        decoder.next_frame()
    assert info.value.declared == declared


def test_u32_max_payload_exceeds_the_default_limit() -> None:
    decoder = RequestFrameDecoder()
    decoder.feed(b"\x00\x00\x00\x00\xff\xff\xff\xff")
    with pytest.raises(FrameTooLarge):
        decoder.next_frame()


@given(path=paths, headers=header_maps, payload=bodies)
def test_frame_exactly_at_the_limit_is_accepted_and_one_byte_over_is_not(
    path: str | bytes, headers: dict[str, str], payload: bytes
) -> None:
    wire = encode_request(path, headers, payload)
    assert decode_one(wire, max_message_size=len(wire)) == expected_frame(path, headers, payload)
    decoder = RequestFrameDecoder(max_message_size=len(wire) - 1)
    decoder.feed(wire)
    with pytest.raises(FrameTooLarge) as info:
        decoder.next_frame()
    assert info.value.declared == len(wire)


def test_decoder_stays_poisoned_after_an_error() -> None:
    decoder = RequestFrameDecoder(max_message_size=16)
    decoder.feed(encode_request("p", None, b"x" * 100))
    with pytest.raises(FrameTooLarge) as info:
        decoder.next_frame()
    for attempt in (decoder.next_frame, decoder.feed_eof, lambda: decoder.feed(encode_request("p", None, b""))):
        with pytest.raises(FrameTooLarge) as again:
            attempt()
        assert again.value is info.value


def test_frames_before_an_oversized_one_are_still_delivered() -> None:
    decoder = RequestFrameDecoder(max_message_size=32)
    decoder.feed(encode_request("a", None, b"1") + encode_request("b", None, b"x" * 64))
    assert decoder.next_frame() == RequestFrame(b"a", b"", b"1")
    with pytest.raises(FrameTooLarge):
        decoder.next_frame()


@given(data=st.data(), garbage=st.binary(max_size=600), limit=st.integers(min_value=FIXED_OVERHEAD, max_value=512))
def test_garbage_only_raises_protocol_errors(data: st.DataObject, garbage: bytes, limit: int) -> None:
    decoder = RequestFrameDecoder(max_message_size=limit)
    try:
        for chunk in data.draw(chunks_of(garbage), label="chunks"):
            decoder.feed(chunk)
            for frame in decoder:
                assert frame.wire_size <= limit
                frame.headers()
        decoder.feed_eof()
    except ProtocolError:
        pass
    else:
        assert decoder.buffered == 0


@pytest.mark.parametrize("chunk_size", [4093, 100_000])
def test_large_frames_survive_buffer_compaction(chunk_size: int) -> None:
    frames = [
        (b"big", b"", bytes([1]) * 70_000),
        (b"s", b'{"a":"b"}', b"small"),
        (b"big2", b"", bytes([2]) * 90_000),
    ]
    wire = b"".join(encode_request(*frame) for frame in frames)
    decoder = RequestFrameDecoder()
    decoded: list[RequestFrame] = []
    for start in range(0, len(wire), chunk_size):
        decoder.feed(wire[start : start + chunk_size])
        decoded.extend(decoder)
    assert decoded == [RequestFrame(*frame) for frame in frames]


# --- ACK -----------------------------------------------------------------------------------


def test_ack_layout() -> None:
    assert encode_ack() == b"\x00\x00\x00\x00"
    assert encode_ack("Server overloaded: busy") == b"\x00\x00\x00\x17Server overloaded: busy"


@given(text=st.text(max_size=64) | st.binary(max_size=64))
def test_ack_round_trip(text: str | bytes) -> None:
    decoder = AckDecoder()
    decoder.feed(encode_ack(text))
    assert decoder.next_ack() == as_bytes(text)
    assert decoder.next_ack() is None
    decoder.feed_eof()


@given(texts=st.lists(st.text(max_size=32), max_size=10), data=st.data())
def test_acks_come_out_in_fifo_order_under_any_chunking(texts: list[str], data: st.DataObject) -> None:
    wire = b"".join(encode_ack(text) for text in texts)
    decoder = AckDecoder()
    acks: list[bytes] = []
    for chunk in data.draw(chunks_of(wire), label="chunks"):
        decoder.feed(chunk)
        acks.extend(decoder)
    decoder.feed_eof()
    assert acks == [text.encode() for text in texts]


@given(text=st.binary(min_size=0, max_size=32), data=st.data())
def test_partial_ack_waits_then_fails_at_eof(text: bytes, data: st.DataObject) -> None:
    wire = encode_ack(text)
    cut = data.draw(st.integers(min_value=1, max_value=len(wire) - 1), label="cut")
    decoder = AckDecoder()
    decoder.feed(wire[:cut])
    assert decoder.next_ack() is None
    assert decoder.buffered == cut
    with pytest.raises(TruncatedFrame) as info:
        decoder.feed_eof()
    assert info.value.needed == (len(wire) if cut >= 4 else None)


def test_oversized_ack_fails_from_its_length_prefix() -> None:
    decoder = AckDecoder(max_message_size=10)
    decoder.feed(b"\x00\x00\x00\x07")
    with pytest.raises(FrameTooLarge) as info:
        decoder.next_ack()
    assert info.value.declared == 11
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"more")


def test_ack_exactly_at_the_limit_is_accepted() -> None:
    decoder = AckDecoder(max_message_size=10)
    decoder.feed(encode_ack("123456"))
    assert decoder.next_ack() == b"123456"


@given(data=st.data(), garbage=st.binary(max_size=300), limit=st.integers(min_value=4, max_value=256))
def test_ack_garbage_only_raises_protocol_errors(data: st.DataObject, garbage: bytes, limit: int) -> None:
    decoder = AckDecoder(max_message_size=limit)
    try:
        for chunk in data.draw(chunks_of(garbage), label="chunks"):
            decoder.feed(chunk)
            for ack in decoder:
                assert len(ack) + 4 <= limit
        decoder.feed_eof()
    except ProtocolError:
        pass
