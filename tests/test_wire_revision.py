"""The judge speaks revision 0.7's layout when the profile is 0.7, checked against what 0.7.1 put on the wire.

The vectors are bytes observed from ai-dynamo-runtime 0.7.1 here, not output of the code under test:

* ``CAPTURED_0_7_FRAME``: the request frame its own caller sent to its own worker (echo endpoint, body
  ``{"probe": 1}``), captured by a loopback relay between the two; the worker answered the ACK ``00000000``;
* the flat file name its worker wrote for namespace ``ns-1 %x``, component ``Comp_2/y``, endpoint ``ep-3:z``.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import time

import pytest

from fixtures.judge.discovery import FileDiscovery, InstanceRecord
from fixtures.judge.envelope import parse_envelope
from fixtures.judge.request_frame import RequestFrame, RequestFrameReader, decode_request
from fixtures.judge.wire_revision import LATEST, REVISION_0_7, REVISION_0_8, RecordKeys, layout_for
from fixtures.probes.callhome_recorder import CallHomeRecorder
from fixtures.probes.probe_worker import ProbeWorker
from fixtures.probes.wire_client import RawRequestConnection, WireClient

CAPTURED_0_7_FRAME = bytes.fromhex(
    "00046563686f000001650000000000000142000000000000000b00000000000000007b226964223a2235323261386565382d616365322d343733382d386131332d653731303831656639636666222c22726571756573745f74797065223a2273696e676c655f696e222c22726573706f6e73655f74797065223a226d616e795f6f7574222c22636f6e6e656374696f6e5f696e666f223a7b227472616e73706f7274223a227463705f736572766572222c22696e666f223a227b5c22616464726573735c223a5c223139322e302e322e323a33373730355c222c5c227375626a6563745c223a5c2239613964656561652d356362382d346638302d393837642d3364326430616432613465325c222c5c22636f6e746578745c223a5c2235323261386565382d616365322d343733382d386131332d6537313038316566396366665c222c5c2273747265616d5f747970655c223a5c22726573706f6e73655c227d227d7d7b2270726f6265223a317d"
)
CAPTURED_PATH = b"echo"
CAPTURED_PAYLOAD_LEN = 0x165  # the u32 right after the path
OBSERVED_FLAT_NAME = "ns-1__x_comp_2_y_ep-3_z_c13043c468b01de3"


def test_layout_follows_the_profile():
    assert layout_for("0.7") is REVISION_0_7
    for revision in ("0.8", "1.3", "1.4", "1.6", "2.0"):
        assert layout_for(revision) is REVISION_0_8
    assert layout_for(None) is LATEST is REVISION_0_8
    with pytest.raises(ValueError, match="predates"):
        layout_for("0.6")
    with pytest.raises(ValueError, match="dotted numbers"):
        layout_for("latest")


def test_captured_0_7_frame_has_no_headers_block():
    """As observed: u16 path_len | path | u32 payload_len | payload, and the payload is the whole envelope."""
    assert CAPTURED_0_7_FRAME[:2] == struct.pack(">H", 4) and CAPTURED_0_7_FRAME[2:6] == CAPTURED_PATH
    assert struct.unpack_from(">I", CAPTURED_0_7_FRAME, 6)[0] == CAPTURED_PAYLOAD_LEN == len(CAPTURED_0_7_FRAME) - 10
    frame = decode_request(CAPTURED_0_7_FRAME, headers_block=False)
    assert (frame.path, frame.headers_raw, frame.headers_block) == (CAPTURED_PATH, b"", False)
    assert frame.wire_size == len(CAPTURED_0_7_FRAME)
    envelope = parse_envelope(frame.payload)
    assert envelope.decode_body() == {"probe": 1}
    assert envelope.callhome().context == envelope.control.id


def test_captured_0_7_frame_decodes_one_byte_at_a_time():
    reader = REVISION_0_7.request_reader()
    frames: list[RequestFrame] = []
    for index in range(len(CAPTURED_0_7_FRAME)):
        reader.feed(CAPTURED_0_7_FRAME[index : index + 1])
        frames.extend(reader)
    assert len(frames) == 1 and frames[0].payload == CAPTURED_0_7_FRAME[10:]
    reader.feed_eof()


def test_the_0_8_reader_does_not_take_a_0_7_frame_for_its_own():
    """Read with a headers block, the payload length's first half is taken as headers_len: another frame entirely."""
    reader = RequestFrameReader(max_frame_size=None)
    reader.feed(CAPTURED_0_7_FRAME)
    assert reader.next_frame() is None, "a 0.8 reader must not find the captured request in these bytes"


def test_0_7_frame_encodes_as_captured():
    """Encoding the captured path and payload in the 0.7 layout gives back the captured bytes; headers are left out."""
    payload = CAPTURED_0_7_FRAME[10:]
    headers = {"request-id": "x", "x-endpoint-path": "echo"}
    assert REVISION_0_7.encode_request("echo", headers, payload) == CAPTURED_0_7_FRAME
    assert REVISION_0_7.encode_request(b"echo", None, payload) == CAPTURED_0_7_FRAME
    with pytest.raises(ValueError, match="raw header bytes"):
        REVISION_0_7.encode_request("echo", b"notjs", payload)
    with_headers = REVISION_0_8.encode_request("echo", None, payload)
    assert with_headers == CAPTURED_0_7_FRAME[:6] + b"\x00\x00" + CAPTURED_0_7_FRAME[6:]


def test_length_fields_prefix_per_layout():
    payload = CAPTURED_0_7_FRAME[10:]
    assert REVISION_0_7.through_length_fields(CAPTURED_0_7_FRAME) == CAPTURED_0_7_FRAME[:10]
    frame = REVISION_0_8.encode_request("echo", {"k": "v"}, payload)
    assert REVISION_0_8.through_length_fields(frame) == frame[: 2 + 4 + 2 + 9 + 4]


def test_0_7_record_key_is_the_observed_flat_name():
    name = RecordKeys.FLAT.file_name("ns-1 %x", "Comp_2/y", "ep-3:z", 0xC13043C468B01DE3)
    assert name == OBSERVED_FLAT_NAME
    assert RecordKeys.PERCENT_PATH.file_name("ns", "c", "e", 0x1F) == "ns%2Fc%2Fe%2F1f"


def _record() -> InstanceRecord:
    return InstanceRecord("ns-1 %x", "Comp_2/y", "ep-3:z", 0xC13043C468B01DE3, "tcp", "127.0.0.1:1/ep-3:z", None, None)


def test_0_7_store_writes_flat_keys_and_keeps_records_that_were_never_refreshed(tmp_path):
    """0.7.1 never refreshes a record's mtime: its store has no TTL, while the 0.8 store drops such a record."""
    store = FileDiscovery(tmp_path, layout=REVISION_0_7)
    path = store.put(_record())
    assert path.name == OBSERVED_FLAT_NAME
    an_hour_ago = time.time() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))
    assert store.records() == [_record()]
    newer = FileDiscovery(tmp_path / "other", layout=REVISION_0_8)
    stale = newer.put(_record())
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert newer.records() == []


async def test_wire_client_of_profile_0_7_sends_no_headers_block():
    """Over a real socket: the bytes a 0.7 wire client sends are path and payload, nothing between."""
    received = bytearray()
    got_frame = asyncio.Event()

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = REVISION_0_7.request_reader()
        while chunk := await reader.read(65536):
            received.extend(chunk)
            decoder.feed(chunk)
            if decoder.next_frame() is not None:
                writer.write(b"\x00\x00\x00\x00")
                await writer.drain()
                got_frame.set()
        writer.close()

    server = await asyncio.start_server(worker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    recorder = CallHomeRecorder()
    await recorder.start()
    client = WireClient(recorder, layout=REVISION_0_7)
    record = InstanceRecord("ns", "c", "echo", 7, "tcp", f"127.0.0.1:{port}/echo", None, None)
    try:
        probe = client.prepare(record, {"probe": 1})
        probe.session.cancel()
        assert probe.headers, "a prepared request has headers; the 0.7 frame must leave them out"
        connection = await RawRequestConnection.to(record)
        try:
            await connection.send(WireClient.tcp_frame(record, probe))
            assert await connection.read_ack(5.0) == b""
        finally:
            connection.close()
        await asyncio.wait_for(got_frame.wait(), 5.0)
    finally:
        server.close()
        await recorder.close()
        await client.close()
    expected = struct.pack(">H", 4) + b"echo" + struct.pack(">I", len(probe.payload)) + probe.payload
    assert bytes(received) == expected
    assert json.loads(parse_envelope(bytes(received[10:])).control.to_json_bytes())["id"] == probe.request_id


def test_0_7_probe_names_avoid_the_flat_keys_separator():
    """0.7.1's caller found no instance of ``probe.w1.error_item`` nor ``probe.w_1.echo`` (observed): the judge of 0.7
    names its probe endpoints with ``-`` instead of ``_``; later revisions keep the names as they are."""
    assert RecordKeys.FLAT.usable_name("error_item") == "error-item"
    assert RecordKeys.FLAT.usable_name("echo") == "echo"
    assert RecordKeys.PERCENT_PATH.usable_name("error_item") == "error_item"


async def test_a_0_7_probe_worker_publishes_flat_records_with_usable_names(tmp_path):
    """Records at flat keys, names without ``_``, and a request for such a name reaches its behaviour."""
    worker = ProbeWorker(FileDiscovery(tmp_path, layout=REVISION_0_7), namespace="probe", component="w1")
    await worker.start()
    try:
        record = worker.record("error_item")
        assert record.endpoint == "error-item" and worker.endpoint("error_item") == "probe.w1.error-item"
        names = {path.name for path in worker.discovery.record_files()}
        assert f"probe_w1_error-item_{worker.instance_id:x}" in names
        assert not any(name.startswith("probe%2F") for name in names)
        assert worker.behaviour_of(record.endpoint_id) == "error_item"
    finally:
        await worker.close()
