"""The implementation as a worker on the TCP request plane, probed byte by byte."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fixtures.judge.codecs import PayloadCodec
from fixtures.judge.control import ConnectionInfo
from fixtures.judge.discovery import InstanceRecord
from fixtures.judge.request_frame import U32
from fixtures.judge.routing import parse_tcp_transport
from fixtures.judge.words import StreamType
from fixtures.probes.wire_client import (
    ProbeRequest,
    ProbeResult,
    RawRequestConnection,
    WireClient,
    read_until_sentinel_then_close,
)
from fixtures.roles import WorkerUnderTest
from fixtures.timeouts import NOT_RUN_WINDOW_S

pytestmark = pytest.mark.planes("tcp")

UNAVAILABLE = b"Server unavailable:"
# The ACK an unknown endpoint gets, per protocol revision (each its own requirement).
UNKNOWN_ENDPOINT_ACKS = [
    pytest.param(UNAVAILABLE, marks=pytest.mark.req("TCP-UNKNOWN-ENDPOINT"), id="rev1.6"),
    pytest.param(b"Unknown endpoint:", marks=pytest.mark.req("TCP-UNKNOWN-ENDPOINT-LEGACY"), id="rev0.7"),
]


async def _stream_values(wire_client: WireClient, probe: ProbeRequest, timeout: float = 10.0) -> list[Any]:
    """Values of the stream the worker calls home with for ``probe`` (after an empty ACK)."""
    session = await asyncio.wait_for(probe.session, timeout)
    transcript = await read_until_sentinel_then_close(session, timeout)
    return ProbeResult(b"", transcript, probe.codec).values()


@pytest.mark.req("TCP-ACK-EMPTY", "TCP-ROUTE")
async def test_accepted_request_gets_an_empty_ack_and_a_stream(impl_worker: WorkerUnderTest, wire_client: WireClient):
    result = await wire_client.call(impl_worker.record("echo"), {"hello": "world", "n": 1})
    assert result.ack == b"", f"ACK text {result.ack!r}"
    assert result.values() == [{"hello": "world", "n": 1}]


@pytest.mark.req("TCP-ROUTE")
async def test_routing_ignores_the_x_endpoint_path_header(impl_worker: WorkerUnderTest, wire_client: WireClient):
    """The frame path says echo, the header names another endpoint: echo must answer."""
    echo, stream = impl_worker.record("echo"), impl_worker.record("stream")
    probe = wire_client.prepare(echo, {"count": 7})
    probe.headers["x-endpoint-path"] = parse_tcp_transport(stream.transport_address).path
    frame = wire_client.frame(parse_tcp_transport(echo.transport_address).path, probe.headers, probe.payload)
    connection = await RawRequestConnection.to(echo)
    try:
        await connection.send(frame)
        assert await connection.read_ack(5.0) == b""
    finally:
        connection.close()
    assert await _stream_values(wire_client, probe) == [{"count": 7}]


@pytest.mark.req("TCP-ACK-ORDER")
@pytest.mark.parametrize("unknown_ack", UNKNOWN_ENDPOINT_ACKS)
async def test_pipelined_requests_get_one_ack_each_in_order(
    impl_worker: WorkerUnderTest, wire_client: WireClient, unknown_ack: bytes
):
    record = impl_worker.record("echo")
    good_path = parse_tcp_transport(record.transport_address).path
    plan = ["good" if i % 3 else "unknown" for i in range(24)]
    probes, frames = [], []
    for i, kind in enumerate(plan):
        probe = wire_client.prepare(record, {"i": i})
        path = good_path if kind == "good" else f"{good_path}-missing-{i}"
        frames.append(wire_client.frame(path, probe.headers, probe.payload))
        probes.append(probe)
    connection = await RawRequestConnection.to(record)
    try:
        await connection.send(b"".join(frames))
        acks = [await connection.read_ack(5.0) for _ in frames]
    finally:
        connection.close()
    for kind, ack in zip(plan, acks, strict=True):
        if kind == "good":
            assert ack == b"", f"accepted request got ACK {ack!r}"
        else:
            assert ack is not None and ack.startswith(unknown_ack), f"unknown endpoint got ACK {ack!r}"
    for i, (kind, probe) in enumerate(zip(plan, probes, strict=True)):
        if kind == "good":
            assert await _stream_values(wire_client, probe) == [{"i": i}], f"request {i} got another's stream"
        else:
            probe.session.cancel()


@pytest.mark.parametrize("unknown_ack", UNKNOWN_ENDPOINT_ACKS)
async def test_unknown_endpoint_leaves_the_connection_usable(
    impl_worker: WorkerUnderTest, wire_client: WireClient, unknown_ack: bytes
):
    record = impl_worker.record("echo")
    path = parse_tcp_transport(record.transport_address).path
    missing = wire_client.prepare(record, {"n": 0})
    missing.session.cancel()
    connection = await RawRequestConnection.to(record)
    try:
        await connection.send(
            wire_client.frame(path.rsplit("/", 1)[0] + "/no_such_endpoint", missing.headers, missing.payload)
        )
        ack = await connection.read_ack(5.0)
        assert ack is not None and ack.startswith(unknown_ack), f"ACK {ack!r}"
        probe = wire_client.prepare(record, {"n": 1})
        await connection.send(wire_client.frame(path, probe.headers, probe.payload))
        assert await connection.read_ack(5.0) == b""
    finally:
        connection.close()
    assert await _stream_values(wire_client, probe) == [{"n": 1}]


@pytest.mark.robustness
@pytest.mark.req("TCP-INVALID-PATH")
async def test_non_utf8_path_is_refused_with_server_unavailable(impl_worker: WorkerUnderTest, wire_client: WireClient):
    record = impl_worker.record("echo")
    probe = wire_client.prepare(record, {"n": 0})
    probe.session.cancel()
    connection = await RawRequestConnection.to(record)
    try:
        await connection.send(wire_client.frame(b"\xff\xfe/not-utf8", probe.headers, probe.payload))
        ack = await connection.read_ack(5.0)
        follow_up = wire_client.prepare(record, {"n": 2})
        await connection.send(WireClient.tcp_frame(record, follow_up))
        assert await connection.read_ack(5.0) == b"", "connection unusable after a bad path"
    finally:
        connection.close()
    assert await _stream_values(wire_client, follow_up) == [{"n": 2}]
    assert ack is not None and ack.startswith(UNAVAILABLE), f"non-UTF-8 path got ACK {ack!r}"


@pytest.mark.req("TCP-FRAME")
async def test_frame_split_into_single_bytes_is_decoded(impl_worker: WorkerUnderTest, wire_client: WireClient):
    await _single_bytes(impl_worker, wire_client)


@pytest.mark.req("TCP-FRAME-NO-HEADERS")
async def test_frame_without_headers_split_into_single_bytes_is_decoded(
    impl_worker: WorkerUnderTest, wire_client: WireClient
):
    await _single_bytes(impl_worker, wire_client)


async def _single_bytes(impl_worker: WorkerUnderTest, wire_client: WireClient) -> None:
    """The session's frame layout (its protocol revision's), one byte per segment at first."""
    record = impl_worker.record("echo")
    probe = wire_client.prepare(record, {"split": True})
    frame = WireClient.tcp_frame(record, probe)
    connection = await RawRequestConnection.to(record)
    connection.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for index in range(len(frame)):
            await connection.send(frame[index : index + 1])
            if index < 64:
                await asyncio.sleep(0.001)  # keep the first bytes in separate segments
        assert await connection.read_ack(5.0) == b""
    finally:
        connection.close()
    assert await _stream_values(wire_client, probe) == [{"split": True}]


@pytest.mark.req("TCP-HEADERS-LENIENT")
async def test_malformed_headers_do_not_fail_the_request(impl_worker: WorkerUnderTest, wire_client: WireClient):
    record = impl_worker.record("echo")
    probe = wire_client.prepare(record, {"headers": "bad"})
    frame = wire_client.frame(parse_tcp_transport(record.transport_address).path, b"notjs", probe.payload)
    connection = await RawRequestConnection.to(record)
    try:
        await connection.send(frame)
        assert await connection.read_ack(5.0) == b""
    finally:
        connection.close()
    assert await _stream_values(wire_client, probe) == [{"headers": "bad"}]


@pytest.mark.req("CODEC-JSON")
@pytest.mark.parametrize("legacy_control", [False, True], ids=["payload_codec_json", "no_payload_codec"])
async def test_json_requests_are_answered_in_json(
    impl_worker: WorkerUnderTest, wire_client: WireClient, legacy_control: bool
):
    result = await wire_client.call(
        impl_worker.record("stream"), {"count": 3}, codec=PayloadCodec.JSON, legacy_control=legacy_control
    )
    assert result.ack == b""
    assert result.transcript is not None
    assert not result.transcript.violations(PayloadCodec.JSON), "items are not JSON wrappers"
    assert [v["seq"] for v in result.values()] == [0, 1, 2]


@pytest.mark.req("CODEC-MSGPACK")
async def test_msgpack_requests_are_answered_in_msgpack(impl_worker: WorkerUnderTest, wire_client: WireClient):
    record = impl_worker.record("stream")
    if record.request_plane_codec != "msgpack":
        pytest.fail(f"worker advertises {record.request_plane_codec!r}; the default codec is msgpack")
    result = await wire_client.call(record, {"count": 3, "size": 5}, codec=PayloadCodec.MSGPACK)
    assert result.transcript is not None
    assert not result.transcript.violations(PayloadCodec.MSGPACK), "items are not msgpack wrappers"
    assert result.values() == [{"seq": i, "pad": "xxxxx"} for i in range(3)]


# A context that differs from the request id in each way a wrong comparison could miss (the id is "m<uuid hex>").
OTHER_CONTEXTS = {
    "sorts-before": lambda request_id: "a-request",
    "sorts-after": lambda request_id: "z-request",
    "extends-the-id": lambda request_id: request_id + "-2",
    "prefix-of-the-id": lambda request_id: request_id[:-1],
    "case-only": lambda request_id: request_id.upper(),
}


@pytest.mark.req("ENV-CONTEXT-CHECK")
async def test_no_call_home_when_context_or_stream_type_is_wrong(impl_worker: WorkerUnderTest, wire_client: WireClient):
    """Each way the context can differ from the request id, and the requirement's other half: a ``request`` stream
    type (a many-in caller's stream is not this call's response stream).  All are sent at once and watched over one
    window, which starts once every one of them is acknowledged: a worker that runs one calls home within it."""
    record = impl_worker.record("echo")
    sessions: dict[str, asyncio.Future[Any]] = {}
    probes = []
    for other, context_of in OTHER_CONTEXTS.items():
        request_id = "m" + uuid.uuid4().hex
        probe = wire_client.prepare(record, {"n": 1}, request_id=request_id, context=context_of(request_id))
        sessions[f"context {other}"] = probe.session
        probes.append(probe)
    request_id = str(uuid.uuid4())
    info, sessions["stream type request"] = wire_client.recorder.expect(request_id)
    wrong = ConnectionInfo.for_tcp(dataclasses.replace(info.tcp(), stream_type=StreamType.REQUEST.value))
    probes.append(wire_client.prepare(record, {"n": 1}, request_id=request_id, connection_info=wrong))
    acks = await asyncio.gather(*(wire_client.deliver(record, probe) for probe in probes))
    assert acks == [b""] * len(probes), f"ACKs {acks}"
    await asyncio.wait(sessions.values(), timeout=NOT_RUN_WINDOW_S)
    called_home = [case for case, session in sessions.items() if session.done() and not session.cancelled()]
    for session in [*sessions.values(), *(probe.session for probe in probes)]:
        session.cancel()
    assert not called_home, f"called home although the request was not its own: {called_home}"


# --- size limit, truncation, isolation ------------------------------------------------

LIMIT = 1024 * 1024


@pytest.fixture
async def limited_worker(shared_worker_with_settings: Callable[..., Awaitable[WorkerUnderTest]]) -> WorkerUnderTest:
    return await shared_worker_with_settings(env={"DYN_TCP_MAX_MESSAGE_SIZE": str(LIMIT)}, endpoints=["sink", "echo"])


# The limit covers the whole frame: it is reached through the payload, or through large headers
# with a payload that alone fits.  Both must be judged the same.  A frame without a headers block
# (revision 0.7) reaches it through the payload only: its own requirement.
GROWN_BY = {"payload": 0, "headers": 60_000}  # bytes of padding header (headers_len is a u16)
NO_HEADERS = pytest.mark.parametrize("grown_by", ["payload"])


def _sink_frame_of_size(
    wire_client: WireClient, record: InstanceRecord, total: int, header_pad: int = 0
) -> tuple[ProbeRequest, bytes, int]:
    """A sink request whose whole frame is exactly ``total`` bytes (``header_pad`` of them in a header)."""
    blob_len = total // 2
    for _ in range(4):
        probe = wire_client.prepare(record, {"blob": "b" * blob_len})
        if header_pad:
            probe.headers["x-padding"] = "p" * header_pad
        size = len(WireClient.tcp_frame(record, probe))
        probe.session.cancel()
        blob_len += total - size
    probe = wire_client.prepare(record, {"blob": "b" * blob_len})
    if header_pad:
        probe.headers["x-padding"] = "p" * header_pad
    frame = WireClient.tcp_frame(record, probe)
    assert len(frame) == total
    return probe, frame, blob_len


@pytest.mark.req("TCP-SIZE-AT-LIMIT")
@pytest.mark.parametrize("grown_by", GROWN_BY)
async def test_frame_exactly_at_the_limit_is_accepted(
    limited_worker: WorkerUnderTest, wire_client: WireClient, grown_by: str
):
    await _at_the_limit(limited_worker, wire_client, grown_by)


@pytest.mark.req("TCP-SIZE-AT-LIMIT-NO-HEADERS")
@NO_HEADERS
async def test_frame_without_headers_exactly_at_the_limit_is_accepted(
    limited_worker: WorkerUnderTest, wire_client: WireClient, grown_by: str
):
    await _at_the_limit(limited_worker, wire_client, grown_by)


async def _at_the_limit(limited_worker: WorkerUnderTest, wire_client: WireClient, grown_by: str) -> None:
    record = limited_worker.record("sink")
    probe, frame, blob_len = _sink_frame_of_size(wire_client, record, LIMIT, GROWN_BY[grown_by])
    connection = await RawRequestConnection.to(record)
    try:
        await connection.send(frame)
        assert await connection.read_ack(10.0) == b""
    finally:
        connection.close()
    values = await _stream_values(wire_client, probe)
    assert values and values[0]["size"] == blob_len


@pytest.mark.robustness
@pytest.mark.req("TCP-SIZE-LIMIT")
@pytest.mark.parametrize("grown_by", GROWN_BY)
async def test_oversized_frame_is_refused_from_its_length_fields(
    limited_worker: WorkerUnderTest, wire_client: WireClient, grown_by: str
):
    """Only the length fields are sent: the refusal must not wait for the payload."""
    await _refused_from_length_fields(limited_worker, wire_client, grown_by)


@pytest.mark.robustness
@pytest.mark.req("TCP-SIZE-LIMIT-NO-HEADERS")
@NO_HEADERS
async def test_oversized_frame_without_headers_is_refused_from_its_length_fields(
    limited_worker: WorkerUnderTest, wire_client: WireClient, grown_by: str
):
    await _refused_from_length_fields(limited_worker, wire_client, grown_by)


async def _refused_from_length_fields(limited_worker: WorkerUnderTest, wire_client: WireClient, grown_by: str) -> None:
    record = limited_worker.record("sink")
    probe, frame, _ = _sink_frame_of_size(wire_client, record, LIMIT + 1, GROWN_BY[grown_by])
    if grown_by == "headers":
        assert len(probe.payload) + 8 < LIMIT, "the payload alone must fit: only the headers take it over"
    prefix = wire_client.layout.through_length_fields(frame)
    assert U32.unpack_from(prefix, len(prefix) - 4)[0] == len(probe.payload)
    connection = await RawRequestConnection.to(record)
    try:
        await connection.send(prefix)
        ack = await connection.read_ack(5.0)
        closed = await connection.wait_closed_by_peer(5.0)
    finally:
        connection.close()
    assert ack, f"expected a non-empty ACK naming the reason, got {ack!r}"
    assert closed, "the worker kept the connection open after an oversized frame"
    # No window for a call-home here: the call-home address is in the payload, and no byte of it was sent.
    probe.session.cancel()


@pytest.mark.robustness
@pytest.mark.req("TCP-TRUNCATED")
async def test_truncated_frame_is_dropped_and_the_connection_closed(
    impl_worker: WorkerUnderTest, wire_client: WireClient
):
    record = impl_worker.record("echo")
    probe = wire_client.prepare(record, {"truncated": True})
    frame = WireClient.tcp_frame(record, probe)
    connection = await RawRequestConnection.to(record)
    try:
        await connection.send(frame[: len(frame) - 5])
        connection.writer.write_eof()
        closed = await connection.wait_closed_by_peer(5.0)
        ack = connection.acks.next_ack()
    finally:
        connection.close()
    assert closed, "the worker did not close a connection that ended mid-frame"
    assert ack is None, f"a truncated frame was acknowledged: {ack!r}"
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(probe.session), NOT_RUN_WINDOW_S)


async def _send_and_drop(record: InstanceRecord, data: bytes) -> None:
    """Send ``data`` and hold the connection until the worker answers or closes it, at most ``NOT_RUN_WINDOW_S``
    (by then it has read the bytes: loopback, milliseconds), so that the bystander's check comes after them."""
    connection = await RawRequestConnection.to(record)
    try:
        await connection.send(data)
        with contextlib.suppress(TimeoutError):
            await connection.read_ack(NOT_RUN_WINDOW_S)
    finally:
        connection.close()


@pytest.mark.robustness
@pytest.mark.req("TCP-ISOLATION", "RS-ITEMS")
async def test_bad_connections_do_not_disturb_a_concurrent_stream(
    impl_worker: WorkerUnderTest, wire_client: WireClient
):
    record = impl_worker.record("stream")
    probe = wire_client.prepare(record, {"count": 3000, "size": 32})
    good_stream = asyncio.ensure_future(_stream_values(wire_client, probe, timeout=30.0))
    assert await wire_client.deliver(record, probe) == b""
    oversize = wire_client.frame("x", {}, b"")[:-4] + U32.pack(0xFFFFFFF0)  # declares ~4 GiB
    truncated = WireClient.tcp_frame(record, wire_client.prepare(record, {}))[:40]
    garbage = bytes(range(256)) * 16
    echo = impl_worker.record("echo")
    bystander = await RawRequestConnection.to(echo)  # a well-behaved connection open all along
    await asyncio.gather(
        _send_and_drop(record, garbage),
        _send_and_drop(record, truncated),
        _send_and_drop(record, oversize),
        _send_and_drop(record, b"GET / HTTP/1.1\r\nHost: worker\r\n\r\n"),
    )
    late = wire_client.prepare(echo, {"bystander": True})
    try:
        await bystander.send(WireClient.tcp_frame(echo, late))
        assert await bystander.read_ack(5.0) == b"", "a connection open during the bad ones was closed or refused"
    finally:
        bystander.close()
    assert await _stream_values(wire_client, late) == [{"bystander": True}]
    values = await good_stream
    assert [v["seq"] for v in values] == list(range(3000)), "the concurrent stream lost, duplicated or reordered items"
    after = await wire_client.call(impl_worker.record("echo"), {"still": "alive"})
    assert after.values() == [{"still": "alive"}], "the worker stopped serving after bad connections"


# Between the requests of the overload test, so that each reaches the worker before the next, in order: the next
# goes as soon as the previous one's ACK is in (it has arrived), or after this long if the worker holds that ACK.
ARRIVAL_GAP_S = 0.1
# How long a killed stream of the overload test is read for its end before the worker is stopped: a worker ends
# it at once (RS-KILL); one that does not is only stopped later, its verdict here does not depend on it.
KILLED_STREAM_END_S = 2.0


@pytest.mark.req("TCP-OVERLOAD")
async def test_worker_at_capacity_refuses_at_once(
    impl_worker_factory: Callable[..., Awaitable[WorkerUnderTest]], wire_client: WireClient
):
    """Pool of one, queue of one: the third and fourth concurrent requests find no room.

    One connection per request, sent in order: the worker's capacity is what is judged, not a per-connection
    cap a worker may also have (ROB-DOS-ADMISSION-FAIR), which would refuse the same requests on one connection.
    """
    worker = await impl_worker_factory(
        env={"DYN_TCP_WORKER_POOL_SIZE": "1", "DYN_TCP_WORK_QUEUE_SIZE": "1"}, endpoints=["slow"]
    )
    record = worker.record("slow")
    probes = [wire_client.prepare(record, {"tag": f"overload-{i}", "interval": 0.05, "count": 200}) for i in range(4)]
    connections = [await RawRequestConnection.to(record) for _ in probes]
    try:
        reads = []
        for connection, probe in zip(connections, probes, strict=True):
            await connection.send(WireClient.tcp_frame(record, probe))
            reads.append(asyncio.ensure_future(connection.read_ack(5.0)))
            await asyncio.wait({reads[-1]}, timeout=ARRIVAL_GAP_S)  # its ACK says it arrived; else the gap does
        acks = await asyncio.gather(*reads)
    finally:
        for connection in connections:
            connection.close()
    for probe, ack in zip(probes, acks, strict=True):
        if ack != b"":
            probe.session.cancel()
    try:
        assert acks[0] == b"", f"the first request found no room: {acks}"
        assert any(ack and ack.startswith(b"Server overloaded:") for ack in acks[2:]), f"no overload ACK: {acks}"
    finally:
        # Every accepted stream is killed (the queued one calls home once the first ends) and read to its end: none
        # is left for the worker's shutdown to wait out (its drain waited for a handler still taking the kill).
        for probe, ack in zip(probes, acks, strict=True):
            if ack == b"":
                session = await asyncio.wait_for(asyncio.shield(probe.session), 10.0)
                await session.send_kill()
                await session.read_to_end(KILLED_STREAM_END_S)
