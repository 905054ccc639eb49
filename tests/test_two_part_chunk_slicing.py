"""The decoder's chunk-slicing fast path agrees with a plain model of the byte stream.

While nothing is pending, ``TwoPartDecoder.feed`` keeps a ``bytes`` chunk as it is and
slices frames from it; only a partial frame at its end is copied into the decoder's own
buffer.  These properties drive the decoder with random chunkings, chunk types (bytes,
bytearray, memoryview), pull counts between feeds and an oversized prelude among good
frames, and compare every step with a model that decodes the concatenated stream.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference_impl.errors import FrameTooLarge, ProtocolError, TruncatedFrame
from reference_impl.wire.two_part import PRELUDE_SIZE, TwoPartDecoder, TwoPartMessage, encode_message
from tests.strategies import chunks_of, two_part_messages

LIMIT = 256


class StreamModel:
    """What the decoder must return: frames parsed from everything fed so far, in order."""

    def __init__(self, limit: int) -> None:
        self.received = b""
        self.consumed = 0
        self.limit = limit

    def next_message(self) -> TwoPartMessage | None:
        rest = self.received[self.consumed :]
        if len(rest) < PRELUDE_SIZE:
            return None
        header_len, body_len, _ = struct.unpack(">QQQ", rest[:PRELUDE_SIZE])
        total = PRELUDE_SIZE + header_len + body_len
        if total > self.limit:
            raise FrameTooLarge(total, self.limit)
        if len(rest) < total:
            return None
        self.consumed += total
        middle = PRELUDE_SIZE + header_len
        return TwoPartMessage(rest[PRELUDE_SIZE:middle], rest[middle:total])


def as_container(chunk: bytes, kind: str) -> bytes | bytearray | memoryview:
    if kind == "bytearray":
        return bytearray(chunk)
    if kind == "memoryview":
        return memoryview(bytearray(chunk))
    return chunk


def scribble(container: bytes | bytearray | memoryview) -> None:
    """The owner of a mutable buffer reuses it after ``feed`` returns (as a socket reader may)."""
    if isinstance(container, bytes):
        return
    for index in range(len(container)):
        container[index] = 0xA5


small_messages = two_part_messages.filter(lambda m: m.wire_size <= LIMIT)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """Good frames, optionally with an oversized prelude (and more good frames) at a drawn position."""
    frames = [encode_message(m) for m in draw(st.lists(small_messages, max_size=8), label="messages")]
    oversize_at: int | None = None
    if draw(st.booleans(), label="with an oversized prelude"):
        oversize_at = draw(st.integers(min_value=0, max_value=len(frames)), label="oversize at")
        header_len = draw(st.integers(min_value=LIMIT - PRELUDE_SIZE + 1, max_value=1 << 40), label="declared")
        frames.insert(oversize_at, struct.pack(">QQQ", header_len, 0, 0) + b"x" * 8)
    return b"".join(frames), oversize_at


# A byte-at-a-time chunking draws a chunk type and a pull count per byte: hundreds of draws per example, which
# a loaded 2-core machine does not finish within hypothesis's default 200 ms deadline.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams(), data=st.data())
def test_any_chunking_chunk_type_and_pull_pattern_matches_the_model(
    stream: tuple[bytes, int | None], data: st.DataObject
) -> None:
    wire, _ = stream
    decoder = TwoPartDecoder(max_message_size=LIMIT)
    model = StreamModel(LIMIT)
    error: ProtocolError | None = None

    def pull() -> bool:
        """One next_message on both; False once the stream failed or needs more bytes."""
        nonlocal error
        try:
            expected = model.next_message()
        except FrameTooLarge as exc:
            with pytest.raises(FrameTooLarge) as info:
                decoder.next_message()
            assert (info.value.declared, info.value.limit) == (exc.declared, exc.limit)
            error = info.value
            return False
        got = decoder.next_message()
        assert got == expected
        if got is not None:
            assert type(got) is TwoPartMessage
            assert type(got.header) is bytes and type(got.data) is bytes
        assert decoder.buffered == len(model.received) - model.consumed
        return got is not None

    for chunk in data.draw(chunks_of(wire), label="chunks"):
        container = as_container(chunk, data.draw(st.sampled_from(["bytes", "bytearray", "memoryview"])))
        if error is not None:
            with pytest.raises(FrameTooLarge) as again:
                decoder.feed(container)
            assert again.value is error  # poisoned: the same error, nothing buffered
            continue
        decoder.feed(container)
        model.received += chunk
        scribble(container)
        # Sometimes leave frames in the decoder across feeds: the next chunk then lands behind them.
        pulls = data.draw(st.one_of(st.just(-1), st.integers(min_value=0, max_value=3)), label="pulls (-1: drain)")
        if pulls == -1:
            while pull():
                pass
        else:
            for _ in range(pulls):
                if not pull():
                    break
    while error is None and pull():
        pass
    if error is not None:
        for attempt in (decoder.next_message, decoder.feed_eof):
            with pytest.raises(FrameTooLarge) as again:
                attempt()
            assert again.value is error
    else:
        assert model.consumed == len(wire)
        decoder.feed_eof()


@given(stream=streams(), data=st.data())
def test_an_oversized_prelude_after_good_frames_in_one_chunk_fails_after_them(
    stream: tuple[bytes, int | None], data: st.DataObject
) -> None:
    """Frames before the bad prelude are returned (a server ACKs them first); then the decoder is poisoned."""
    wire, oversize_at = stream
    decoder = TwoPartDecoder(max_message_size=LIMIT)
    decoder.feed(wire)  # all of it in one chunk: the fast path holds it without copying
    decoded: list[TwoPartMessage] = []
    if oversize_at is None:
        decoded.extend(decoder)
        assert sum(m.wire_size for m in decoded) == len(wire)
        decoder.feed_eof()
        return
    with pytest.raises(FrameTooLarge) as info:
        for message in decoder:
            decoded.append(message)
    assert len(decoded) == oversize_at
    assert decoder.error is info.value
    for attempt in (decoder.next_message, decoder.feed_eof, lambda: decoder.feed(b"\x00" * PRELUDE_SIZE)):
        with pytest.raises(FrameTooLarge) as again:
            attempt()
        assert again.value is info.value


@given(message=two_part_messages, data=st.data())
def test_a_frame_split_behind_a_whole_one_is_completed_by_the_next_chunk(
    message: TwoPartMessage, data: st.DataObject
) -> None:
    """Whole frame + head of the next in one chunk, its tail in the next: the held tail must not be lost or aliased."""
    first = encode_message(TwoPartMessage(b"", b"item"))
    second = encode_message(message)
    cut = data.draw(st.integers(min_value=0, max_value=len(second) - 1), label="cut")
    decoder = TwoPartDecoder()
    head = bytearray(first + second[:cut])
    decoder.feed(head)
    head[:] = b"\xff" * len(head)
    assert decoder.next_message() == TwoPartMessage(b"", b"item")
    assert decoder.next_message() is None
    assert decoder.buffered == cut
    decoder.feed(second[cut:])
    assert decoder.next_message() == message
    assert decoder.buffered == 0
    decoder.feed_eof()


def test_a_truncated_tail_of_a_held_chunk_is_reported_at_eof() -> None:
    decoder = TwoPartDecoder()
    wire = encode_message(TwoPartMessage(b"h", b"d"))
    decoder.feed(wire + wire[:5])
    assert decoder.next_message() == TwoPartMessage(b"h", b"d")
    with pytest.raises(TruncatedFrame) as info:
        decoder.feed_eof()
    assert info.value.buffered == 5
