"""The decoder's single-frame fast path behaves exactly as its general path.

A ``bytes`` chunk fed while nothing is pending that holds exactly one whole frame is
decoded by ``feed`` itself (see ``TwoPartDecoder``).  The general path is the oracle:
a ``bytearray`` chunk never takes the fast path, so the same decoder class fed the same
chunks as bytearrays must return the same messages, raise the same errors (same
attributes) at the same calls, and report the same ``buffered`` and pending frame size
after every step.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference_impl.errors import ChecksumMismatch, FrameTooLarge, ProtocolError, TruncatedFrame
from reference_impl.wire.checksum import xxh3_64
from reference_impl.wire.two_part import PRELUDE_SIZE, TwoPartDecoder, TwoPartMessage, encode, encode_message
from tests.strategies import two_part_messages

LIMIT = 256


def prelude(header_len: int, body_len: int, checksum: int = 0) -> bytes:
    return struct.pack(">QQQ", header_len, body_len, checksum)


def general_path(chunk: bytes) -> bytearray:
    """The same bytes in a container the fast path never takes."""
    return bytearray(chunk)


def outcome(call: Callable[[], object]) -> object:
    """What a call returned, or the error it raised with the attributes that describe it."""
    try:
        return call()
    except ProtocolError as exc:
        return (type(exc).__name__, vars(exc))


# --- the path is taken, and what it returns ------------------------------------------


def test_a_chunk_of_exactly_one_frame_is_decoded_by_feed() -> None:
    """White-box: without this the properties below could pass with the fast path never taken."""
    decoder = TwoPartDecoder()
    decoder.feed(encode(b"", b"item"))
    assert decoder._ready == TwoPartMessage(b"", b"item")
    assert decoder.next_message() == TwoPartMessage(b"", b"item")
    assert decoder._ready is None


@pytest.mark.parametrize(
    ("header", "data"),
    [(b"", b""), (b"h", b""), (b"", b"d"), (b"head", b"body")],
    ids=["empty", "header", "data", "both"],
)
def test_zero_length_parts_through_the_fast_path(header: bytes, data: bytes) -> None:
    wire = encode(header, data)
    decoder = TwoPartDecoder()
    decoder.feed(wire)
    assert decoder.buffered == len(wire)  # held until pulled, as the general path holds it
    assert decoder.pending_frame_size() == len(wire)
    message = decoder.next_message()
    assert message == TwoPartMessage(header, data)
    assert type(message) is TwoPartMessage
    assert type(message.header) is bytes and type(message.data) is bytes
    assert decoder.next_message() is None
    assert decoder.buffered == 0
    decoder.feed_eof()


def test_one_frame_and_the_head_of_the_next() -> None:
    first, second = encode(b"", b"one"), encode(b"h", b"two")
    decoder = TwoPartDecoder()
    decoder.feed(first + second[:5])
    assert decoder.next_message() == TwoPartMessage(b"", b"one")
    assert decoder.next_message() is None
    assert decoder.buffered == 5
    decoder.feed(second[5:])
    assert decoder.next_message() == TwoPartMessage(b"h", b"two")
    decoder.feed_eof()


def test_a_partial_frame_then_its_remainder() -> None:
    wire = encode(b"h", b"data")
    decoder = TwoPartDecoder()
    decoder.feed(wire[:3])
    assert decoder.next_message() is None
    decoder.feed(wire[3:])
    assert decoder.next_message() == TwoPartMessage(b"h", b"data")
    assert decoder.buffered == 0
    decoder.feed(wire)  # nothing pending again: the next whole frame is the fast path's
    assert decoder.next_message() == TwoPartMessage(b"h", b"data")


def test_frames_fed_before_the_ready_one_is_pulled_come_after_it_in_order() -> None:
    decoder = TwoPartDecoder()
    decoder.feed(encode(b"", b"1"))
    decoder.feed(encode(b"", b"2"))
    decoder.feed(encode(b"", b"3")[:10])
    assert decoder.buffered == 2 * (PRELUDE_SIZE + 1) + 10
    assert [decoder.next_message(), decoder.next_message(), decoder.next_message()] == [
        TwoPartMessage(b"", b"1"),
        TwoPartMessage(b"", b"2"),
        None,
    ]


# --- errors through the fast path: the same as through the general path -------------


@pytest.mark.parametrize("chunk_type", [bytes, general_path], ids=["fast", "general"])
def test_a_bad_checksum_fails_at_next_message_and_poisons(chunk_type: Callable[[bytes], bytes]) -> None:
    good = xxh3_64(b"h", b"d")
    wire = prelude(1, 1, good ^ 1) + b"hd"
    decoder = TwoPartDecoder(verify_checksum=True)
    decoder.feed(chunk_type(wire))
    assert decoder.buffered == len(wire)
    with pytest.raises(ChecksumMismatch) as info:
        decoder.next_message()
    assert (info.value.expected, info.value.actual) == (good ^ 1, good)
    for attempt in (lambda: decoder.feed(encode(b"", b"next")), decoder.next_message, decoder.feed_eof):
        with pytest.raises(ChecksumMismatch) as again:
            attempt()
        assert again.value is info.value


def test_a_bad_checksum_is_accepted_through_the_fast_path_when_not_verified() -> None:
    decoder = TwoPartDecoder()
    decoder.feed(prelude(1, 1, 12345) + b"hd")
    assert decoder.next_message() == TwoPartMessage(b"h", b"d")


def test_a_good_checksum_passes_through_either_path() -> None:
    wire = encode(b"h", b"d", write_checksum=True)
    for chunk in (wire, general_path(wire)):
        decoder = TwoPartDecoder(verify_checksum=True)
        decoder.feed(chunk)
        assert decoder.next_message() == TwoPartMessage(b"h", b"d")


@pytest.mark.parametrize("chunk_type", [bytes, general_path], ids=["fast", "general"])
def test_a_whole_frame_over_the_limit_fails_at_next_message_and_poisons(chunk_type: Callable[[bytes], bytes]) -> None:
    wire = encode(b"", b"x" * (LIMIT - PRELUDE_SIZE + 1))
    decoder = TwoPartDecoder(max_message_size=LIMIT)
    decoder.feed(chunk_type(wire))
    assert decoder.buffered == len(wire)
    with pytest.raises(FrameTooLarge) as info:
        decoder.next_message()
    assert (info.value.declared, info.value.limit) == (LIMIT + 1, LIMIT)
    # Poisoned: a good single frame does not slip through the fast path afterwards.
    for attempt in (lambda: decoder.feed(encode(b"", b"ok")), decoder.next_message, decoder.feed_eof):
        with pytest.raises(FrameTooLarge) as again:
            attempt()
        assert again.value is info.value


def test_a_frame_exactly_at_the_limit_takes_the_fast_path() -> None:
    wire = encode(b"", b"x" * (LIMIT - PRELUDE_SIZE))
    decoder = TwoPartDecoder(max_message_size=LIMIT)
    decoder.feed(wire)
    assert decoder.next_message() == TwoPartMessage(b"", b"x" * (LIMIT - PRELUDE_SIZE))


def test_eof_before_the_ready_frame_is_pulled_is_a_truncation_and_poisons() -> None:
    """As on the general path: feed_eof with a frame not yet pulled reports its bytes, and nothing is returned after."""
    wire = encode(b"", b"item")
    results = []
    for chunk in (wire, general_path(wire)):
        decoder = TwoPartDecoder()
        decoder.feed(chunk)
        with pytest.raises(TruncatedFrame) as info:
            decoder.feed_eof()
        with pytest.raises(TruncatedFrame) as again:
            decoder.next_message()
        assert again.value is info.value
        results.append((info.value.buffered, info.value.needed))
    assert results[0] == results[1] == (len(wire), len(wire))


# --- any split of any frame sequence: fast path == general path ---------------------


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One frame: plain, with its checksum written, with a wrong checksum, or declaring more than LIMIT."""
    message = draw(two_part_messages)
    kind = draw(st.sampled_from(["plain", "checksum", "bad checksum", "oversize"]))
    if kind == "checksum":
        return encode(message.header, message.data, write_checksum=True)
    if kind == "bad checksum":
        wrong = draw(st.integers(min_value=1, max_value=(1 << 64) - 1).filter(lambda c: c != xxh3_64(*message)))
        return prelude(len(message.header), len(message.data), wrong) + message.header + message.data
    if kind == "oversize":
        body = draw(st.integers(min_value=LIMIT - PRELUDE_SIZE + 1, max_value=LIMIT + 64))
        return encode(b"", b"z" * body)
    return encode_message(message)


@st.composite
def split_stream(draw: st.DrawFn) -> list[bytes]:
    """Frames cut at some of their boundaries (so whole single frames occur) and at drawn points inside."""
    wires = draw(st.lists(frames(), max_size=6), label="frames")
    blob = b"".join(wires)
    boundaries = [sum(len(w) for w in wires[: i + 1]) for i in range(len(wires))]
    cuts = {b for b in boundaries if draw(st.booleans(), label="cut at boundary")}
    cuts |= set(draw(st.lists(st.integers(min_value=0, max_value=len(blob)), max_size=4), label="inner cuts"))
    bounds = [0, *sorted(cuts - {0, len(blob)}), len(blob)]
    return [blob[start:end] for start, end in pairwise(bounds)]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=split_stream(), limited=st.booleans(), verify=st.booleans(), data=st.data())
def test_any_split_decodes_as_the_general_path_does(
    chunks: list[bytes], limited: bool, verify: bool, data: st.DataObject
) -> None:
    options = {"max_message_size": LIMIT if limited else None, "verify_checksum": verify}
    fast, general = TwoPartDecoder(**options), TwoPartDecoder(**options)  # type: ignore[arg-type]

    def step(call: Callable[[TwoPartDecoder], object]) -> object:
        got, expected = outcome(lambda: call(fast)), outcome(lambda: call(general))
        assert got == expected
        assert (fast.buffered, fast.pending_frame_size()) == (general.buffered, general.pending_frame_size())
        return got

    for chunk in chunks:

        def feed(decoder: TwoPartDecoder, chunk: bytes = chunk) -> None:
            decoder.feed(chunk if decoder is fast else general_path(chunk))

        step(feed)
        # Sometimes leave the frame unpulled: the next chunk then lands behind a ready message.
        pulls = data.draw(st.one_of(st.just(-1), st.integers(min_value=0, max_value=2)), label="pulls (-1: drain)")
        while pulls != 0:
            pulls -= 1
            if not isinstance(step(TwoPartDecoder.next_message), TwoPartMessage):
                break
    if data.draw(st.booleans(), label="drain before eof"):
        while isinstance(step(TwoPartDecoder.next_message), TwoPartMessage):
            pass
    step(TwoPartDecoder.feed_eof)
    step(TwoPartDecoder.next_message)  # after a truncation at eof, nothing more comes out
    assert (fast.error is None) == (general.error is None)
