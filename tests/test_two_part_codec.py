"""Properties of the two-part codec: ``u64 header_len | u64 body_len | u64 checksum | header | body``."""

from __future__ import annotations

import struct

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from reference_impl.errors import ChecksumMismatch, FrameTooLarge, ProtocolError, TruncatedFrame
from reference_impl.wire.checksum import xxh3_64
from reference_impl.wire.two_part import (
    ITEM_PRELUDE_CACHE,
    PRELUDE_SIZE,
    U64_MAX,
    MessageKind,
    TwoPartDecoder,
    TwoPartMessage,
    decode_all,
    encode,
    encode_message,
)
from tests.strategies import bodies, chunks_of, headers, two_part_messages


def prelude(header_len: int, body_len: int, checksum: int = 0) -> bytes:
    return struct.pack(">QQQ", header_len, body_len, checksum)


def decode_chunks(chunks: list[bytes], **options: object) -> list[TwoPartMessage]:
    decoder = TwoPartDecoder(**options)  # type: ignore[arg-type]
    messages: list[TwoPartMessage] = []
    for chunk in chunks:
        decoder.feed(chunk)
        messages.extend(decoder)
    decoder.feed_eof()
    return messages


# --- layout and round trip ---------------------------------------------------------


def test_prelude_is_three_big_endian_u64() -> None:
    assert encode(b"hd", b"body") == b"\x00" * 7 + b"\x02" + b"\x00" * 7 + b"\x04" + b"\x00" * 8 + b"hdbody"


def test_checksum_field_is_zero_unless_requested() -> None:
    assert encode(b"h", b"d")[16:24] == bytes(8)
    assert encode(b"h", b"d", write_checksum=True)[16:24] == struct.pack(">Q", xxh3_64(b"h", b"d"))


def test_empty_frame_is_a_bare_prelude() -> None:
    assert encode() == bytes(PRELUDE_SIZE)
    assert decode_all(bytes(PRELUDE_SIZE)) == [TwoPartMessage(b"", b"")]


@given(header=headers, data=bodies, write_checksum=st.booleans(), verify=st.booleans())
def test_round_trip(header: bytes, data: bytes, write_checksum: bool, verify: bool) -> None:
    wire = encode(header, data, write_checksum=write_checksum)
    assert wire[:16] == prelude(len(header), len(data))[:16]
    assert len(wire) == TwoPartMessage(header, data).wire_size
    assert decode_all(wire, verify_checksum=verify) == [TwoPartMessage(header, data)]


@given(message=two_part_messages)
def test_round_trip_preserves_message_kind(message: TwoPartMessage) -> None:
    (decoded,) = decode_all(encode_message(message))
    assert decoded.kind is message.kind


@pytest.mark.parametrize(
    ("header", "data", "kind"),
    [
        (b'"sentinel"', b"", MessageKind.HEADER_ONLY),
        (b"", b"{}", MessageKind.DATA_ONLY),
        (b"{}", b"{}", MessageKind.HEADER_AND_DATA),
        (b"", b"", MessageKind.EMPTY),
    ],
)
def test_kind_follows_which_parts_are_empty(header: bytes, data: bytes, kind: MessageKind) -> None:
    (decoded,) = decode_all(encode(header, data))
    assert decoded.kind is kind


# --- chunking and truncation ---------------------------------------------------------


@given(messages=st.lists(two_part_messages, max_size=8), data=st.data())
def test_any_chunking_decodes_to_the_same_messages(messages: list[TwoPartMessage], data: st.DataObject) -> None:
    wire = b"".join(encode_message(m) for m in messages)
    chunks = data.draw(chunks_of(wire), label="chunks")
    assert decode_chunks(chunks) == messages


@given(messages=st.lists(two_part_messages, min_size=1, max_size=3))
def test_every_prefix_yields_a_prefix_of_the_messages_and_never_a_wrong_one(messages: list[TwoPartMessage]) -> None:
    wire = b"".join(encode_message(m) for m in messages)
    boundaries = {0}
    offset = 0
    for message in messages:
        offset += message.wire_size
        boundaries.add(offset)
    for cut in range(len(wire) + 1):
        decoder = TwoPartDecoder()
        decoder.feed(wire[:cut])
        decoded = list(decoder)
        assert decoded == messages[: len(decoded)]
        consumed = sum(m.wire_size for m in decoded)
        assert decoder.buffered == cut - consumed
        if cut in boundaries:
            assert decoder.buffered == 0
            decoder.feed_eof()
        else:
            with pytest.raises(TruncatedFrame):
                decoder.feed_eof()


@given(message=two_part_messages, data=st.data())
def test_partial_frame_returns_none_and_consumes_nothing(message: TwoPartMessage, data: st.DataObject) -> None:
    wire = encode_message(message)
    cut = data.draw(st.integers(min_value=0, max_value=len(wire) - 1), label="cut")
    decoder = TwoPartDecoder()
    decoder.feed(wire[:cut])
    assert decoder.next_message() is None
    assert decoder.next_message() is None
    assert decoder.buffered == cut
    decoder.feed(wire[cut:])
    assert decoder.next_message() == message
    assert decoder.buffered == 0


@given(message=two_part_messages, data=st.data())
def test_truncated_frame_reports_buffered_and_needed_bytes(message: TwoPartMessage, data: st.DataObject) -> None:
    wire = encode_message(message)
    cut = data.draw(st.integers(min_value=1, max_value=len(wire) - 1), label="cut")
    decoder = TwoPartDecoder()
    decoder.feed(wire[:cut])
    with pytest.raises(TruncatedFrame) as info:
        decoder.feed_eof()
    assert info.value.buffered == cut
    assert info.value.needed == (message.wire_size if cut >= PRELUDE_SIZE else None)


def test_pending_frame_size_is_known_once_the_prelude_is_in() -> None:
    wire = encode(b"abc", b"defgh")
    decoder = TwoPartDecoder()
    decoder.feed(wire[: PRELUDE_SIZE - 1])
    assert decoder.pending_frame_size() is None
    decoder.feed(wire[PRELUDE_SIZE - 1 : PRELUDE_SIZE])
    assert decoder.pending_frame_size() == PRELUDE_SIZE + 8


def test_feed_eof_on_an_empty_stream_is_clean() -> None:
    decoder = TwoPartDecoder()
    decoder.feed_eof()
    assert decoder.error is None


def test_decode_all_rejects_a_trailing_partial_frame() -> None:
    with pytest.raises(TruncatedFrame):
        decode_all(encode(b"h") + encode(b"x", b"y")[:-1])


@pytest.mark.parametrize("chunk_size", [1, 1000, 65536, 200_000])
def test_large_frames_survive_buffer_compaction(chunk_size: int) -> None:
    """Frames past 64 KiB trigger the decoder's buffer compaction; order and content must not change."""
    messages = [
        TwoPartMessage(b"h" * 10, bytes([1]) * 70_000),
        TwoPartMessage(b"", b"small"),
        TwoPartMessage(b"x" * 80_000, b""),
        TwoPartMessage(b"y", bytes([2]) * 100_000),
    ]
    wire = b"".join(encode_message(m) for m in messages)
    if chunk_size == 1:
        # Byte-by-byte over 250 KB is slow in pure Python; odd-sized chunks exercise the same paths.
        chunk_size = 4093
    chunks = [wire[i : i + chunk_size] for i in range(0, len(wire), chunk_size)]
    assert decode_chunks(chunks) == messages


# --- size limit ----------------------------------------------------------------------


@given(
    header_len=st.integers(min_value=0, max_value=U64_MAX),
    body_len=st.integers(min_value=0, max_value=U64_MAX),
    limit=st.integers(min_value=0, max_value=1 << 20),
)
def test_oversize_is_detected_from_the_prelude_alone(header_len: int, body_len: int, limit: int) -> None:
    declared = PRELUDE_SIZE + header_len + body_len
    decoder = TwoPartDecoder(max_message_size=limit)
    decoder.feed(prelude(header_len, body_len))
    if declared > limit:
        with pytest.raises(FrameTooLarge) as info:
            decoder.next_message()
        assert (info.value.declared, info.value.limit) == (declared, limit)
    else:
        # Within the limit: wait for the body (or, for a bare prelude, it is the whole frame).
        assert decoder.next_message() == (TwoPartMessage() if declared == PRELUDE_SIZE else None)


@given(message=two_part_messages)
def test_frame_exactly_at_the_limit_is_accepted_and_one_byte_over_is_not(message: TwoPartMessage) -> None:
    wire = encode_message(message)
    assert decode_all(wire, max_message_size=len(wire)) == [message]
    with pytest.raises(FrameTooLarge):
        decode_all(wire, max_message_size=len(wire) - 1)


@pytest.mark.parametrize(("header_len", "body_len"), [(U64_MAX, 0), (0, U64_MAX), (U64_MAX, U64_MAX)])
def test_u64_max_lengths_are_too_large_with_the_default_limit(header_len: int, body_len: int) -> None:
    """Python ints cannot overflow, but the sum must still be compared, not wrapped or waited on."""
    decoder = TwoPartDecoder()
    decoder.feed(prelude(header_len, body_len))
    with pytest.raises(FrameTooLarge) as info:
        decoder.next_message()
    assert info.value.declared == PRELUDE_SIZE + header_len + body_len


def test_encoder_enforces_the_same_limit() -> None:
    assert len(encode(b"ab", b"cd", max_message_size=28)) == 28
    with pytest.raises(FrameTooLarge):
        encode(b"ab", b"cd", max_message_size=27)


@pytest.mark.parametrize("body_len", [0, 1, ITEM_PRELUDE_CACHE - 1, ITEM_PRELUDE_CACHE, ITEM_PRELUDE_CACHE + 1])
def test_item_frames_below_and_above_the_stored_preludes_are_laid_out_alike(body_len: int) -> None:
    data = bytes(range(256)) * (body_len // 256) + bytes(body_len % 256)
    assert encode(b"", data) == prelude(0, body_len) + data
    assert encode(data=data, write_checksum=True) == prelude(0, body_len, xxh3_64(b"", data)) + data
    assert encode(data=data, max_message_size=PRELUDE_SIZE + body_len) == prelude(0, body_len) + data
    with pytest.raises(FrameTooLarge):
        encode(data=data, max_message_size=PRELUDE_SIZE + body_len - 1)


def test_unlimited_decoder_waits_for_a_huge_frame_instead_of_failing() -> None:
    decoder = TwoPartDecoder(max_message_size=None)
    decoder.feed(prelude(U64_MAX, U64_MAX) + b"partial")
    assert decoder.next_message() is None
    assert decoder.buffered == PRELUDE_SIZE + 7


# --- checksum ------------------------------------------------------------------------


def test_xxh3_of_empty_input_matches_the_reference_vector() -> None:
    assert xxh3_64(b"", b"") == 0x2D06800538D394C2


@given(header=headers, data=bodies)
def test_checksum_covers_header_then_body(header: bytes, data: bytes) -> None:
    assert xxh3_64(header, data) == xxhash.xxh3_64_intdigest(header + data)


@given(header=headers, data=bodies, verify=st.booleans())
def test_zero_checksum_is_always_accepted(header: bytes, data: bytes, verify: bool) -> None:
    assert decode_all(encode(header, data), verify_checksum=verify) == [TwoPartMessage(header, data)]


@given(header=headers, data=bodies)
def test_correct_checksum_passes_verification(header: bytes, data: bytes) -> None:
    wire = encode(header, data, write_checksum=True)
    assert decode_all(wire, verify_checksum=True) == [TwoPartMessage(header, data)]


@given(header=headers, data=bodies, checksum=st.integers(min_value=1, max_value=U64_MAX))
def test_wrong_nonzero_checksum_fails_verification(header: bytes, data: bytes, checksum: int) -> None:
    actual = xxh3_64(header, data)
    wire = prelude(len(header), len(data), checksum) + header + data
    if checksum == actual:
        assert decode_all(wire, verify_checksum=True) == [TwoPartMessage(header, data)]
        return
    with pytest.raises(ChecksumMismatch) as info:
        decode_all(wire, verify_checksum=True)
    assert (info.value.expected, info.value.actual) == (checksum, actual)


@given(header=headers, data=bodies, checksum=st.integers(min_value=1, max_value=U64_MAX))
def test_wrong_checksum_is_accepted_when_verification_is_off(header: bytes, data: bytes, checksum: int) -> None:
    """Release builds of Dynamo do not verify; the reference follows them by default."""
    wire = prelude(len(header), len(data), checksum) + header + data
    assert decode_all(wire) == [TwoPartMessage(header, data)]


def test_checksum_mismatch_is_raised_after_earlier_good_frames() -> None:
    decoder = TwoPartDecoder(verify_checksum=True)
    decoder.feed(encode(b"ok", write_checksum=True) + prelude(1, 0, 12345) + b"x")
    assert decoder.next_message() == TwoPartMessage(b"ok")
    with pytest.raises(ChecksumMismatch):
        decoder.next_message()


# --- errors and poisoning ------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "options", "error_type"),
    [
        (prelude(10, 10), {"max_message_size": 30}, FrameTooLarge),
        (prelude(1, 0, 99) + b"x", {"verify_checksum": True}, ChecksumMismatch),
    ],
)
def test_decoder_stays_poisoned_after_an_error(
    wire: bytes, options: dict[str, object], error_type: type[ProtocolError]
) -> None:
    decoder = TwoPartDecoder(**options)  # type: ignore[arg-type]
    decoder.feed(wire)
    with pytest.raises(error_type) as info:
        decoder.next_message()
    first = info.value
    assert decoder.error is first
    for attempt in (decoder.next_message, decoder.feed_eof, lambda: decoder.feed(encode(b"valid"))):
        with pytest.raises(error_type) as again:
            attempt()
        assert again.value is first


def test_truncation_at_eof_poisons_the_decoder() -> None:
    decoder = TwoPartDecoder()
    decoder.feed(b"\x00")
    with pytest.raises(TruncatedFrame) as info:
        decoder.feed_eof()
    with pytest.raises(TruncatedFrame) as again:
        decoder.next_message()
    assert again.value is info.value


@given(
    data=st.data(),
    garbage=st.binary(max_size=600),
    limit=st.integers(min_value=0, max_value=512),
    verify=st.booleans(),
)
def test_garbage_only_raises_protocol_errors(data: st.DataObject, garbage: bytes, limit: int, verify: bool) -> None:
    """Arbitrary bytes decode, wait, or fail with a ProtocolError; the limit keeps every wait bounded."""
    decoder = TwoPartDecoder(max_message_size=limit, verify_checksum=verify)
    try:
        for chunk in data.draw(chunks_of(garbage), label="chunks"):
            decoder.feed(chunk)
            for message in decoder:
                assert message.wire_size <= limit
        decoder.feed_eof()
    except ProtocolError as exc:
        assert decoder.error is exc
    else:
        assert decoder.buffered == 0
