"""The response-stream judge on Dynamo 1.6.1's captured call-home streams, and on broken ones."""

from __future__ import annotations

import pytest

from fixtures.golden import load_vectors
from fixtures.judge import annotated, two_part
from fixtures.judge.codecs import PayloadCodec
from fixtures.judge.control import CallHomeHandshake, ResponseStreamPrologue
from fixtures.judge.items import encode_final, encode_item
from fixtures.judge.transcript import (
    EndedBy,
    Event,
    ItemReceived,
    PrologueReceived,
    ProtocolViolation,
    event_name,
    judge_frames,
)
from fixtures.judge.two_part import Frame, FrameReader
from fixtures.judge.words import ControlWord

VECTORS = load_vectors("1.6.1")
CODEC = PayloadCodec.MSGPACK
HANDSHAKE = Frame(CallHomeHandshake("subject-1").to_json_bytes())
PROLOGUE = Frame(ResponseStreamPrologue().to_json_bytes())
FINAL = Frame(b"", encode_final(CODEC))
SENTINEL = Frame(ControlWord.SENTINEL.header)


def item(value: object) -> Frame:
    return Frame(b"", encode_item(CODEC, annotated.wrap(value)))


def captured(name: str) -> tuple[list[Frame], PayloadCodec]:
    reader = FrameReader()
    reader.feed(VECTORS[name].bytes)
    return list(reader), PayloadCodec(VECTORS[name].expected["codec"])


def names(events: list[Event]) -> list[str]:
    return [event_name(e) for e in events]


@pytest.mark.parametrize("name", ["callhome_msgpack_ok", "callhome_json_ok"])
def test_captured_complete_streams(name: str):
    frames, codec = captured(name)
    events = judge_frames(frames, codec, EndedBy.EOF)
    assert names(events) == [
        "HandshakeReceived",
        "PrologueReceived",
        "ItemReceived",
        "ItemReceived",
        "FinalReceived",
        "SentinelReceived",
        "closed_complete",
    ]
    values = [annotated.unwrap(e.data).data for e in events if isinstance(e, ItemReceived)]
    assert values == [{"i": 0, "echo": "hello"}, {"i": 1, "echo": "hello"}]


def test_captured_prologue_error_then_sentinel():
    frames, codec = captured("callhome_prologue_error")
    events = judge_frames(frames, codec, EndedBy.EOF)
    assert names(events) == ["HandshakeReceived", "PrologueReceived", "SentinelReceived", "closed_incomplete"]
    prologue = events[1]
    assert isinstance(prologue, PrologueReceived) and prologue.error and "refused before the stream" in prologue.error
    assert isinstance(prologue.typed_error, dict)


@pytest.mark.parametrize("name", ["callhome_error_before_first_item", "callhome_error_mid_stream"])
def test_captured_error_items_end_normally(name: str):
    frames, codec = captured(name)
    events = judge_frames(frames, codec, EndedBy.EOF)
    assert names(events)[-3:] == ["FinalReceived", "SentinelReceived", "closed_complete"]
    errors = [annotated.unwrap(e.data).error for e in events if isinstance(e, ItemReceived)]
    assert errors[-1] and "golden" in errors[-1]


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([PROLOGUE], "handshake"),
        ([item(0)], "handshake"),
        ([Frame(b'{"stream_type":"response","subject":"s"}')], "order"),
        ([Frame(CallHomeHandshake("s", "request").to_json_bytes())], "stream_type"),
        ([HANDSHAKE, item(0)], "prologue"),
        ([HANDSHAKE, Frame(b'{"error":null,"extra":1}')], "not part of the message"),
        ([HANDSHAKE, PROLOGUE, FINAL, item(1)], "after complete_final"),
        ([HANDSHAKE, PROLOGUE, Frame(b"", CODEC.encode({"complete_final": True, "data": 1}))], "order"),
        ([HANDSHAKE, PROLOGUE, Frame(b"", CODEC.encode({"data": 1, "complete_final": True}))], "carries data"),
        ([HANDSHAKE, PROLOGUE, Frame(b"", CODEC.encode({"complete_final": False}))], "no data"),
        ([HANDSHAKE, PROLOGUE, Frame(ControlWord.STOP.header)], "only a caller"),
        ([HANDSHAKE, PROLOGUE, Frame(b'"sentinel" ')], "not the sentinel"),
        ([HANDSHAKE, PROLOGUE, Frame(b"h", b"d")], "data-only"),
        ([HANDSHAKE, PROLOGUE, Frame(b"", PayloadCodec.JSON.encode({"data": 1, "complete_final": False}))], "msgpack"),
        ([HANDSHAKE, PROLOGUE, FINAL, SENTINEL, SENTINEL], "after the sentinel"),
        ([HANDSHAKE, Frame(b'{"error":"no"}'), item(0)], "after a prologue error"),
    ],
)
def test_departures_are_violations(frames: list[Frame], reason: str):
    events = judge_frames(frames, CODEC, EndedBy.EOF)
    last = events[-1]
    assert isinstance(last, ProtocolViolation), names(events)
    assert reason in last.reason, last.reason
    assert len(events) == len(frames), "judging stops at the first violation"


def test_how_the_connection_ended():
    whole = [HANDSHAKE, PROLOGUE, item(0), FINAL, SENTINEL]
    assert names(judge_frames(whole, CODEC, EndedBy.RESET))[-1] == "closed_complete"
    assert names(judge_frames(whole[:3], CODEC, EndedBy.EOF))[-1] == "closed_incomplete"
    assert names(judge_frames(whole[:3], CODEC, EndedBy.TIMEOUT))[-1] == "ItemReceived"
    truncated = judge_frames(whole[:3], CODEC, EndedBy.EOF, trailing_bytes=5)
    assert isinstance(truncated[-1], ProtocolViolation) and "inside a frame" in truncated[-1].reason
    garbage = judge_frames(whole[:3], CODEC, EndedBy.BAD_FRAME, wire_error="frame of 9 bytes exceeds")
    assert isinstance(garbage[-1], ProtocolViolation)


def test_a_stream_encoded_by_the_judge_is_judged_complete():
    raw = b"".join(two_part.encode(f.header, f.data) for f in [HANDSHAKE, PROLOGUE, item(0), item(""), FINAL, SENTINEL])
    reader = FrameReader()
    reader.feed(raw)
    events = judge_frames(reader, CODEC, EndedBy.EOF)
    assert [annotated.unwrap(e.data).data for e in events if isinstance(e, ItemReceived)] == [0, ""]
