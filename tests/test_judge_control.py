"""The judge's control messages, response items and codecs: captured bytes parse and re-encode
byte for byte, and every departure the judge is strict about is refused with a reason."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import pytest

from fixtures.golden import load_vectors
from fixtures.judge import annotated
from fixtures.judge.codecs import PayloadCodec
from fixtures.judge.control import (
    CallHomeHandshake,
    ConnectionInfo,
    RequestControlMessage,
    ResponseStreamPrologue,
    TcpStreamConnectionInfo,
)
from fixtures.judge.errors import WireError
from fixtures.judge.items import decode_wrapper, encode_final, encode_item

VECTORS = load_vectors("1.6.1")
CALLHOME = sorted(name for name in VECTORS if name.startswith("callhome_"))


def _frames(role: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (VECTORS[name].expected["codec"], frame)
        for name in CALLHOME
        for frame in VECTORS[name].expected["frames"]
        if frame["role"] == role
    ]


@pytest.mark.parametrize("role", ["handshake", "prologue"])
def test_captured_headers_parse_and_re_encode_identically(role: str):
    parse = CallHomeHandshake.from_json_bytes if role == "handshake" else ResponseStreamPrologue.from_json_bytes
    for _, frame in _frames(role):
        header = frame["header_text"].encode()
        assert parse(header).to_json_bytes() == header


def test_captured_items_and_finals():
    for codec_name, frame in _frames("item"):
        codec = PayloadCodec(codec_name)
        body = bytes.fromhex(frame["body_hex"])
        wrapper = decode_wrapper(codec, body)
        assert wrapper.has_data and not wrapper.complete_final
        assert wrapper.data == frame["body_value"]["data"]
        assert encode_item(codec, wrapper.data) == body
    for codec_name, frame in _frames("final"):
        assert encode_final(PayloadCodec(codec_name)).hex() == frame["body_hex"]


def test_captured_error_item_unwraps_to_its_message():
    (item,) = [f for f in VECTORS["callhome_error_mid_stream"].expected["frames"] if f["role"] == "item"][-1:]
    unwrapped = annotated.unwrap(item["body_value"]["data"])
    assert unwrapped.data is None and unwrapped.error and "ValueError" in unwrapped.error
    assert annotated.unwrap(annotated.error_item("boom")).error == "boom"
    assert annotated.unwrap({"event": "error", "comment": ["a", "b"]}).error == "a; b"
    assert annotated.unwrap(annotated.wrap(0)) == annotated.Unwrapped(0, None), "a falsy value is a value"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"stream_type":"response","subject":"s"}', "order"),
        (b'{"subject":"s"}', "missing"),
        (b'{"subject":"s","stream_type":"response","extra":1}', "not part of the message"),
        (b'{"subject":"s","subject":"t","stream_type":"response"}', "duplicate"),
        (b'{"subject":"s","stream_type":"sideways"}', "expected one of"),
        (b'{"subject":1,"stream_type":"response"}', "must be a string"),
        (b'["s","response"]', "JSON object"),
        (b'{"subject":"s","stream_type":"response"', "not valid JSON"),
    ],
)
def test_handshake_departures(raw: bytes, reason: str):
    with pytest.raises(WireError, match=reason):
        CallHomeHandshake.from_json_bytes(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{}", "missing"),
        (b'{"error":5}', "string or null"),
        (b'{"typed_error":{},"error":"x"}', "order"),
        (b'{"error":null,"typed_error":{"class":"x"}}', "without an error"),
        (b'{"error":"x","typed_error":"y"}', "must be an object"),
    ],
)
def test_prologue_departures(raw: bytes, reason: str):
    with pytest.raises(WireError, match=reason):
        ResponseStreamPrologue.from_json_bytes(raw)


def _control(**fields: Any) -> bytes:
    """A control message with ``fields`` set, in declaration order (unknown ones last)."""
    info = ConnectionInfo.for_tcp(TcpStreamConnectionInfo("127.0.0.1:1", "s", "r")).as_dict()
    document = {"id": "r", "request_type": "single_in", "response_type": "many_out", "connection_info": info, **fields}
    order = [*RequestControlMessage.FIELDS, *fields]
    return json.dumps({key: document[key] for key in order if key in document}, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_control(payload_codec=None), "null"),
        (_control(payload_codec="MSGPACK"), "unknown payload codec"),
        (_control(metadata={"b": "1", "a": "2"}), "sorted"),
        (_control(metadata={}), "non-empty"),
        (_control(frontend_send_ts_ns=-1), "u64"),
        (_control(request_type="both_in"), "expected one of"),
        (_control(surprise=True), "not part of the message"),
        (_control().replace(b'"id":"r","request_type":"single_in"', b'"request_type":"single_in","id":"r"'), "order"),
    ],
)
def test_request_control_departures(raw: bytes, reason: str):
    with pytest.raises(WireError, match=reason):
        RequestControlMessage.from_json_bytes(raw)


def test_request_control_optional_fields_round_trip():
    raw = _control(payload_codec="msgpack", metadata={"a": "1", "b": "2"}, frontend_send_ts_ns=7)
    assert RequestControlMessage.from_json_bytes(raw).to_json_bytes() == raw


def test_connection_info_is_strict_too():
    with pytest.raises(WireError, match="order"):
        TcpStreamConnectionInfo.from_json('{"subject":"s","address":"a","context":"c","stream_type":"response"}')
    with pytest.raises(WireError, match="tcp_server"):
        ConnectionInfo("quic", "{}").tcp()


@pytest.mark.parametrize("codec", list(PayloadCodec))
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"complete_final": False, "data": 1}, "order"),
        ({"data": 1}, "without complete_final"),
        ({"data": 1, "complete_final": 0}, "boolean"),
        ({"data": None, "complete_final": False}, "data null"),
        ({"data": 1, "complete_final": False, "id": "x"}, "only"),
        ([1], "is a map"),
    ],
)
def test_item_departures(codec: PayloadCodec, value: Any, reason: str):
    with pytest.raises(WireError, match=reason):
        decode_wrapper(codec, codec.encode(value))


def test_codecs_refuse_what_serde_would():
    with pytest.raises(WireError):
        PayloadCodec.JSON.decode(b"NaN")
    with pytest.raises(ValueError):
        PayloadCodec.JSON.encode(math.inf)
    with pytest.raises(WireError):
        PayloadCodec.MSGPACK.decode(msgpack.packb(1) + b"\x00")
    with pytest.raises(WireError):
        PayloadCodec.JSON.decode(b"{} {}")
    assert PayloadCodec.parse(None) is PayloadCodec.JSON
