"""The reference's denial-of-service limits: TCP frame budgets and deadlines, admission per connection,
bounded body decoding, the call-home write deadline and allow-list, and the settings behind them."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import socket
import tracemalloc
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest

from reference_impl.config import ConfigError
from reference_impl.discovery.file_store import FileDiscovery
from reference_impl.errors import MalformedMessage, TransportError, TruncatedFrame
from reference_impl.protocol import payload_codec
from reference_impl.protocol.envelope import build_envelope
from reference_impl.protocol.messages import ConnectionInfo, RequestControlMessage, TcpStreamConnectionInfo
from reference_impl.protocol.payload_codec import DecodeLimits, PayloadCodec
from reference_impl.transport.byte_budget import ByteBudget
from reference_impl.transport.callhome.client import dial_caller
from reference_impl.transport.tcp.config import TcpWorkerConfig
from reference_impl.transport.tcp.plane import TCP, make_server
from reference_impl.transport.tcp.server import TcpRequestServer, TcpServerLimits
from reference_impl.wire.request_frame import AckDecoder, RequestFrameDecoder, encode_request
from reference_impl.worker import Worker, WorkerConfig
from tests.fake_sink import FakeSink

MIB = 1024 * 1024


# --- decoding ---------------------------------------------------------------------------------


def _array32(count: int, element: bytes) -> bytes:
    return b"\xdd" + count.to_bytes(4, "big") + element * count


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (_array32(4_000_000, b"\xc0"), "max_array_len"),  # one nil per byte: 8 bytes of list each
        (_array32(900_000, b"\x80\xc0"), "too many arrays and maps"),  # empty maps: 72 bytes each
        (_array32(900_000, b"\x90\xc0"), "too many arrays and maps"),  # empty lists
    ],
)
def test_msgpack_bodies_that_would_amplify_are_malformed(body: bytes, why: str):
    with pytest.raises(MalformedMessage, match=why):
        PayloadCodec.MSGPACK.decode(body, DecodeLimits())


def test_a_json_body_of_empty_objects_is_malformed():
    body = ("[" + ",".join(["{}"] * 200_000) + "]").encode()
    with pytest.raises(MalformedMessage, match="too many arrays and objects"):
        PayloadCodec.JSON.decode(body, DecodeLimits())


@pytest.mark.parametrize("opening", ['"\\""', '"\\\\"', '"a\\\\\\"b"'])
def test_escaped_quotes_do_not_hide_json_containers(opening: str):
    """A string ending in an escaped quote or an escaped backslash does not swallow the objects after it."""
    body = ("[" + opening + "," + ",".join(["{}"] * 200_000) + "]").encode()
    json.loads(body)  # valid JSON: only the limit refuses it
    with pytest.raises(MalformedMessage, match="too many arrays and objects"):
        PayloadCodec.JSON.decode(body, DecodeLimits())


def test_brackets_inside_json_strings_are_text_not_containers():
    """A large prompt quoting JSON or code: its brackets are characters (found by the mutation run)."""
    quoted = '[{"a": [1, 2], "b": {"c": "\\"[x]\\""}}]\\\\' * 40_000
    value = {"messages": [{"role": "user", "content": quoted}], "token_ids": [[1, 2]] * 10}
    body = PayloadCodec.JSON.encode(value)
    assert body.count(b"[") + body.count(b"{") > DecodeLimits().containers(len(body))
    assert PayloadCodec.JSON.decode(body, DecodeLimits()) == value


def test_refusing_a_json_body_of_tiny_objects_costs_a_window_not_the_body():
    """16 MiB of ``{"a":0}``: every object holds a string, so the guard reads past the strings; splitting the whole
    body on quotes once cost +298 MiB (4.8M pieces) before the refusal, a window at a time costs a few MiB."""
    body = b"[" + b",".join([b'{"a":0}'] * (2 * 1024 * 1024)) + b"]"
    tracemalloc.start()
    try:
        with pytest.raises(MalformedMessage, match="too many arrays and objects"):
            PayloadCodec.JSON.decode(body, DecodeLimits())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * payload_codec.JSON_SCAN_WINDOW * 40, f"{peak / 2**20:.0f} MiB to refuse a {len(body)}-byte body"


@pytest.mark.parametrize("window", [1, 2, 3, 7, 64])
def test_the_windowed_count_reads_strings_as_the_whole_text_does(window: int, monkeypatch: pytest.MonkeyPatch):
    """Windows split strings and escapes anywhere: the count outside strings is that of the text read whole."""
    monkeypatch.setattr(payload_codec, "JSON_SCAN_WINDOW", window)
    pieces = [b'"', b"\\", b"[", b"{", b"a", b"}", b"]", b'\\"', b"\\\\", b'"[{"']
    for seed in range(300):
        text = b"".join(pieces[(seed * 7 + i * i) % len(pieces)] for i in range(seed % 50))
        unescaped = text.replace(b"\\\\", b"").replace(b'\\"', b"")
        outside = b"".join(unescaped.split(b'"')[0::2])
        expected = outside.count(b"[") + outside.count(b"{")
        assert payload_codec._brackets_outside_json_strings(text, 10**9) == expected, text


@pytest.mark.parametrize("codec", list(PayloadCodec))
def test_ordinary_large_bodies_still_decode(codec: PayloadCodec):
    value = {"token_ids": list(range(1000, 400_000)), "messages": [{"role": "user", "content": "x" * 100}] * 500}
    assert codec.decode(codec.encode(value), DecodeLimits()) == value


def test_small_bodies_and_no_limits_decode_unchecked():
    small = _array32(60_000, b"\xc0")  # under checked_above
    assert PayloadCodec.MSGPACK.decode(small, DecodeLimits()) == [None] * 60_000
    assert len(PayloadCodec.MSGPACK.decode(_array32(200_000, b"\xc0"))) == 200_000


def test_the_limits_scale_with_the_body():
    limits = DecodeLimits()
    assert limits.elements(10) == limits.min_allowance
    assert limits.elements(10 * MIB) == 5 * MIB
    assert limits.containers(32 * MIB) == MIB


# --- settings ---------------------------------------------------------------------------------


def test_the_dos_settings_are_read_and_checked():
    config = WorkerConfig.from_env(
        {
            "RP_TCP_BUFFER_BUDGET": "1048576",
            "RP_TCP_FRAME_READ_TIMEOUT": "0",
            "RP_CALLHOME_WRITE_TIMEOUT": "2.5",
            "RP_CALLHOME_ALLOW": "10.0.0.0/8, 127.0.0.1",
            "RP_TCP_MAX_INFLIGHT_PER_CONNECTION": "7",
        }
    )
    assert config.of(TCP).buffer_budget == MIB and config.of(TCP).frame_read_timeout is None
    assert config.callhome_write_timeout == 2.5 and config.of(TCP).max_inflight_per_connection == 7
    assert config.callhome_allow == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))
    assert config.callhome_allowed("10.1.2.3") and config.callhome_allowed("127.0.0.1")
    assert not config.callhome_allowed("192.168.0.1") and not config.callhome_allowed("not-an-ip")
    assert WorkerConfig().callhome_allowed("203.0.113.9")  # default: anywhere, as Dynamo
    with pytest.raises(ConfigError, match="RP_CALLHOME_ALLOW"):
        WorkerConfig.from_env({"RP_CALLHOME_ALLOW": "10.0.0.0/33"})
    with pytest.raises(ConfigError, match="RP_TCP_BUFFER_BUDGET"):
        WorkerConfig.from_env({"RP_TCP_BUFFER_BUDGET": "0"})


def test_the_per_connection_cap_defaults_to_half_the_pool():
    server = make_server(FakeSink(), TcpWorkerConfig(), max_concurrency=8)
    assert server.limits.max_inflight_per_connection == 4
    assert make_server(FakeSink(), TcpWorkerConfig(), max_concurrency=1).limits.max_inflight_per_connection == 1
    explicit = make_server(FakeSink(), TcpWorkerConfig(max_inflight_per_connection=3), max_concurrency=8)
    assert explicit.limits.max_inflight_per_connection == 3


def test_a_byte_budget_refuses_what_does_not_fit():
    budget = ByteBudget(100)
    assert budget.try_resize(0, 60) and not budget.try_resize(0, 50) and budget.available == 40
    assert budget.try_resize(60, 90) and budget.try_resize(90, 0) and budget.reserved == 0


# --- the TCP server --------------------------------------------------------------------------------


class TrackingSink(FakeSink):
    """Accepts, and keeps each admitted request's ``on_done`` so the test ends them."""

    def __init__(self) -> None:
        super().__init__()
        self.done: list[Callable[[], None]] = []

    def offer(
        self,
        plane: str,
        route_key: str,
        payload: bytes,
        headers: Mapping[str, str],
        on_done: Callable[[], None] | None = None,
    ) -> str | None:
        rejection = super().offer(plane, route_key, payload, headers)
        if rejection is None and on_done is not None:
            self.done.append(on_done)
        return rejection


@contextlib.asynccontextmanager
async def serving(sink: FakeSink, **limits: object) -> AsyncIterator[TcpRequestServer]:
    server = TcpRequestServer(sink, limits=TcpServerLimits(**limits))  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def _acks_until_closed(reader: asyncio.StreamReader, timeout: float) -> tuple[list[bytes], bool]:
    """ACKs read until the server closes the connection (True) or ``timeout`` passes (False)."""
    decoder = AckDecoder()
    acks: list[bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), max(deadline - loop.time(), 0.001))
        except TimeoutError:
            return acks, False
        except ConnectionError:
            return acks, True
        if not chunk:
            return acks, True
        decoder.feed(chunk)
        acks.extend(decoder)


def _frame(payload: bytes) -> bytes:
    return encode_request("1/ns/c/e", {}, payload)


async def test_a_frame_that_does_not_fit_the_budget_is_refused_before_it_is_buffered():
    async with serving(FakeSink(), buffer_budget=1 * MIB) as server:
        big = _frame(bytes(2 * MIB))
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(big[: 64 * 1024])
        acks, closed = await _acks_until_closed(reader, 5.0)
        writer.close()
        assert closed and len(acks) == 1 and acks[0].startswith(b"Server overloaded: request buffer budget exhausted")
        assert server.budget.reserved == 0
        # A frame that arrives whole needs no budget at all.
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(_frame(b"small"))
        assert (await _acks_until_closed(reader, 0.5))[0] == [b""]
        writer.close()


async def test_an_incomplete_frame_reserves_its_declared_size_until_it_ends():
    async with serving(FakeSink(), buffer_budget=4 * MIB) as server:
        frame = _frame(bytes(3 * MIB))
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(frame[:1000])
        await writer.drain()
        for _ in range(100):
            if server.budget.reserved:
                break
            await asyncio.sleep(0.01)
        assert server.budget.reserved == len(frame)
        writer.write(frame[1000:])
        assert (await _acks_until_closed(reader, 2.0))[0] == [b""]
        assert server.budget.reserved == 0
        writer.close()


async def test_a_connection_over_its_own_limit_is_closed_with_a_reason():
    async with serving(FakeSink(), connection_buffer_limit=MIB) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(_frame(bytes(2 * MIB))[:4096])
        acks, closed = await _acks_until_closed(reader, 5.0)
        writer.close()
        assert closed and b"exceeds the connection's 1048576-byte limit" in acks[0]


async def test_a_trickled_frame_is_cut_at_its_read_deadline():
    async with serving(FakeSink(), frame_read_timeout=0.3) as server:
        frame = _frame(b"x" * 100)
        reader, writer = await asyncio.open_connection(server.host, server.port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for byte in frame[:12]:  # one byte every 20 ms: active, but the frame is not done in time
            writer.write(bytes([byte]))
            await asyncio.sleep(0.02)
        acks, closed = await _acks_until_closed(reader, 3.0)
        writer.close()
        assert closed and loop.time() - started < 2.0
        assert acks and b"frame not complete within 0.3s" in acks[-1]
        assert server.budget.reserved == 0 and server.wire_errors


async def test_each_pipelined_frame_gets_its_own_read_deadline():
    """Writes that each end inside the next frame keep the connection mid-frame for many deadlines in a row: a
    connection that keeps completing frames is not slow (found by the mutation run: a frame count that never
    moved made the first frame's deadline cut the whole pipeline)."""
    async with serving(FakeSink(), frame_read_timeout=1.0) as server:
        frames = [_frame(b"x" * 100) for _ in range(30)]
        half = len(frames[0]) // 2
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(frames[0][:half])
        for done, begun in itertools.pairwise(frames):  # 30 x 0.1 s: three deadlines, each frame 10 x within its own
            await asyncio.sleep(0.1)
            writer.write(done[half:] + begun[:half])
        writer.write(frames[-1][half:])
        acks, closed = await _acks_until_closed(reader, 2.0)
        writer.close()
        assert not closed and acks == [b""] * len(frames)
        assert not server.wire_errors


async def test_an_idle_connection_is_closed_and_a_busy_one_is_not():
    async with serving(FakeSink(), idle_timeout=0.3) as server:
        idle_reader, idle_writer = await asyncio.open_connection(server.host, server.port)
        busy_reader, busy_writer = await asyncio.open_connection(server.host, server.port)
        for _ in range(6):  # a request every 100 ms for 600 ms
            busy_writer.write(_frame(b"ping"))
            await asyncio.sleep(0.1)
        assert (await _acks_until_closed(idle_reader, 1.0))[1], "the idle connection was not closed"
        acks, closed = await _acks_until_closed(busy_reader, 0.1)
        assert not closed and len(acks) == 6
        for writer in (idle_writer, busy_writer):
            writer.close()


async def test_one_connection_gets_at_most_its_share_of_admissions():
    sink = TrackingSink()
    async with serving(sink, max_inflight_per_connection=2) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(_frame(b"1") + _frame(b"2") + _frame(b"3"))
        acks, _ = await _acks_until_closed(reader, 0.5)
        assert (
            acks[:2] == [b"", b""] and acks[2] == b"Server overloaded: 2 requests already in flight on this connection"
        )
        other_reader, other_writer = await asyncio.open_connection(server.host, server.port)
        other_writer.write(_frame(b"other"))
        assert (await _acks_until_closed(other_reader, 0.5))[0] == [b""], "another connection was refused"
        sink.done[0]()  # one of the first connection's requests ends: room for one more
        writer.write(_frame(b"4"))
        assert (await _acks_until_closed(reader, 0.5))[0] == [b""]
        for w in (writer, other_writer):
            w.close()


async def test_acks_left_unread_drop_the_connection():
    async with serving(FakeSink(reject="Server unavailable: " + "x" * 60_000), ack_write_timeout=0.5) as server:
        sock = socket.create_connection((server.host, server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        frames = _frame(b"r") * 200  # 200 ACKs of 60 kB each, never read
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            await asyncio.wait_for(loop.sock_sendall(sock, frames), 1.0)
        for _ in range(60):
            if any("ACKs left unread" in reason for reason in server.wire_errors):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)
        assert not server.connections, "a peer that reads no ACKs was kept"
        assert any("ACKs left unread" in reason for reason in server.wire_errors)
        sock.close()


# --- the call-home stream --------------------------------------------------------------------------


async def test_a_caller_that_stops_reading_loses_its_stream_after_the_write_deadline():
    accepted: list[asyncio.StreamWriter] = []

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.pause_reading()  # type: ignore[attr-defined]
        accepted.append(writer)

    listener = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        connection = await dial_caller(
            f"127.0.0.1:{port}", "subject", PayloadCodec.MSGPACK, lambda _: None, write_timeout=0.5
        )
        await connection.send(connection.stream.prologue())
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TransportError, match=r"read nothing of its response stream for 0\.5s"):
            for _ in range(10_000):
                await connection.send_item({"pad": "x" * 10_000})
        assert 0.4 < loop.time() - started < 3.0
        assert connection.lost
    finally:
        for writer in accepted:
            writer.close()
        listener.close()


async def test_without_a_write_deadline_back_pressure_waits():
    def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.pause_reading()  # type: ignore[attr-defined]

    listener = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        connection = await dial_caller(
            f"127.0.0.1:{port}", "subject", PayloadCodec.MSGPACK, lambda _: None, write_timeout=None
        )
        await connection.send(connection.stream.prologue())

        async def flood() -> None:
            for _ in range(10_000):
                await connection.send_item({"pad": "x" * 10_000})

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(flood(), 1.0)
        assert not connection.lost
        connection.abort()
    finally:
        listener.close()


# --- the call-home allow-list ----------------------------------------------------------------------


async def _offer_calling_home_to(config: WorkerConfig, tmp_path: Path) -> tuple[Worker, int]:
    """A worker with ``config`` gets one echo request whose call-home is a local listener; connections it got."""
    connections = 0

    def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    listener = await asyncio.start_server(count, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    worker = Worker("dos", "allow", config=config, discovery=FileDiscovery(tmp_path))

    async def echo(request: object, context: object) -> AsyncIterator[object]:
        yield request

    worker.serve("echo", echo)
    await worker.start()
    try:
        info = TcpStreamConnectionInfo(f"127.0.0.1:{port}", "subject-1", "req-1")
        control = RequestControlMessage("req-1", ConnectionInfo.for_tcp(info), payload_codec="json")
        route_key = worker.records[0].transport_address.split("/", 1)[1]
        assert worker.offer("tcp", route_key, build_envelope(control, {"x": 1}), {}) is None
        for _ in range(100):
            if connections or worker.failures:
                break
            await asyncio.sleep(0.02)
    finally:
        await worker.stop(drain_timeout=1.0)
        listener.close()
    return worker, connections


async def test_a_call_home_outside_the_allow_list_is_not_dialled(tmp_path: Path):
    worker, connections = await _offer_calling_home_to(
        WorkerConfig(callhome_allow=(ipaddress.ip_network("10.0.0.0/8"),)), tmp_path
    )
    assert connections == 0
    assert len(worker.failures) == 1 and "outside the allow-list (RP_CALLHOME_ALLOW)" in worker.failures[0]


async def test_a_call_home_inside_the_allow_list_is_dialled(tmp_path: Path):
    worker, connections = await _offer_calling_home_to(
        WorkerConfig(callhome_allow=(ipaddress.ip_network("127.0.0.0/8"),)), tmp_path
    )
    assert connections == 1 and not [f for f in worker.failures if "allow-list" in f]


def test_a_poisoned_decoder_lets_go_of_its_buffer():
    """Its error's traceback refers back to it: holding the buffer until a GC cycle kept attacks' memory resident."""
    decoder = RequestFrameDecoder()
    decoder.feed(_frame(bytes(2 * MIB))[:MIB])
    assert decoder.buffered == MIB
    with pytest.raises(TruncatedFrame):
        decoder.feed_eof()
    assert decoder.buffered == 0


async def test_a_frame_under_way_is_governed_by_its_deadline_not_the_idle_timeout():
    async with serving(FakeSink(), idle_timeout=0.2, frame_read_timeout=1.0) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(_frame(b"x" * 100)[:10])
        loop = asyncio.get_running_loop()
        started = loop.time()
        acks, closed = await _acks_until_closed(reader, 3.0)
        writer.close()
        assert closed and 0.9 < loop.time() - started < 2.5, "closed by the idle timeout, or not at the deadline"
        assert b"frame not complete within 1.0s" in acks[-1]
