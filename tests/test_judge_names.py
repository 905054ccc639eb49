"""The judge's names and addresses, discovery records, GOAWAY and RST helper against captured evidence."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from fixtures.golden import load_vectors
from fixtures.judge.discovery import FileDiscovery, InstanceRecord, decode_key, encode_key
from fixtures.judge.errors import WireError
from fixtures.judge.http2 import encode_goaway
from fixtures.judge.routing import (
    EndpointId,
    http_url,
    instance_path,
    nats_service_name,
    nats_subject,
    parse_callhome_address,
    parse_tcp_transport,
    slugify,
    tcp_transport,
)
from fixtures.judge.sockets import reset_connection

VECTORS = load_vectors("1.6.1")


def test_captured_discovery_record():
    vector = VECTORS["discovery_record_real_worker"]
    record = InstanceRecord.from_json_bytes(vector.bytes)
    assert record.to_json_bytes() == vector.bytes, "field order as 1.6.1 writes it"
    assert record.key == vector.expected["key"]
    assert encode_key(record.key) == vector.expected["file_name"]
    assert decode_key(vector.expected["file_name"]) == record.key
    target = parse_tcp_transport(record.transport_address)
    assert target.path == instance_path(record.endpoint_id, record.instance_id)
    assert tcp_transport(target.host, target.port, target.path) == record.transport_address
    assert record.plane == "tcp" and record.request_plane_codec == "msgpack"


def test_key_escaping_follows_non_alphanumeric():
    """http2-nats §4.3, experiment EXP-9: ``-``, ``_`` and ``.`` are escaped too."""
    assert (
        encode_key("my-ns/back_end/gen-erate/73da89893ea5039c")
        == "my%2Dns%2Fback%5Fend%2Fgen%2Derate%2F73da89893ea5039c"
    )
    assert encode_key("a.b~c é") == "a%2Eb%7Ec%20%C3%A9"


def test_instance_path_escapes_percent_then_slash():
    assert instance_path(EndpointId("n%s", "c/d", "e"), 0xE3CD0522264BE7B1) == "e3cd0522264be7b1/n%25s/c%2Fd/e"


def test_nats_and_http_names():
    endpoint = EndpointId("testns", "backend", "generate")
    assert nats_subject(endpoint, 0x9168A7BFDCD15423) == "testns_backend.generate-9168a7bfdcd15423"
    assert nats_service_name(endpoint) == "testns_backend"
    assert slugify("_My.Ns_x") == "my_ns_x"
    assert http_url("127.0.0.1", 45145, "generate") == "http://127.0.0.1:45145/v1/rpc/generate"
    assert http_url("::1", 1, "g") == "http://[::1]:1/v1/rpc/g"


@pytest.mark.parametrize(
    "text", ["invalid/x", "localhost:1/x", "127.0.0.1/x", "127.0.0.1:0/x", "127.0.0.1:1", "::1:5/x"]
)
def test_tcp_transports_that_are_refused(text: str):
    with pytest.raises(ValueError):
        parse_tcp_transport(text)


def test_tcp_transport_forms():
    assert parse_tcp_transport("tcp://[::1]:7/a/b").host == "::1"
    assert parse_tcp_transport("127.0.0.1:7/a/b").path == "a/b"
    assert parse_callhome_address("[::1]:39525") == ("::1", 39525)
    assert parse_callhome_address("::1:39525") == ("::1", 39525), "how Dynamo 1.2.x wrote IPv6"
    assert parse_callhome_address("192.0.2.2:44901") == ("192.0.2.2", 44901)


def test_file_store_round_trip_and_liveness(tmp_path: Path):
    store = FileDiscovery(tmp_path)
    record = InstanceRecord("ns", "comp", "gen", 42, "nats_tcp", "ns_comp.gen-2a", "cpu", None)
    path = store.put(record)
    assert path.name == "ns%2Fcomp%2Fgen%2F2a" and not list(store.bucket.glob(".tmp_*"))
    assert store.records(EndpointId("ns", "comp", "gen")) == [record]
    assert store.records(EndpointId("ns", "comp", "ge")) == [], "an exact endpoint, not a key prefix"
    stale = time.time() - 11
    os.utime(path, (stale, stale))
    assert store.records() == []
    store.touch(record)
    assert store.records() == [record]
    store.delete(record)
    store.touch(record)
    assert store.records() == [record], "touch re-creates a record a peer deleted"


def test_a_malformed_record_is_an_error_not_a_skip(tmp_path: Path):
    store = FileDiscovery(tmp_path)
    store.bucket.mkdir(parents=True)
    (store.bucket / "bad").write_text('{"type":"Endpoint","namespace":"n"}')
    with pytest.raises(WireError, match="discovery file bad"):
        store.records()


def test_records_ignore_unknown_fields_and_accept_a_missing_device_type():
    raw = (
        b'{"type":"Endpoint","component":"c","endpoint":"e","namespace":"n",'
        b'"instance_id":1,"transport":{"http":"u"},"new":1}'
    )
    record = InstanceRecord.from_json_bytes(raw)
    assert record.device_type is None and record.request_plane_codec is None and record.plane == "http"
    for bad in (raw.replace(b'"instance_id":1', b'"instance_id":-1'), raw.replace(b'"Endpoint"', b'"Model"')):
        with pytest.raises(WireError):
            InstanceRecord.from_json_bytes(bad)


def test_goaway_layout():
    """RFC 9113 §6.8: 9-byte header (length 8 + debug, type 7, flags 0, stream 0), last stream id, error code."""
    assert encode_goaway(5).hex() == "000008" + "07" + "00" + "00000000" + "00000005" + "00000000"
    assert encode_goaway(3, 1, b"bye")[:3] == (11).to_bytes(3, "big")
    with pytest.raises(ValueError):
        encode_goaway(1 << 31)


async def test_reset_connection_sends_an_rst():
    accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        reset_connection((await asyncio.wait_for(accepted, 5.0)).transport)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), 5.0)
    finally:
        writer.close()
        server.close()
