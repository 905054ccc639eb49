"""The judge's TCP request frame, ACK and request envelope against Dynamo 1.6.1's captured bytes."""

from __future__ import annotations

import pytest

from fixtures.golden import load_vectors
from fixtures.judge import two_part
from fixtures.judge.ack import AT_CAPACITY, AckClass, unknown_endpoint
from fixtures.judge.codecs import PayloadCodec
from fixtures.judge.control import ConnectionInfo, RequestControlMessage, TcpStreamConnectionInfo
from fixtures.judge.envelope import build_envelope, parse_envelope
from fixtures.judge.errors import FrameTooLarge, WireError
from fixtures.judge.request_frame import (
    AckReader,
    RequestFrameReader,
    decode_request,
    encode_ack,
    encode_request,
    parse_headers,
)

VECTORS = load_vectors("1.6.1")
REQUEST_FRAMES = sorted(name for name in VECTORS if name.startswith("request_frame_"))


@pytest.mark.parametrize("name", REQUEST_FRAMES)
def test_captured_request_frames(name: str):
    vector = VECTORS[name]
    expected = vector.expected
    frame = decode_request(vector.bytes)
    assert frame.path.decode() == expected["path"]
    assert frame.headers_raw.decode() == expected["headers_text"]
    assert parse_headers(frame.headers_raw) == expected["headers"]
    assert len(frame.payload) == expected["payload_len"]
    assert encode_request(frame.path, frame.headers_raw, frame.payload) == vector.bytes
    envelope = parse_envelope(frame.payload)
    assert envelope.control.to_json_bytes().decode() == expected["envelope"]["control_text"], "field order"
    assert envelope.callhome() == TcpStreamConnectionInfo(**expected["envelope"]["info"])
    assert envelope.decode_body() == expected["envelope"]["body_value"]
    assert envelope.control.codec is PayloadCodec.parse(vector.context["advertised_codec"])


def test_a_worker_without_a_codec_gets_json_named_explicitly():
    """1.6.1's caller names JSON for a legacy worker; leaving the field out (older callers) also means JSON."""
    control = parse_envelope(decode_request(VECTORS["request_frame_real_caller_legacy"].bytes).payload).control
    assert control.payload_codec == "json"
    raw = control.to_json_bytes().replace(b',"payload_codec":"json"', b"")
    assert RequestControlMessage.from_json_bytes(raw).codec is PayloadCodec.JSON


def test_notes_worked_request_frame():
    """§4.8: 245-byte control JSON, msgpack {"text":"hi"}, path a/ns/comp/gen: 352 bytes."""
    info = TcpStreamConnectionInfo("10.0.0.5:40000", "s1", "r1")
    control = RequestControlMessage("r1", ConnectionInfo.for_tcp(info), payload_codec="msgpack")
    assert len(control.to_json_bytes()) == 245
    body = PayloadCodec.MSGPACK.encode({"text": "hi"})
    assert body.hex() == "81a474657874a26869"
    frame = encode_request(
        "a/ns/comp/gen", {"request-id": "r1", "x-endpoint-path": "a/ns/comp/gen"}, build_envelope(control, body)
    )
    assert len(frame) == 352
    assert frame[:2].hex() == "000d" and frame[15:17].hex() == "0035" and frame[70:74].hex() == "00000116"


def test_captured_acks():
    reader = AckReader()
    reader.feed(VECTORS["ack_accepted"].bytes + VECTORS["ack_unknown_endpoint"].bytes)
    accepted, unknown = list(reader)
    assert accepted == b"" and AckClass.of(accepted) is AckClass.ACCEPTED
    path = VECTORS["ack_unknown_endpoint"].expected["path"]
    assert unknown.decode() == unknown_endpoint(path) and AckClass.of(unknown) is AckClass.UNAVAILABLE
    assert encode_ack(unknown_endpoint(path)) == VECTORS["ack_unknown_endpoint"].bytes
    assert AckClass.of(AT_CAPACITY.encode()) is AckClass.OVERLOADED
    assert AckClass.of(VECTORS["ack_oversize"].bytes[4:]) is AckClass.OTHER, "1.6.1's 'Read error:' is no prefix"


def test_the_limit_covers_the_whole_frame_from_the_length_fields():
    vector = VECTORS["ack_oversize"]
    reader = RequestFrameReader(max_frame_size=vector.expected["max_message_size"])
    reader.feed(bytes.fromhex(vector.context["request_prefix_hex"]))  # length fields only, no payload
    with pytest.raises(FrameTooLarge) as caught:
        reader.next_frame()
    assert caught.value.declared == vector.expected["declared_frame_size"]


def test_request_frames_split_and_end_cleanly():
    frames = [encode_request(f"p{i}", {"k": "v"}, b"x" * i) for i in range(3)]
    reader = RequestFrameReader()
    for byte in b"".join(frames):
        reader.feed(bytes([byte]))
    assert [f.payload for f in reader] == [b"", b"x", b"xx"]
    reader.feed(frames[0][:5])
    with pytest.raises(WireError, match="inside a request frame"):
        reader.feed_eof()
    with pytest.raises(WireError, match="trailing"):
        decode_request(frames[0] + b"\x00")


def test_headers_that_are_not_a_string_map():
    assert parse_headers(b"") == {}
    assert parse_headers(b"notjs") is None
    assert parse_headers(b'{"a":1}') is None
    assert parse_headers(b"[]") is None


@pytest.mark.parametrize(
    "payload",
    [
        two_part.encode(b'{"id":"x"}'),  # header-only
        two_part.encode(b"", b"body"),  # data-only
        two_part.encode(b"{}", b"body") + b"\x00",  # trailing
    ],
    ids=["header-only", "data-only", "trailing"],
)
def test_envelopes_that_are_not_one_header_and_data_frame(payload: bytes):
    with pytest.raises(WireError):
        parse_envelope(payload)


def test_callhome_refuses_a_context_that_is_not_the_request_id():
    info = TcpStreamConnectionInfo("127.0.0.1:1", "s", "other")
    envelope = parse_envelope(build_envelope(RequestControlMessage("r1", ConnectionInfo.for_tcp(info)), b"{}"))
    with pytest.raises(WireError, match="not the request id"):
        envelope.callhome()
