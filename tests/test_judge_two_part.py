"""The judge's two-part codec against Dynamo 1.6.1's captured bytes and the worked examples of the notes."""

from __future__ import annotations

import pytest

from fixtures.golden import load_vectors
from fixtures.judge import two_part
from fixtures.judge.errors import FrameTooLarge, WireError
from fixtures.judge.two_part import Frame, FrameReader, decode_exactly_one, xxh3_64
from fixtures.judge.words import ControlWord, FrameKind

VECTORS = load_vectors("1.6.1")
CALLHOME = sorted(name for name in VECTORS if name.startswith("callhome_"))


def _expected_frames(name: str) -> list[Frame]:
    frames = VECTORS[name].expected["frames"]
    return [Frame(f["header_text"].encode(), bytes.fromhex(f["body_hex"]), f["checksum"]) for f in frames]


@pytest.mark.parametrize("name", CALLHOME)
@pytest.mark.parametrize("chunk", [1, 7, 1 << 20], ids=["bytewise", "7-byte-chunks", "whole"])
def test_captured_call_home_streams_split_into_the_captured_frames(name: str, chunk: int):
    raw = VECTORS[name].bytes
    reader = FrameReader()
    frames: list[Frame] = []
    for start in range(0, len(raw), chunk):
        reader.feed(raw[start : start + chunk])
        frames.extend(reader)
    reader.feed_eof()
    assert frames == _expected_frames(name)
    assert b"".join(two_part.encode(f.header, f.data) for f in frames) == raw, "re-encoding is not byte-identical"


def test_notes_worked_examples():
    assert (
        two_part.encode(b"hdr", b"body").hex() == "0000000000000003" + "0000000000000004" + "0" * 16 + "686472626f6479"
    )
    debug = two_part.encode(b"header data", b"body data", write_checksum=True)
    assert debug[16:24].hex() == "4b83b1be407d063f"
    assert decode_exactly_one(debug).checksum_ok
    prologue = "000000000000000e" + "0" * 32 + "7b226572726f72223a6e756c6c7d"
    assert decode_exactly_one(bytes.fromhex(prologue)) == Frame(b'{"error":null}', b"", 0)


def test_control_words_are_the_captured_frames():
    assert two_part.encode(ControlWord.STOP.header) == VECTORS["stop_real_caller"].bytes
    assert two_part.encode(ControlWord.KILL.header) == VECTORS["caller_drop_stream"].bytes
    sentinel = _expected_frames("callhome_msgpack_ok")[-1]
    assert ControlWord.of_header(sentinel.header) is ControlWord.SENTINEL
    assert ControlWord.of_header(b' "stop"') is None, "only the exact bytes are a control word"


def test_kinds_follow_from_the_empty_parts():
    assert Frame(b"h").kind is FrameKind.HEADER_ONLY
    assert Frame(b"", b"d").kind is FrameKind.DATA_ONLY
    assert Frame(b"h", b"d").kind is FrameKind.HEADER_AND_DATA
    assert Frame().kind is FrameKind.EMPTY
    assert decode_exactly_one(two_part.encode()) == Frame()


def test_checksum_is_zero_or_exact():
    assert Frame(b"h", b"d", 0).checksum_ok
    assert Frame(b"h", b"d", xxh3_64(b"h", b"d")).checksum_ok
    assert not Frame(b"h", b"d", xxh3_64(b"h", b"d") ^ 1).checksum_ok
    wrong = two_part.encode(b"h", b"d", checksum=0xDEADBEEFDEADBEEF)
    assert decode_exactly_one(wrong).checksum == 0xDEADBEEFDEADBEEF, "a wrong checksum is recorded, not hidden"


@pytest.mark.parametrize("cut", [0, 1, 23, 24, 30])
def test_a_partial_frame_is_not_consumed(cut: int):
    raw = two_part.encode(b"header", b"data")
    reader = FrameReader()
    reader.feed(raw[:cut])
    assert reader.next_frame() is None
    assert reader.buffered == cut
    with pytest.raises(WireError, match="inside a frame") if cut else _no_error():
        reader.feed_eof()


class _no_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_exact_decoding_refuses_trailing_and_missing_bytes():
    raw = two_part.encode(b"h", b"d")
    with pytest.raises(WireError, match="1 trailing bytes"):
        decode_exactly_one(raw + b"x")
    with pytest.raises(WireError, match="1 bytes missing"):
        decode_exactly_one(raw[:-1])
    with pytest.raises(WireError, match="prelude"):
        decode_exactly_one(raw[:23])


def test_the_limit_is_checked_from_the_prelude_alone():
    reader = FrameReader(max_frame_size=100)
    reader.feed(two_part.PRELUDE.pack(50, 27, 0))
    with pytest.raises(FrameTooLarge) as caught:
        reader.next_frame()
    assert caught.value.declared == 101
    with pytest.raises(FrameTooLarge):
        reader.feed(b"more")  # failed for good: no frame markers to resynchronise on
    at_limit = FrameReader(max_frame_size=100)
    at_limit.feed(two_part.encode(b"h" * 50, b"d" * 26))
    assert at_limit.next_frame() is not None


def test_u64_lengths_never_wrap():
    reader = FrameReader(max_frame_size=1 << 30)
    reader.feed(two_part.PRELUDE.pack(two_part.U64_MAX, two_part.U64_MAX, 0))
    with pytest.raises(FrameTooLarge) as caught:
        reader.next_frame()
    assert caught.value.declared == 24 + 2 * two_part.U64_MAX
