"""The reference codecs against bytes captured from a real Dynamo 1.6.1 runtime.

The vectors (``fixtures/golden/dynamo-1.6.1.json``) and pcaps were produced by code
that shares nothing with ``reference_impl``, so agreement here is evidence that the
reference speaks Dynamo's wire format, not merely that it agrees with itself.
Nothing here needs the runtime: it reads files only.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from fixtures.golden import GoldenVector, golden_file, load_document, load_vector, load_vectors
from reference_impl.discovery.file_store import FileDiscovery, encode_key
from reference_impl.discovery.records import InstanceRecord
from reference_impl.errors import FrameTooLarge, WorkerUnavailable
from reference_impl.protocol import ack, annotated
from reference_impl.protocol.envelope import build_envelope, parse_envelope
from reference_impl.protocol.messages import (
    SENTINEL,
    STOP,
    CallHomeHandshake,
    RequestControlMessage,
    ResponseStreamPrologue,
    TcpStreamConnectionInfo,
    encode_final,
    encode_item,
)
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.protocol.response_stream import (
    CallerState,
    CallerStream,
    Event,
    FinalReceived,
    HandshakeReceived,
    ItemReceived,
    PrologueReceived,
    ProtocolViolation,
    SentinelReceived,
    StreamClosed,
    WorkerStream,
)
from reference_impl.wire import two_part
from reference_impl.wire.request_frame import AckDecoder, RequestFrame, RequestFrameDecoder, encode_ack, encode_request
from tests.pcap import TcpStream, tcp_streams

DYNAMO_VERSION = "1.6.1"
VECTORS = load_vectors(DYNAMO_VERSION)
CALLHOME = sorted(name for name in VECTORS if name.startswith("callhome_"))
CALLHOME_STREAMING = [name for name in CALLHOME if name != "callhome_prologue_error"]
REQUEST_FRAMES = sorted(name for name in VECTORS if name.startswith("request_frame_"))
REQUEST_BODY: dict[str, Any] = {"text": "hello", "n": 2}


# --- helpers: slice captured bytes using the capture script's own decoding ---------------------


def captured_frames(vector: GoldenVector) -> list[bytes]:
    """The raw bytes of each two-part frame, cut at the lengths the capture script recorded."""
    data, pieces, pos = vector.bytes, [], 0
    for frame in vector.expected["frames"]:
        end = pos + 24 + frame["header_len"] + frame["body_len"]
        pieces.append(data[pos:end])
        pos = end
    assert pos == len(data), "the recorded frames must cover the captured stream exactly"
    return pieces


def frames_with_role(vector: GoldenVector, role: str) -> list[tuple[dict[str, Any], bytes]]:
    pairs = zip(vector.expected["frames"], captured_frames(vector), strict=True)
    return [(frame, raw) for frame, raw in pairs if frame["role"] == role]


def codec_of(vector: GoldenVector) -> PayloadCodec:
    return PayloadCodec(vector.expected["codec"])


def caller_events(vector: GoldenVector, chunk_size: int | None = None) -> tuple[CallerStream, list[Event]]:
    """Run the caller's state machine over a captured stream, then the worker's close."""
    stream = CallerStream(codec_of(vector))
    data = vector.bytes
    size = chunk_size or len(data)
    events: list[Event] = []
    for start in range(0, len(data), size):
        events.extend(stream.receive_data(data[start : start + size]))
    events.append(stream.receive_eof())
    return stream, events


def single_request_frame(vector: GoldenVector) -> RequestFrame:
    decoder = RequestFrameDecoder()
    decoder.feed(vector.bytes)
    frames = list(decoder)
    decoder.feed_eof()
    assert len(frames) == 1
    return frames[0]


# --- the vector file itself ---------------------------------------------------------------------


def test_vectors_come_from_the_pinned_dynamo_release() -> None:
    assert load_document(DYNAMO_VERSION)["dynamo_version"] == DYNAMO_VERSION
    for vector in VECTORS.values():
        assert vector.dynamo_version == DYNAMO_VERSION
        assert vector.description


def test_every_expected_scenario_was_captured() -> None:
    wanted = {
        "ack_accepted",
        "ack_unknown_endpoint",
        "ack_oversize",
        "callhome_msgpack_ok",
        "callhome_json_ok",
        "callhome_error_before_first_item",
        "callhome_error_mid_stream",
        "callhome_prologue_error",
        "request_frame_real_caller_msgpack",
        "stop_real_caller",
        "caller_after_sentinel",
    }
    assert wanted <= set(VECTORS)


# --- TwoPart codec --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CALLHOME)
def test_two_part_decoder_splits_callhome_stream_into_captured_frames(name: str) -> None:
    vector = VECTORS[name]
    messages = two_part.decode_all(vector.bytes, verify_checksum=True)
    decoded = [(len(m.header), len(m.data), m.header.decode(), m.data.hex()) for m in messages]
    expected = [(f["header_len"], f["body_len"], f["header_text"], f["body_hex"]) for f in vector.expected["frames"]]
    assert decoded == expected


@pytest.mark.parametrize("name", CALLHOME)
def test_release_build_writes_zero_checksums(name: str) -> None:
    assert {f["checksum"] for f in VECTORS[name].expected["frames"]} == {0}


@pytest.mark.parametrize("name", CALLHOME)
def test_two_part_decoder_gives_same_frames_fed_one_byte_at_a_time(name: str) -> None:
    vector = VECTORS[name]
    decoder = two_part.TwoPartDecoder()
    messages: list[two_part.TwoPartMessage] = []
    for byte in vector.bytes:
        decoder.feed(bytes([byte]))
        messages.extend(decoder)
    decoder.feed_eof()
    assert messages == two_part.decode_all(vector.bytes)


# --- re-encoding deterministic frames: byte-identical to what Dynamo sent -----------------------


@pytest.mark.parametrize("name", CALLHOME)
def test_handshake_reencodes_byte_identical(name: str) -> None:
    vector = VECTORS[name]
    ((frame, raw),) = frames_with_role(vector, "handshake")
    subject = frame["header_json"]["subject"]
    assert two_part.encode(CallHomeHandshake(subject).to_json_bytes()) == raw


@pytest.mark.parametrize("name", CALLHOME)
def test_prologue_reencodes_byte_identical(name: str) -> None:
    ((frame, raw),) = frames_with_role(VECTORS[name], "prologue")
    prologue = ResponseStreamPrologue.from_json_bytes(frame["header_text"].encode())
    assert two_part.encode(prologue.to_json_bytes()) == raw


@pytest.mark.parametrize("name", CALLHOME_STREAMING)
def test_success_prologue_is_error_null(name: str) -> None:
    ((_frame, raw),) = frames_with_role(VECTORS[name], "prologue")
    assert raw == two_part.encode(ResponseStreamPrologue().to_json_bytes())
    assert raw[24:] == b'{"error":null}'


@pytest.mark.parametrize("name", CALLHOME_STREAMING)
def test_items_reencode_byte_identical(name: str) -> None:
    vector = VECTORS[name]
    items = frames_with_role(vector, "item")
    assert items
    for frame, raw in items:
        assert two_part.encode(data=encode_item(codec_of(vector), frame["body_value"]["data"])) == raw


@pytest.mark.parametrize("name", CALLHOME_STREAMING)
def test_final_frame_reencodes_byte_identical(name: str) -> None:
    vector = VECTORS[name]
    ((_frame, raw),) = frames_with_role(vector, "final")
    assert two_part.encode(data=encode_final(codec_of(vector))) == raw


@pytest.mark.parametrize("name", CALLHOME)
def test_sentinel_reencodes_byte_identical(name: str) -> None:
    ((_frame, raw),) = frames_with_role(VECTORS[name], "sentinel")
    assert two_part.encode(SENTINEL) == raw


@pytest.mark.parametrize("name", CALLHOME)
def test_worker_stream_emits_the_whole_captured_stream(name: str) -> None:
    """The reference worker's state machine, fed the same content, writes Dynamo's exact bytes."""
    vector = VECTORS[name]
    frames = vector.expected["frames"]
    worker = WorkerStream(frames[0]["header_json"]["subject"], codec_of(vector))
    prologue = frames[1]["header_json"]
    out = [worker.handshake(), worker.prologue(prologue["error"], prologue.get("typed_error"))]
    out += [worker.item(frame["body_value"]["data"]) for frame in frames if frame["role"] == "item"]
    if prologue["error"] is None:
        out.append(worker.final())
    out.append(worker.sentinel())
    assert b"".join(out) == vector.bytes


def test_items_are_annotated_wrappers_of_the_handler_output() -> None:
    vector = VECTORS["callhome_msgpack_ok"]
    handler_output = [{"i": i, "echo": REQUEST_BODY["text"]} for i in range(REQUEST_BODY["n"])]
    items = [frame["body_value"]["data"] for frame, _ in frames_with_role(vector, "item")]
    assert items == [annotated.wrap(value) for value in handler_output]


# --- the caller's state machine accepts real worker streams -----------------------------------


@pytest.mark.parametrize("chunk_size", [None, 1, 7])
@pytest.mark.parametrize("name", CALLHOME_STREAMING)
def test_caller_stream_accepts_real_worker_stream(name: str, chunk_size: int | None) -> None:
    vector = VECTORS[name]
    stream, events = caller_events(vector, chunk_size)
    frames = vector.expected["frames"]
    expected_items = [ItemReceived(f["body_value"]["data"]) for f in frames if f["role"] == "item"]
    assert events == [
        HandshakeReceived(frames[0]["header_json"]["subject"], "response"),
        PrologueReceived(None),
        *expected_items,
        FinalReceived(),
        SentinelReceived(complete=True),
        StreamClosed(complete=True),
    ]
    assert stream.complete
    assert stream.state is CallerState.DONE


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("callhome_error_before_first_item", "golden: fail before first item"),
        ("callhome_error_mid_stream", "golden: fail mid-stream"),
    ],
)
def test_handler_failure_arrives_as_an_annotated_error_item(name: str, message: str) -> None:
    _, events = caller_events(VECTORS[name])
    items = [annotated.unwrap(event.data) for event in events if isinstance(event, ItemReceived)]
    assert items[-1].error is not None and message in items[-1].error
    assert all(item.error is None for item in items[:-1])


def test_caller_stream_reports_the_prologue_error() -> None:
    vector = VECTORS["callhome_prologue_error"]
    prologue = vector.expected["frames"][1]["header_json"]
    stream = CallerStream(codec_of(vector))
    events = list(stream.receive_data(vector.bytes))
    assert events[:2] == [
        HandshakeReceived(vector.expected["frames"][0]["header_json"]["subject"], "response"),
        PrologueReceived(prologue["error"], prologue["typed_error"]),
    ]
    assert "golden: refused before the stream" in prologue["error"]


def test_caller_stream_tolerates_the_sentinel_dynamo_sends_after_a_prologue_error() -> None:
    """A 1.6.1 worker always ends with ``"sentinel"``, even after ``{"error": "..."}``.

    Dynamo's own caller never reads that far (it drops the socket), but a state machine
    that judges a worker must not call Dynamo's normal byte stream a protocol violation.
    """
    _, events = caller_events(VECTORS["callhome_prologue_error"])
    assert not [event for event in events if isinstance(event, ProtocolViolation)]


# --- request frames from a real caller ------------------------------------------------------


@pytest.mark.parametrize("name", REQUEST_FRAMES)
def test_request_frame_decoder_parses_real_caller_frame(name: str) -> None:
    vector = VECTORS[name]
    expected = vector.expected
    frame = single_request_frame(vector)
    assert frame.path.decode() == expected["path"]
    assert frame.headers_raw.decode() == expected["headers_text"]
    assert frame.headers() == expected["headers"]
    assert len(frame.payload) == expected["payload_len"]
    assert frame.wire_size == len(vector.bytes)


@pytest.mark.parametrize("name", REQUEST_FRAMES)
def test_real_caller_headers_carry_request_id_timestamp_and_path(name: str) -> None:
    vector = VECTORS[name]
    headers = single_request_frame(vector).headers()
    assert set(headers) == {"request-id", "x-frontend-send-ts-ns", "x-endpoint-path"}
    assert headers["x-endpoint-path"] == vector.expected["path"]
    assert headers["request-id"] == vector.expected["envelope"]["control"]["id"]
    assert int(headers["x-frontend-send-ts-ns"]) > 1_600_000_000 * 10**9


@pytest.mark.parametrize("name", REQUEST_FRAMES)
def test_envelope_of_real_caller_frame(name: str) -> None:
    vector = VECTORS[name]
    expected = vector.expected["envelope"]
    envelope = parse_envelope(single_request_frame(vector).payload)
    control = envelope.control
    assert control.id == expected["control"]["id"]
    assert (control.request_type, control.response_type) == ("single_in", "many_out")
    assert control.payload_codec == expected["body_codec"]
    assert control.connection_info.transport == "tcp_server"
    assert control.connection_info.info == expected["control"]["connection_info"]["info"]
    assert envelope.callhome() == TcpStreamConnectionInfo(**expected["info"])
    assert envelope.body.hex() == expected["body_hex"]
    assert envelope.decode_body() == REQUEST_BODY == expected["body_value"]


@pytest.mark.parametrize("name", REQUEST_FRAMES)
def test_envelope_two_part_fields_match_capture(name: str) -> None:
    vector = VECTORS[name]
    expected = vector.expected["envelope"]
    header_len, body_len, checksum = two_part.PRELUDE.unpack_from(single_request_frame(vector).payload, 0)
    assert (header_len, body_len, checksum) == (expected["header_len"], expected["body_len"], expected["checksum"])


@pytest.mark.parametrize("name", REQUEST_FRAMES)
def test_control_message_parses_and_reencodes_byte_identical(name: str) -> None:
    expected = VECTORS[name].expected["envelope"]
    raw = expected["control_text"].encode()
    control = RequestControlMessage.from_json_bytes(raw)
    assert control.to_json_bytes() == raw
    assert control.connection_info.tcp().to_json() == expected["control"]["connection_info"]["info"]


@pytest.mark.parametrize("name", REQUEST_FRAMES)
def test_request_frame_reencodes_byte_identical(name: str) -> None:
    vector = VECTORS[name]
    expected = vector.expected
    control = RequestControlMessage.from_json_bytes(expected["envelope"]["control_text"].encode())
    payload = build_envelope(control, expected["envelope"]["body_value"])
    assert encode_request(expected["path"], expected["headers_text"].encode(), payload) == vector.bytes


def test_msgpack_request_body_is_the_named_map() -> None:
    body = VECTORS["request_frame_real_caller_msgpack"].expected["envelope"]["body_hex"]
    assert bytes.fromhex(body) == PayloadCodec.MSGPACK.encode(REQUEST_BODY)


def test_caller_sends_json_to_a_worker_that_advertises_no_codec() -> None:
    control = VECTORS["request_frame_real_caller_legacy"].expected["envelope"]["control"]
    assert control["payload_codec"] == "json"


# --- ACKs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ack_accepted", "ack_unknown_endpoint", "ack_oversize"])
def test_ack_decoder_reads_real_acks(name: str) -> None:
    vector = VECTORS[name]
    decoder = AckDecoder()
    decoder.feed(vector.bytes)
    assert list(decoder) == [vector.expected["text"].encode()]
    decoder.feed_eof()


def test_accepted_ack_is_byte_identical() -> None:
    assert encode_ack(b"") == VECTORS["ack_accepted"].bytes == b"\0\0\0\0"
    ack.check_ack(b"")


def test_unknown_endpoint_ack_is_byte_identical() -> None:
    vector = VECTORS["ack_unknown_endpoint"]
    assert encode_ack(ack.unknown_endpoint(vector.expected["path"])) == vector.bytes
    assert vector.expected["connection_stays_open"]
    with pytest.raises(WorkerUnavailable):
        ack.check_ack(vector.bytes[4:])


def test_frame_too_large_message_matches_dynamo() -> None:
    expected = VECTORS["ack_oversize"].expected
    error = FrameTooLarge(expected["declared_frame_size"], expected["max_message_size"])
    assert expected["text"].endswith(str(error))


def test_oversize_ack_gives_dynamos_reason_under_a_prefix_callers_act_on() -> None:
    """Dynamo answers an oversized frame with ``Read error: <reason>`` and then closes.

    A 1.6.1 caller takes that text as success (only ``Server unavailable:`` and
    ``Server overloaded:`` are rejections) and then waits for a stream that never
    comes, so the reference deliberately sends the same reason under
    ``Server unavailable: read error:``.  The reason itself is byte-identical.
    """
    vector = VECTORS["ack_oversize"]
    expected = vector.expected
    reason = str(FrameTooLarge(expected["declared_frame_size"], expected["max_message_size"]))
    assert expected["connection_closed"]
    assert vector.bytes == encode_ack(f"Read error: {reason}")
    assert ack.read_error(reason) == f"{ack.UNAVAILABLE_PREFIX} read error: {reason}"


# --- control frames a real caller sends ------------------------------------------------------


def test_stop_frame_is_byte_identical() -> None:
    vector = VECTORS["stop_real_caller"]
    assert CallerStream().send_cancel("stop") == two_part.encode(STOP) == vector.bytes
    assert vector.expected["header_text"] == '"stop"'


def test_kill_frame_after_consumer_dropped_is_byte_identical() -> None:
    vector = VECTORS["caller_drop_stream"]
    assert CallerStream().send_cancel("kill") == vector.bytes


def test_worker_stream_recognises_the_real_stop_and_kill() -> None:
    worker = WorkerStream("subject")
    events = worker.receive_data(VECTORS["stop_real_caller"].bytes + VECTORS["caller_drop_stream"].bytes)
    assert [getattr(event, "kind", None) for event in events] == ["stop", "kill"]


def test_real_caller_sends_nothing_after_the_sentinel_and_closes() -> None:
    vector = VECTORS["caller_after_sentinel"]
    assert vector.bytes == b""
    assert vector.expected["eof"] and vector.expected["eof_ms_after_sentinel"] < 1000


# --- discovery record --------------------------------------------------------------------------


def test_real_discovery_record_parses_and_reencodes_byte_identical() -> None:
    vector = VECTORS["discovery_record_real_worker"]
    expected = vector.expected["record"]
    record = InstanceRecord.from_json_bytes(vector.bytes)
    assert (record.namespace, record.component, record.endpoint) == ("conf", "worker", "generate")
    assert record.instance_id == expected["instance_id"]
    assert {record.transport_kind: record.transport_address} == expected["transport"]
    assert (record.device_type, record.request_plane_codec) == (expected["device_type"], "msgpack")
    assert record.to_json_bytes() == vector.bytes


def test_discovery_file_name_matches_dynamo(tmp_path: Path) -> None:
    vector = VECTORS["discovery_record_real_worker"]
    record = InstanceRecord.from_json_bytes(vector.bytes)
    assert record.key == vector.expected["key"]
    assert encode_key(record.key) == vector.expected["file_name"]
    assert FileDiscovery(tmp_path).path_of(record).name == vector.expected["file_name"]


def test_transport_path_matches_the_instance_path_rule() -> None:
    record = InstanceRecord.from_json_bytes(VECTORS["discovery_record_real_worker"].bytes)
    assert record.transport_address.split("/", 1)[1] == f"{record.instance_id:x}/conf/worker/generate"


# --- pcaps of a real 1.6.1 caller (tcpdump, Linux cooked v2) ------------------------------------


def pcap_streams(name: str) -> list[TcpStream]:
    return [stream for stream in tcp_streams(golden_file(name)) if stream.data]


def callhome_pair(name: str) -> tuple[TcpStream, TcpStream]:
    """The worker-to-caller and caller-to-worker directions of a pcap's call-home connection."""
    streams = tcp_streams(golden_file(name))
    worker = next(s for s in streams if b'"stream_type"' in s.data[:200])
    caller = next(s for s in streams if (s.src, s.dst) == (worker.dst, worker.src))
    return worker, caller


def test_pcap_stop_frame_is_byte_identical() -> None:
    _worker, caller = callhome_pair("c_stop.pcap")
    assert caller.data == CallerStream().send_cancel("stop")
    assert caller.data == load_vector("stop_real_caller").bytes


def test_pcap_worker_side_is_accepted_by_the_caller_stream() -> None:
    worker, _caller = callhome_pair("c_stop.pcap")
    stream = CallerStream(PayloadCodec.MSGPACK)
    events = list(stream.receive_data(worker.data))
    assert [type(event) for event in events] == [HandshakeReceived, PrologueReceived, ItemReceived, ItemReceived]
    assert stream.state is CallerState.STREAMING


def test_pcap_request_frame_matches_the_captured_vector_layout() -> None:
    request = next(s for s in pcap_streams("cancel.pcap") if s.data.startswith(b"\x00\x23"))
    decoder = RequestFrameDecoder()
    decoder.feed(request.data)
    (frame,) = list(decoder)
    golden = load_vector("request_frame_real_caller_msgpack").expected
    assert frame.path.decode().endswith("/conf/fake/generate")
    assert set(frame.headers()) == set(golden["headers"])
    envelope = parse_envelope(frame.payload)
    assert envelope.decode_body() == REQUEST_BODY
    assert envelope.control.to_json_bytes() == two_part.decode_all(frame.payload)[0].header


def test_pcap_ack_is_the_empty_ack() -> None:
    ack_stream = next(s for s in pcap_streams("cancel.pcap") if s.data == b"\0\0\0\0")
    assert ack_stream.data == encode_ack(b"")


def synthetic_ethernet_pcap(segments: list[tuple[int, int, bytes]]) -> bytes:
    """A classic pcap (Ethernet) of IPv4/TCP segments ``(seq, flags, payload)`` from 10.0.0.1:1 to 10.0.0.2:2."""
    records = []
    for index, (seq, flags, payload) in enumerate(segments):
        tcp = struct.pack(">HHIIBBHHH", 1, 2, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload
        ip = (
            struct.pack(
                ">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
            )
            + tcp
        )
        frame = b"\0" * 12 + b"\x08\x00" + ip
        records.append(struct.pack("<IIII", 1, index, len(frame), len(frame)) + frame)
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(records)


def test_pcap_reader_reassembles_out_of_order_and_duplicate_segments(tmp_path: Path) -> None:
    """The helper itself: an Ethernet capture with reordering and a retransmission."""
    path = tmp_path / "synthetic.pcap"
    syn, fin = 0x02, 0x11
    path.write_bytes(
        synthetic_ethernet_pcap(
            [(99, syn, b""), (105, 0x18, b"world"), (100, 0x18, b"hello"), (105, 0x18, b"world"), (110, fin, b"")]
        )
    )
    (stream,) = tcp_streams(path)
    assert (stream.src, stream.dst, stream.data) == (("10.0.0.1", 1), ("10.0.0.2", 2), b"helloworld")
    assert stream.fin_at is not None and stream.rst_at is None
