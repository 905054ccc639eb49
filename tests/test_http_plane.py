"""The HTTP request plane: worker-side server and caller-side client, checked on the wire.

The server is driven by a fake ``RequestSink``.  Behaviour visible only in
bytes (status lines, frames, resets, GOAWAY) is observed with raw sockets
and a hand-driven hyper-h2 peer; the client is tested against the server and
against a scripted h2 worker that sends GOAWAY and RST_STREAM on cue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import socket
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import hyperframe.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_impl.errors import (
    AckTimeout,
    RequestRejected,
    TransportError,
    WorkerOverloaded,
    WorkerUnavailable,
)
from reference_impl.protocol import ack
from reference_impl.protocol.envelope import parse_envelope
from reference_impl.routing import EndpointId
from reference_impl.transport.http.client import HttpRequestClient, ack_from_response
from reference_impl.transport.http.http2_goaway import Goaway, GoawayFilter, encode_goaway
from reference_impl.transport.http.routing import http_date
from reference_impl.transport.http.server import HttpRequestServer, sniff_protocol
from tests.fake_sink import FakeSink

WAIT = 10.0  # seconds; every await in these tests is bounded by this
LIMIT = 2 * 1024 * 1024
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQUEST_ID = "750bc2da-67ec-4f20-a8a7-ded01dea45e6"


# --- the fake sink and the server under test ------------------------------------------------


ServerFactory = Callable[..., Awaitable[HttpRequestServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[ServerFactory]:
    servers: list[HttpRequestServer] = []

    async def start(sink: Any = None, **options: Any) -> HttpRequestServer:
        server = HttpRequestServer(sink if sink is not None else FakeSink(), "127.0.0.1", 0, **options)
        await asyncio.wait_for(server.start(), WAIT)
        await server.serve_endpoint(EndpointId("ns", "backend", "generate"), 0x1234ABCD)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await asyncio.wait_for(server.close(), WAIT)


@pytest.fixture
async def server(start_server: ServerFactory) -> HttpRequestServer:
    return await start_server()


def sink_of(server: HttpRequestServer) -> FakeSink:
    assert isinstance(server.sink, FakeSink)
    return server.sink


def url(server: HttpRequestServer, endpoint: str = "generate") -> str:
    return f"http://127.0.0.1:{server.port}/v1/rpc/{endpoint}"


@pytest.fixture
async def client_factory() -> AsyncIterator[Callable[..., HttpRequestClient]]:
    clients: list[HttpRequestClient] = []

    def make(**options: Any) -> HttpRequestClient:
        client = HttpRequestClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


# --- raw HTTP/1.1 ----------------------------------------------------------------------


@dataclass
class RawResponse:
    status_line: bytes
    headers: dict[str, str]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])


def post(path: str, body: bytes = b"", *, headers: dict[str, str] | None = None, method: str = "POST") -> bytes:
    fields = {"host": "127.0.0.1", "content-length": str(len(body)), **(headers or {})}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    return head.encode() + body


def chunked_post(path: str, body: bytes, chunk: int = 65536) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n\r\n".encode()
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + chunk]), body[i : i + chunk]) for i in range(0, len(body), chunk)]
    return head + b"".join(parts) + b"0\r\n\r\n"


class RawHttp1:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, server: HttpRequestServer) -> RawHttp1:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", server.port), WAIT)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), WAIT)

    async def response(self) -> RawResponse:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        status_line, *lines = head[:-4].split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        body = await asyncio.wait_for(self.reader.readexactly(int(headers.get("content-length", "0"))), WAIT)
        return RawResponse(status_line, headers, body)

    async def closed_by_peer(self) -> bool:
        """True once the server has closed; its lingering close drains what we still send."""
        try:
            return await asyncio.wait_for(self.reader.read(1), WAIT) == b""
        except ConnectionError:
            return True

    def close(self) -> None:
        self.writer.close()


async def exchange_http1(server: HttpRequestServer, request: bytes) -> RawResponse:
    connection = await RawHttp1.open(server)
    try:
        await connection.send(request)
        return await connection.response()
    finally:
        connection.close()


# --- raw h2c -----------------------------------------------------------------------------


@dataclass
class StreamRecord:
    status: int | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    ended: bool = False
    reset: int | None = None


class RawH2:
    """An h2c peer driven by hand, to watch exactly what the server sends back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.streams: dict[int, StreamRecord] = {}
        self.goaways: list[Goaway] = []
        self.pings_acked = 0
        self.eof = False
        self._goaway_filter = GoawayFilter()

    @classmethod
    async def open(cls, server: HttpRequestServer) -> RawH2:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", server.port), WAIT)
        peer = cls(reader, writer)
        peer.h2.initiate_connection()
        await peer.flush()
        await peer.until(lambda: peer.h2.remote_settings.max_concurrent_streams < 2**31)
        return peer

    async def flush(self) -> None:
        self.writer.write(self.h2.data_to_send())
        await asyncio.wait_for(self.writer.drain(), WAIT)

    def headers(
        self, stream_id: int, path: str, *, method: str = "POST", length: int | None = None, end: bool = False
    ) -> None:
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"http"),
            (b":authority", b"x"),
            (b":path", path.encode()),
        ]
        if length is not None:
            fields.append((b"content-length", str(length).encode()))
        fields.append((b"request-id", str(uuid.uuid4()).encode()))
        self.h2.send_headers(stream_id, fields, end_stream=end)
        self.streams[stream_id] = StreamRecord()

    async def body(self, stream_id: int, data: bytes, *, end: bool = True) -> None:
        """Send ``data`` as the server's windows allow (reading its WINDOW_UPDATEs meanwhile)."""
        offset = 0
        while offset < len(data) or (end and offset == len(data) == 0):
            if self.streams[stream_id].reset is not None:
                return  # the server stopped this body (413, or an early answer)
            window = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
            if window <= 0 and offset < len(data):
                await self.read_some()
                continue
            chunk = data[offset : offset + window]
            offset += len(chunk)
            self.h2.send_data(stream_id, chunk, end_stream=end and offset == len(data))
            await self.flush()
            if offset == len(data):
                break

    async def read_some(self) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), WAIT)
        if not data:
            self.eof = True
            return
        for part in self._goaway_filter.feed(data):
            if isinstance(part, Goaway):
                self.goaways.append(part)
                continue
            for event in self.h2.receive_data(part):
                self._record(event)
        await self.flush()

    def _record(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            record = self.streams.setdefault(event.stream_id, StreamRecord())
            record.headers = {bytes(n): bytes(v) for n, v in event.headers or ()}
            record.status = int(record.headers[b":status"])
        elif isinstance(event, h2.events.DataReceived):
            self.streams[event.stream_id].body += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.streams[event.stream_id].ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.streams.setdefault(event.stream_id, StreamRecord()).reset = int(event.error_code or 0)
        elif isinstance(event, h2.events.PingAckReceived):
            self.pings_acked += 1

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not condition():
                if self.eof:
                    raise AssertionError("server closed the connection first")
                await self.read_some()

    async def answered(self, *stream_ids: int) -> None:
        await self.until(lambda: all(self.streams[s].ended or self.streams[s].reset is not None for s in stream_ids))

    async def sync(self) -> None:
        """Round trip a PING: everything sent before it has been processed by the server."""
        expected = self.pings_acked + 1
        self.h2.ping(b"syncsync")
        await self.flush()
        await self.until(lambda: self.pings_acked >= expected)

    async def wait_eof(self) -> None:
        async with asyncio.timeout(WAIT):
            while not self.eof:
                try:
                    await self.read_some()
                except ConnectionError:
                    self.eof = True

    def close(self) -> None:
        self.writer.close()


# --- routing and status codes --------------------------------------------------------------


def test_advertisement_is_dynamo_url_keyed_by_bare_endpoint_name() -> None:
    server = HttpRequestServer(FakeSink(), "127.0.0.1", 45145)
    advert = server.advertise(EndpointId("ns", "backend", "generate"), 0xABC)
    assert (advert.transport_kind, advert.address, advert.route_key) == (
        "http",
        "http://127.0.0.1:45145/v1/rpc/generate",
        "generate",
    )
    custom = HttpRequestServer(FakeSink(), "::1", 8888, root="/rpc/")
    assert custom.advertise(EndpointId("a", "b", "c"), 1).address == "http://[::1]:8888/rpc/c"


async def test_only_served_endpoints_are_routed(server: HttpRequestServer) -> None:
    other = EndpointId("ns", "backend", "other")
    server.advertise(other, 1)  # advertising alone routes nothing
    assert (await exchange_http1(server, post("/v1/rpc/other", b"x"))).status == 404
    advert = await server.serve_endpoint(other, 1)
    assert advert == server.advertise(other, 1)
    assert (await exchange_http1(server, post("/v1/rpc/other", b"x"))).status == 202
    assert [offer.route_key for offer in sink_of(server).offers] == ["other"]


async def test_accepted_request_gets_202_with_empty_body(server: HttpRequestServer) -> None:
    response = await exchange_http1(server, post("/v1/rpc/generate", b"payload", headers={"request-id": REQUEST_ID}))
    assert response.status_line == b"HTTP/1.1 202 Accepted"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == "0"
    assert "date" in response.headers
    assert response.body == b""
    [offer] = sink_of(server).offers
    assert (offer.plane, offer.route_key, offer.payload) == ("http", "generate", b"payload")
    assert offer.headers == {"request-id": REQUEST_ID}


async def test_ack_is_sent_before_the_body_is_decoded(start_server: ServerFactory) -> None:
    """Garbage is accepted; decoding happens later, as in Dynamo, and fails only there."""
    decode_failures: list[str] = []

    class DecodeLater(FakeSink):
        def offer(
            self, plane: str, route_key: str, payload: bytes, headers: Any, on_done: Callable[[], None] | None = None
        ) -> str | None:
            super().offer(plane, route_key, payload, headers, on_done)
            asyncio.get_running_loop().call_soon(self.decode, payload)
            return None

        def decode(self, payload: bytes) -> None:
            try:
                parse_envelope(payload, max_message_size=None)
            except Exception as exc:
                decode_failures.append(type(exc).__name__)

    server = await start_server(DecodeLater())
    response = await exchange_http1(server, post("/v1/rpc/generate", b"\xffnot a two-part frame"))
    assert response.status == 202
    async with asyncio.timeout(WAIT):
        while not decode_failures:
            await asyncio.sleep(0.01)
    assert decode_failures == ["MalformedMessage"]


@pytest.mark.parametrize("path", ["/v1/rpc/nope", "/v1/rpc/a/b", "/v1/rpc/generate/x", "/v1/rpc/gen%2Ferate"])
async def test_unknown_or_nested_endpoint_is_404_endpoint_not_found(server: HttpRequestServer, path: str) -> None:
    response = await exchange_http1(server, post(path, b"x"))
    assert response.status_line == b"HTTP/1.1 404 Not Found"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.body == b"Endpoint not found"
    assert sink_of(server).offers == []


@pytest.mark.parametrize("path", ["/", "/v1/rpc", "/v1/rpc/", "/v2/rpc/generate", "/v1/rpcx/generate", "/generate"])
async def test_path_outside_the_root_is_404_with_empty_body(server: HttpRequestServer, path: str) -> None:
    response = await exchange_http1(server, post(path, b""))
    assert response.status == 404
    assert response.body == b""
    assert "content-type" not in response.headers


async def test_percent_encoded_path_is_decoded_before_lookup(server: HttpRequestServer) -> None:
    response = await exchange_http1(server, post("/v1/rpc/gen%65rate", b"x"))
    assert response.status == 202
    assert sink_of(server).offers[0].route_key == "generate"


async def test_custom_root_routes_and_other_roots_do_not(start_server: ServerFactory) -> None:
    server = await start_server(root="/custom/rpc")
    assert (await exchange_http1(server, post("/custom/rpc/generate", b"x"))).status == 202
    assert (await exchange_http1(server, post("/v1/rpc/generate", b"x"))).status == 404


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
async def test_other_methods_get_405_allow_post_and_keep_the_connection(server: HttpRequestServer, method: str) -> None:
    connection = await RawHttp1.open(server)
    try:
        await connection.send(post("/v1/rpc/generate", method=method))
        response = await connection.response()
        assert response.status == 405
        assert response.headers["allow"] == "POST"
        assert response.body == b""
        await connection.send(post("/v1/rpc/generate", b"next"))
        assert (await connection.response()).status == 202
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (post("/v1/rpc/generate", b"a body to skip", method="PUT"), 405),
        (post("/elsewhere", b"a body to skip"), 404),
        (post("/v1/rpc/%ff", b"a body to skip"), 400),
    ],
    ids=["405", "404-outside-root", "400-bad-utf8"],
)
async def test_early_answers_skip_a_small_body_and_keep_the_connection(
    server: HttpRequestServer, request_bytes: bytes, status: int
) -> None:
    """As hyper does: the unread body is read and dropped, and the next request is served."""
    connection = await RawHttp1.open(server)
    try:
        await connection.send(request_bytes + post("/v1/rpc/generate", b"next"))
        assert (await connection.response()).status == status
        assert (await connection.response()).status == 202
        assert sink_of(server).payloads() == [b"next"]
    finally:
        connection.close()


async def test_invalid_utf8_endpoint_is_400_with_axums_text(server: HttpRequestServer) -> None:
    response = await exchange_http1(server, post("/v1/rpc/%ff", b"x"))
    assert response.status == 400
    assert response.body == b"Invalid URL: Invalid UTF-8 in `endpoint`"


async def test_h2_statuses_match_http1(server: HttpRequestServer) -> None:
    peer = await RawH2.open(server)
    try:
        cases = {1: ("GET", "/v1/rpc/generate"), 3: ("POST", "/elsewhere"), 5: ("POST", "/v1/rpc/nope")}
        for stream_id, (method, path) in cases.items():
            peer.headers(stream_id, path, method=method, end=True)
        peer.headers(7, "/v1/rpc/gen%65rate", length=4)
        await peer.flush()
        await peer.body(7, b"abcd")
        await peer.answered(1, 3, 5, 7)
        assert peer.streams[1].status == 405 and peer.streams[1].headers[b"allow"] == b"POST"
        assert peer.streams[3].status == 404 and peer.streams[3].body == b""
        assert peer.streams[5].status == 404 and peer.streams[5].body == b"Endpoint not found"
        assert peer.streams[7].status == 202 and peer.streams[7].body == b""
        assert peer.streams[7].headers[b"content-type"] == b"text/plain; charset=utf-8"
        assert sink_of(server).payloads() == [b"abcd"]
    finally:
        peer.close()


# --- body limit -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [LIMIT, LIMIT + 1], ids=["exactly-2MiB", "2MiB+1"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_http1_body_limit(server: HttpRequestServer, size: int, framing: str) -> None:
    body = b"b" * size
    request = post("/v1/rpc/generate", body) if framing == "content-length" else chunked_post("/v1/rpc/generate", body)
    connection = await RawHttp1.open(server)
    try:
        await connection.send(request)
        response = await connection.response()
        if size == LIMIT:
            assert response.status == 202
            assert sink_of(server).payloads() == [body]
        else:
            assert response.status_line == b"HTTP/1.1 413 Payload Too Large"
            assert response.body == b"Failed to buffer the request body: length limit exceeded"
            assert response.headers["connection"] == "close"
            assert await connection.closed_by_peer()
            assert sink_of(server).offers == []
    finally:
        connection.close()


async def test_http1_declared_oversize_is_refused_before_the_body_is_sent(server: HttpRequestServer) -> None:
    connection = await RawHttp1.open(server)
    try:
        await connection.send(post("/v1/rpc/generate", headers={"content-length": str(LIMIT + 1)}))
        assert (await connection.response()).status == 413
    finally:
        connection.close()


@pytest.mark.parametrize("size", [LIMIT, LIMIT + 1], ids=["exactly-2MiB", "2MiB+1"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "data-only"])
async def test_h2_body_limit_resets_only_that_stream(server: HttpRequestServer, size: int, declared: bool) -> None:
    peer = await RawH2.open(server)
    try:
        peer.headers(1, "/v1/rpc/generate", length=size if declared else None)
        await peer.flush()
        await peer.body(1, b"b" * size)
        await peer.answered(1)
        if size == LIMIT:
            assert peer.streams[1].status == 202
            assert sink_of(server).payloads() == [b"b" * size]
        else:
            assert peer.streams[1].status == 413
            assert peer.streams[1].body == b"Failed to buffer the request body: length limit exceeded"
            assert sink_of(server).offers == []
            if declared:  # answered from the headers: the body we never read is stopped, without error
                await peer.until(lambda: peer.streams[1].reset is not None)
                assert peer.streams[1].reset == h2.errors.ErrorCodes.NO_ERROR
        peer.headers(3, "/v1/rpc/generate", length=5)  # the connection is still good
        await peer.flush()
        await peer.body(3, b"after")
        await peer.answered(3)
        assert peer.streams[3].status == 202
    finally:
        peer.close()


# --- HTTP/2 streams, windows, resets and GOAWAY -----------------------------------------------


async def test_h2_200_concurrent_streams_on_one_connection(server: HttpRequestServer) -> None:
    peer = await RawH2.open(server)
    bodies = {1 + 2 * i: hashlib.sha256(str(i).encode()).digest() * (1 + i % 50) for i in range(200)}
    try:
        for stream_id in bodies:  # every stream open before any body is sent
            peer.headers(stream_id, "/v1/rpc/generate")
        await peer.flush()
        for stream_id, body in bodies.items():
            await peer.body(stream_id, body[: len(body) // 2], end=False)
        for stream_id, body in reversed(bodies.items()):
            await peer.body(stream_id, body[len(body) // 2 :])
        await peer.answered(*bodies)
        assert all(peer.streams[s].status == 202 for s in bodies)
        assert sorted(sink_of(server).payloads()) == sorted(bodies.values())
        assert server.connections_accepted == 1
    finally:
        peer.close()


async def test_h2_large_body_through_a_small_window(start_server: ServerFactory) -> None:
    server = await start_server(body_limit=8 * 1024 * 1024, h2_window_size=16_384)
    body = bytes(range(256)) * (5 * 1024 * 4)  # 5 MiB
    peer = await RawH2.open(server)
    try:
        assert peer.h2.remote_settings.initial_window_size == 16_384
        peer.headers(1, "/v1/rpc/generate")
        await peer.flush()
        await peer.body(1, body)
        await peer.answered(1)
        assert peer.streams[1].status == 202
        [offer] = sink_of(server).offers
        assert hashlib.sha256(offer.payload).digest() == hashlib.sha256(body).digest()
    finally:
        peer.close()


async def test_h2_client_reset_mid_body_leaves_other_streams_alone(server: HttpRequestServer) -> None:
    peer = await RawH2.open(server)
    try:
        peer.headers(1, "/v1/rpc/generate")
        peer.headers(3, "/v1/rpc/generate")
        await peer.flush()
        await peer.body(1, b"half of a body", end=False)
        await peer.body(3, b"stream three")
        peer.h2.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
        await peer.flush()
        peer.headers(5, "/v1/rpc/generate", length=11)
        await peer.flush()
        await peer.body(5, b"stream five")
        await peer.answered(3, 5)
        await peer.sync()
        assert peer.streams[1].status is None
        assert (peer.streams[3].status, peer.streams[5].status) == (202, 202)
        assert sink_of(server).payloads() == [b"stream three", b"stream five"]
    finally:
        peer.close()


async def test_server_shutdown_sends_goaway_and_finishes_streams_in_flight(server: HttpRequestServer) -> None:
    peer = await RawH2.open(server)
    try:
        peer.headers(1, "/v1/rpc/generate")
        await peer.flush()
        await peer.body(1, b"first half, ", end=False)
        await peer.sync()  # the server has seen stream 1
        closing = asyncio.ensure_future(server.close())
        await peer.until(lambda: bool(peer.goaways))
        assert peer.goaways[0].last_stream_id == 1
        assert peer.goaways[0].error_code == 0
        peer.headers(3, "/v1/rpc/generate", end=True)  # after the GOAWAY: refused
        await peer.flush()
        await peer.body(1, b"second half")
        await peer.answered(1, 3)
        assert peer.streams[1].status == 202
        assert peer.streams[3].reset == h2.errors.ErrorCodes.REFUSED_STREAM
        await peer.wait_eof()
        await asyncio.wait_for(closing, WAIT)
        assert sink_of(server).payloads() == [b"first half, second half"]
    finally:
        peer.close()


async def test_h2_protocol_error_closes_that_connection_with_goaway_reason(server: HttpRequestServer) -> None:
    other = await RawH2.open(server)
    peer = await RawH2.open(server)
    try:
        data_on_stream_zero = struct.pack(">I", 4)[1:] + b"\x00\x00" + b"\x00\x00\x00\x00" + b"oops"
        peer.writer.write(data_on_stream_zero)
        await peer.wait_eof()
        [goaway] = peer.goaways
        assert goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        assert goaway.debug_data  # the reason travels with it
        assert server.wire_errors
        other.headers(1, "/v1/rpc/generate", length=2)
        await other.flush()
        await other.body(1, b"ok")
        await other.answered(1)
        assert other.streams[1].status == 202
    finally:
        peer.close()
        other.close()


async def test_h2_preface_split_across_reads_is_recognised(server: HttpRequestServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for byte in PREFACE:
            writer.write(bytes([byte]))
            await writer.drain()
        writer.write(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # empty SETTINGS
        first = await asyncio.wait_for(reader.readexactly(9), WAIT)
        assert first[3] == 0x4  # the server's SETTINGS: it is speaking h2
    finally:
        writer.close()


def test_sniff_protocol() -> None:
    assert sniff_protocol(b"") is None
    assert sniff_protocol(PREFACE[:10]) is None
    assert sniff_protocol(PREFACE) == "h2"
    assert sniff_protocol(b"POST / HTTP/1.1\r\n") == "http/1.1"
    assert sniff_protocol(b"PRI * HTTP/1.1") == "http/1.1"


# --- HTTP/1.1 specifics ---------------------------------------------------------------------------


async def test_upgrade_h2c_is_answered_over_http1(server: HttpRequestServer) -> None:
    upgrade = {
        "connection": "Upgrade, HTTP2-Settings",
        "upgrade": "h2c",
        "http2-settings": "AAMAAABkAARAAAAAAAIAAAAA",
    }
    connection = await RawHttp1.open(server)
    try:
        await connection.send(post("/v1/rpc/generate", b"upgrade me", headers=upgrade))
        assert (await connection.response()).status_line == b"HTTP/1.1 202 Accepted"
        await connection.send(post("/v1/rpc/generate", b"still http/1.1"))
        assert (await connection.response()).status_line == b"HTTP/1.1 202 Accepted"
        assert sink_of(server).payloads() == [b"upgrade me", b"still http/1.1"]
    finally:
        connection.close()


async def test_pipelined_requests_are_answered_in_order(server: HttpRequestServer) -> None:
    connection = await RawHttp1.open(server)
    try:
        await connection.send(
            post("/v1/rpc/generate", b"one") + post("/v1/rpc/nope", b"two") + post("/v1/rpc/generate", b"three")
        )
        statuses = [(await connection.response()).status for _ in range(3)]
        assert statuses == [202, 404, 202]
        assert sink_of(server).payloads() == [b"one", b"three"]
    finally:
        connection.close()


async def test_expect_100_continue_is_honoured(server: HttpRequestServer) -> None:
    connection = await RawHttp1.open(server)
    try:
        await connection.send(post("/v1/rpc/generate", headers={"expect": "100-continue", "content-length": "4"}))
        interim = await connection.response()
        assert interim.status == 100
        await connection.send(b"body")
        assert (await connection.response()).status == 202
    finally:
        connection.close()


@pytest.mark.parametrize(
    "garbage",
    [b"GARBAGE\r\n\r\n", b"POST /v1/rpc/generate HTTP/1.1\r\nhost: x\r\ncontent-length: nope\r\n\r\n"],
    ids=["request-line", "content-length"],
)
async def test_malformed_http1_gets_400_and_close_while_others_work(server: HttpRequestServer, garbage: bytes) -> None:
    other = await RawHttp1.open(server)
    bad = await RawHttp1.open(server)
    try:
        await bad.send(garbage)
        response = await bad.response()
        assert response.status == 400
        assert response.headers["connection"] == "close"
        assert await bad.closed_by_peer()
        assert server.wire_errors
        await other.send(post("/v1/rpc/generate", b"fine"))
        assert (await other.response()).status == 202
    finally:
        bad.close()
        other.close()


async def test_server_close_drops_idle_connections_at_once(server: HttpRequestServer) -> None:
    idle_http1 = await RawHttp1.open(server)
    idle_h2 = await RawH2.open(server)
    try:
        await idle_http1.send(post("/v1/rpc/generate", b"x"))
        assert (await idle_http1.response()).status == 202
        async with asyncio.timeout(1.0):  # well inside the shutdown grace: nothing was in flight
            await server.close()
        assert await idle_http1.closed_by_peer()
        await idle_h2.wait_eof()
        assert [goaway.error_code for goaway in idle_h2.goaways] == [0]
    finally:
        idle_http1.close()
        idle_h2.close()


# --- headers and the sink's verdicts ---------------------------------------------------------------


async def test_tracing_headers_reach_the_sink_and_transport_headers_do_not(server: HttpRequestServer) -> None:
    sent = {
        "request-id": "not-a-uuid",
        "x-dynamo-request-id": REQUEST_ID,
        "x-frontend-send-ts-ns": "1795404619509809619",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "k=v",
        "x-request-id": "abc",
        "content-type": "application/octet-stream",
    }
    assert (await exchange_http1(server, post("/v1/rpc/generate", b"x", headers=sent))).status == 202
    assert sink_of(server).offers[0].headers == {
        "request-id": REQUEST_ID,  # the UUID-checked id: request-id, else x-dynamo-request-id
        "x-dynamo-request-id": REQUEST_ID,
        "x-frontend-send-ts-ns": "1795404619509809619",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "k=v",
        "x-request-id": "abc",
    }


@pytest.mark.parametrize(
    ("rejection", "status"),
    [
        (ack.AT_CAPACITY, 503),
        (ack.SHUTTING_DOWN, 503),
        (ack.unknown_endpoint("generate"), 404),
        ("something else", 503),
    ],
)
async def test_sink_rejections_become_status_codes(start_server: ServerFactory, rejection: str, status: int) -> None:
    server = await start_server(FakeSink(reject=rejection))
    response = await exchange_http1(server, post("/v1/rpc/generate", b"x"))
    assert response.status == status
    assert response.body == rejection.encode()
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


# --- the client -------------------------------------------------------------------------------------

VERSIONS = ["h2", "http/1.1"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_client_gets_the_empty_ack_and_delivers_headers(
    server: HttpRequestServer, client_factory: Callable[..., HttpRequestClient], version: str
) -> None:
    client = client_factory(version=version)
    headers = {"request-id": REQUEST_ID, "x-frontend-send-ts-ns": "123"}
    for _ in range(3):
        assert await client.send(url(server), headers, b"payload") == b""
    assert sink_of(server).payloads() == [b"payload"] * 3
    assert sink_of(server).offers[0].headers == headers
    assert server.connections_accepted == 1  # keep-alive, or one multiplexed h2 connection


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("rejection", "error", "text"),
    [
        (ack.AT_CAPACITY, WorkerOverloaded, ack.AT_CAPACITY),
        (ack.SHUTTING_DOWN, WorkerUnavailable, ack.SHUTTING_DOWN),
        ("no reason given", RequestRejected, "HTTP 503: no reason given"),
    ],
)
async def test_client_maps_rejections(
    start_server: ServerFactory,
    client_factory: Callable[..., HttpRequestClient],
    version: str,
    rejection: str,
    error: type[RequestRejected],
    text: str,
) -> None:
    server = await start_server(FakeSink(reject=rejection))
    with pytest.raises(error) as caught:
        await client_factory(version=version).send(url(server), {}, b"x")
    assert type(caught.value) is error
    assert caught.value.ack_text == text


@pytest.mark.parametrize("version", VERSIONS)
async def test_client_maps_404_and_413(
    server: HttpRequestServer, client_factory: Callable[..., HttpRequestClient], version: str
) -> None:
    client = client_factory(version=version)
    with pytest.raises(WorkerUnavailable, match=r"^HTTP 404: Endpoint not found$"):
        await client.send(url(server, "nope"), {}, b"x")
    with pytest.raises(RequestRejected, match=r"^HTTP 413: Failed to buffer"):
        await client.send(url(server), {}, b"x" * (LIMIT + 1))
    assert await client.send(url(server), {}, b"x" * LIMIT) == b""  # the client recovers


def test_ack_from_response_mapping() -> None:
    assert ack_from_response(202, b"") == b""
    assert ack_from_response(200, b"ignored") == b""
    with pytest.raises(WorkerUnavailable, match=r"^HTTP 404: gone$"):
        ack_from_response(404, b"gone")
    with pytest.raises(WorkerUnavailable, match=r"^Server unavailable: x$"):
        ack_from_response(503, b"Server unavailable: x")
    with pytest.raises(WorkerOverloaded):
        ack_from_response(429, b"Server overloaded: busy")
    with pytest.raises(RequestRejected, match=r"^HTTP 500: boom$"):
        ack_from_response(500, b"boom")


@pytest.mark.parametrize("version", VERSIONS)
async def test_client_concurrent_requests(
    server: HttpRequestServer, client_factory: Callable[..., HttpRequestClient], version: str
) -> None:
    client = client_factory(version=version)
    bodies = [hashlib.sha256(str(i).encode()).digest() * (1 + i % 300) for i in range(200)]
    results = await asyncio.wait_for(asyncio.gather(*(client.send(url(server), {}, b) for b in bodies)), WAIT)
    assert results == [b""] * 200
    assert sorted(sink_of(server).payloads()) == sorted(bodies)
    if version == "h2":
        assert server.connections_accepted == 1


async def test_h2_client_queues_at_the_servers_stream_limit(
    start_server: ServerFactory, client_factory: Callable[..., HttpRequestClient]
) -> None:
    server = await start_server(h2_max_concurrent_streams=4, h2_window_size=16_384)
    client = client_factory(version="h2")
    bodies = [bytes([i]) * 40_000 for i in range(40)]  # several windows each: streams stay open a while
    results = await asyncio.wait_for(asyncio.gather(*(client.send(url(server), {}, b) for b in bodies)), WAIT)
    assert results == [b""] * 40
    assert sorted(sink_of(server).payloads()) == sorted(bodies)
    assert server.connections_accepted == 1
    assert server.wire_errors == []


async def test_h2_client_large_body_through_a_small_window(
    start_server: ServerFactory, client_factory: Callable[..., HttpRequestClient]
) -> None:
    server = await start_server(body_limit=8 * 1024 * 1024, h2_window_size=16_384)
    body = bytes(range(256)) * (5 * 1024 * 4)
    assert await client_factory(version="h2").send(url(server), {}, body) == b""
    assert hashlib.sha256(sink_of(server).payloads()[0]).digest() == hashlib.sha256(body).digest()


@pytest.mark.parametrize("version", VERSIONS)
async def test_client_connect_failure_is_transport_error(
    client_factory: Callable[..., HttpRequestClient], version: str
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        with pytest.raises(TransportError, match="cannot connect") as caught:
            await client_factory(version=version).send(f"http://127.0.0.1:{port}/v1/rpc/generate", {}, b"x")
    assert not isinstance(caught.value, AckTimeout)


@pytest.mark.parametrize("version", VERSIONS)
async def test_client_times_out_on_a_silent_worker(
    client_factory: Callable[..., HttpRequestClient], version: str
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.read(-1), WAIT)
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        client = client_factory(version=version, request_timeout=0.3)
        with pytest.raises(AckTimeout):
            await asyncio.wait_for(client.send(f"http://127.0.0.1:{port}/v1/rpc/generate", {}, b"x"), WAIT)
    finally:
        listener.close()


async def test_http1_client_sends_what_reqwest_sends(client_factory: Callable[..., HttpRequestClient]) -> None:
    seen: list[bytes] = []

    async def capture(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        seen.append(head + await asyncio.wait_for(reader.readexactly(7), WAIT))
        writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(capture, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        client = client_factory(version="http/1.1")
        sent = await client.send(f"http://127.0.0.1:{port}/v1/rpc/generate", {"request-id": REQUEST_ID}, b"payload")
        assert sent == b""
    finally:
        listener.close()
    head, _, body = seen[0].partition(b"\r\n\r\n")
    request_line, *lines = head.split(b"\r\n")
    fields = dict(line.split(b": ", 1) for line in lines)
    assert request_line == b"POST /v1/rpc/generate HTTP/1.1"
    assert fields[b"content-type"] == b"application/octet-stream"
    assert fields[b"request-id"] == REQUEST_ID.encode()
    assert fields[b"content-length"] == b"7"
    assert fields[b"host"] == f"127.0.0.1:{port}".encode()
    assert body == b"payload"


# --- the client against a scripted h2 worker (GOAWAY, RST_STREAM) ----------------------------------


class ScriptedH2Worker:
    """Accepts h2c connections and collects complete requests; a test script decides the answers."""

    def __init__(self) -> None:
        self.connections: list[ScriptedConnection] = []
        self.new_connection = asyncio.Event()
        self.listener: asyncio.Server | None = None

    async def start(self) -> int:
        self.listener = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self.listener.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = ScriptedConnection(reader, writer)
        self.connections.append(connection)
        self.new_connection.set()
        await connection.serve()

    def close(self) -> None:
        for connection in self.connections:
            connection.writer.close()
        if self.listener is not None:
            self.listener.close()


class ScriptedConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.bodies: dict[int, bytes] = {}
        self.complete: list[int] = []
        self.arrived = asyncio.Event()

    async def serve(self) -> None:
        self.h2.initiate_connection()
        self.flush()
        with contextlib.suppress(Exception):
            while data := await asyncio.wait_for(self.reader.read(65536), WAIT):
                for event in self.h2.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        self.bodies[event.stream_id] = b""
                    elif isinstance(event, h2.events.DataReceived):
                        self.bodies[event.stream_id] += event.data
                        self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        self.complete.append(event.stream_id)
                        self.arrived.set()
                self.flush()

    async def wait_complete(self, count: int) -> list[int]:
        async with asyncio.timeout(WAIT):
            while len(self.complete) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return list(self.complete)

    def answer(self, stream_id: int, status: int = 202) -> None:
        self.h2.send_headers(stream_id, [(b":status", str(status).encode()), (b"content-length", b"0")], True)
        self.flush()

    def reset(self, stream_id: int, code: int) -> None:
        self.h2.reset_stream(stream_id, code)
        self.flush()

    def goaway(self, last_stream_id: int, code: int = 0) -> None:
        frame = hyperframe.frame.GoAwayFrame(0)
        frame.last_stream_id, frame.error_code = last_stream_id, code
        self.writer.write(frame.serialize())  # behind h2's back, so this peer can still answer

    def flush(self) -> None:
        self.writer.write(self.h2.data_to_send())


@pytest.fixture
async def scripted_worker() -> AsyncIterator[ScriptedH2Worker]:
    worker = ScriptedH2Worker()
    await worker.start()
    yield worker
    worker.close()


def scripted_url(worker: ScriptedH2Worker) -> str:
    assert worker.listener is not None
    return f"http://127.0.0.1:{worker.listener.sockets[0].getsockname()[1]}/v1/rpc/generate"


async def test_h2_client_goaway_finishes_streams_below_last_id_and_fails_the_rest(
    scripted_worker: ScriptedH2Worker, client_factory: Callable[..., HttpRequestClient]
) -> None:
    client = client_factory(version="h2")
    sends = [asyncio.ensure_future(client.send(scripted_url(scripted_worker), {}, b"r%d" % i)) for i in range(4)]
    async with asyncio.timeout(WAIT):
        await scripted_worker.new_connection.wait()
    first = scripted_worker.connections[0]
    assert await first.wait_complete(4) == [1, 3, 5, 7]
    first.goaway(last_stream_id=3)
    first.answer(1)
    first.answer(3)
    results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), WAIT)
    assert results[:2] == [b"", b""]
    for failure in results[2:]:
        assert isinstance(failure, TransportError)
        assert "GOAWAY" in str(failure) and "not processed" in str(failure)

    scripted_worker.new_connection.clear()
    later = asyncio.ensure_future(client.send(scripted_url(scripted_worker), {}, b"later"))
    async with asyncio.timeout(WAIT):
        await scripted_worker.new_connection.wait()
    second = scripted_worker.connections[1]  # new requests go to a new connection
    assert await second.wait_complete(1) == [1]
    second.answer(1)
    assert await asyncio.wait_for(later, WAIT) == b""


async def test_h2_client_reset_stream_fails_only_that_request(
    scripted_worker: ScriptedH2Worker, client_factory: Callable[..., HttpRequestClient]
) -> None:
    client = client_factory(version="h2")
    sends = [asyncio.ensure_future(client.send(scripted_url(scripted_worker), {}, b"r%d" % i)) for i in range(3)]
    async with asyncio.timeout(WAIT):
        await scripted_worker.new_connection.wait()
    worker = scripted_worker.connections[0]
    await worker.wait_complete(3)
    worker.reset(3, h2.errors.ErrorCodes.REFUSED_STREAM)
    worker.answer(1)
    worker.answer(5)
    results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), WAIT)
    assert results[0] == b"" and results[2] == b""
    assert isinstance(results[1], TransportError) and "REFUSED_STREAM" in str(results[1])
    again = asyncio.ensure_future(client.send(scripted_url(scripted_worker), {}, b"again"))
    assert await worker.wait_complete(4) == [1, 3, 5, 7]  # same connection
    worker.answer(7)
    assert await asyncio.wait_for(again, WAIT) == b""
    assert len(scripted_worker.connections) == 1


async def test_h2_client_survives_our_servers_graceful_shutdown(
    start_server: ServerFactory, client_factory: Callable[..., HttpRequestClient]
) -> None:
    """Requests the server has started are answered after its GOAWAY; none is lost silently."""
    server = await start_server(h2_window_size=16_384)
    client = client_factory(version="h2")
    sends = [asyncio.ensure_future(client.send(url(server), {}, bytes([i]) * 200_000)) for i in range(5)]
    async with asyncio.timeout(WAIT):
        while not any(connection.session is not None for connection in server.connections):
            await asyncio.sleep(0.005)
    await asyncio.sleep(0.01)
    await asyncio.wait_for(server.close(), WAIT)
    results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), WAIT)
    accepted = [r for r in results if r == b""]
    failed = [r for r in results if isinstance(r, TransportError)]
    assert len(accepted) + len(failed) == 5
    assert len(sink_of(server).offers) == len(accepted)


# --- the GOAWAY filter (sans-IO) ------------------------------------------------------------------------

frames = st.lists(
    st.tuples(st.sampled_from([0x0, 0x1, 0x4, 0x6, 0x7, 0x8]), st.integers(0, 3), st.binary(max_size=40)),
    max_size=12,
)


def frame_bytes(frame_type: int, stream_id: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((frame_type, 0)) + stream_id.to_bytes(4, "big") + payload


def split(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        yield data[start:end]


@settings(max_examples=300, deadline=None)
@given(frames, st.lists(st.integers(0, 10_000), max_size=8), st.booleans())
def test_goaway_filter_lifts_only_well_formed_goaways(
    frame_list: list[tuple[int, int, bytes]], cuts: list[int], with_preface: bool
) -> None:
    wire = (PREFACE if with_preface else b"") + b"".join(frame_bytes(*f) for f in frame_list)
    expected_rest = (PREFACE if with_preface else b"") + b"".join(
        frame_bytes(*f) for f in frame_list if not (f[0] == 0x7 and f[1] == 0 and len(f[2]) >= 8)
    )
    expected_goaways = [
        Goaway(int.from_bytes(p[:4], "big") & 0x7FFF_FFFF, int.from_bytes(p[4:8], "big"), p[8:])
        for t, s, p in frame_list
        if t == 0x7 and s == 0 and len(p) >= 8
    ]
    goaway_filter = GoawayFilter(preface_length=len(PREFACE) if with_preface else 0)
    passed = b""
    lifted: list[Goaway] = []
    for chunk in split(wire, cuts):
        for part in goaway_filter.feed(chunk):
            if isinstance(part, Goaway):
                lifted.append(part)
            else:
                passed += part
    assert passed == expected_rest
    assert lifted == expected_goaways


def test_encode_goaway_matches_hyperframe() -> None:
    frame = hyperframe.frame.GoAwayFrame(0)
    frame.last_stream_id, frame.error_code, frame.additional_data = 7, 1, b"why"
    assert encode_goaway(7, 1, b"why") == frame.serialize()


def test_date_header_is_an_http_date() -> None:
    value = http_date().decode()
    assert value.endswith(" GMT") and len(value) == 29


# --- worker and caller end to end (planes.py and caller.py wiring) ---------------------------


@pytest.mark.parametrize("version", ["h2", "http/1.1"])
async def test_worker_and_caller_stream_over_http(tmp_path: Any, version: str) -> None:
    from reference_impl.caller import Caller, CallerConfig
    from reference_impl.discovery.file_store import FileDiscovery
    from reference_impl.worker import Worker

    seen: list[dict[str, str]] = []

    async def generate(request: Any, context: Any) -> Any:
        seen.append(dict(context.headers))
        for i in range(request["n"]):
            yield {"i": i}

    discovery = FileDiscovery(tmp_path)
    worker = Worker("demo", "backend", plane="http", discovery=discovery)
    worker.serve("generate", generate)
    await worker.start()
    try:
        (record,) = worker.records
        assert record.transport_kind == "http"
        assert record.transport_address.startswith("http://127.0.0.1:")
        assert record.transport_address.endswith("/v1/rpc/generate")
        async with Caller(discovery, CallerConfig.from_env(http={"version": version})) as caller:
            stream = await asyncio.wait_for(caller.generate("demo.backend.generate", {"n": 3}), WAIT)
            items = await asyncio.wait_for(stream.collect(), WAIT)
        assert items == [{"i": 0}, {"i": 1}, {"i": 2}]
        assert seen[0]["request-id"] == stream.request_id
        assert seen[0]["x-frontend-send-ts-ns"].isdigit()
    finally:
        await worker.stop(drain_timeout=1.0)
