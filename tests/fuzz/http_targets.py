"""Fuzz targets for the worker's HTTP request plane: arbitrary bytes into one server connection.

The connection (``_HttpConnection``: protocol sniffing, then ``Http1ServerSession`` or
``Http2ServerSession``) is driven through a recording transport, with no sockets.  Whatever
arrives: no exception out of the protocol callbacks; what the server writes is well-formed
HTTP/1.1 responses or HTTP/2 frames; bad input ends in a clear error (a 4xx with a reason
and ``connection: close``, or a GOAWAY with an error code and a reason); the sink sees only
bodies within the limit, one per accepted request; and the server holds no more than the
header and body limits allow.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import hpack
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, SettingsFrame

from reference_impl.transport.http.http1_server import Http1ServerSession
from reference_impl.transport.http.http2_server import PREFACE, Http2ServerSession
from reference_impl.transport.http.server import HttpRequestServer, _HttpConnection
from tests.fuzz.checks import require
from tests.fuzz.fuzz_input import FuzzInput

ENDPOINT = "generate"
BODY_LIMITS = (0, 16, 1024, 65536)
HEADER_LIMITS = (256, 4096)
STREAM_LIMITS = (2, 100)
WINDOWS = (65_535, 1 << 20)
REJECTIONS = (None, "Server overloaded: worker at capacity")


class RecordingTransport(asyncio.Transport):
    """Keeps what the server writes; refuses writes after ``write_eof`` as asyncio's socket transports do."""

    def __init__(self) -> None:
        super().__init__()
        self.output = bytearray()
        self.closed = False
        self.eof_written = False
        self.writes_after_close = 0
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self.closed:
            self.writes_after_close += 1
            return
        self.output += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if not self.closed:
            self.eof_written = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0


@dataclass
class RecordingSink:
    rejection: str | None
    offers: list[tuple[str, bytes]] = field(default_factory=list)

    def offer(
        self,
        plane: str,
        route_key: str,
        payload: bytes,
        headers: Mapping[str, str],
        on_done: Callable[[], None] | None = None,
    ) -> str | None:
        """Runs nothing: the HTTP server never asks for ``on_done``, so there is nothing to end."""
        self.offers.append((route_key, payload))
        return self.rejection


_loop: asyncio.AbstractEventLoop | None = None


def event_loop() -> asyncio.AbstractEventLoop:
    """One private loop for every input: HTTP/1.1's lingering close schedules its final close on it."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop


def fuzz_http1(raw: bytes) -> None:
    _fuzz_http(FuzzInput.parse(raw), prefix=b"")


def fuzz_http2(raw: bytes) -> None:
    """The stream follows the h2c preface, so that mutations explore HTTP/2 rather than the sniffing."""
    _fuzz_http(FuzzInput.parse(raw), prefix=PREFACE)


def _fuzz_http(fuzz: FuzzInput, prefix: bytes) -> None:
    sink = RecordingSink(fuzz.choose(1, REJECTIONS))
    server = HttpRequestServer(
        sink,
        body_limit=fuzz.choose(0, BODY_LIMITS),
        max_header_size=HEADER_LIMITS[fuzz.flag(1, 1)],
        h2_max_concurrent_streams=STREAM_LIMITS[fuzz.flag(1, 2)],
        h2_window_size=WINDOWS[fuzz.flag(1, 3)],
    )
    server.endpoints.add(ENDPOINT)
    chunks = fuzz.chunks()
    if prefix:
        chunks.insert(0, prefix)
    shutdown = fuzz.flag(2, 0)
    transport = RecordingTransport()
    connection = _HttpConnection(server)
    event_loop().run_until_complete(_drive(connection, transport, chunks, shutdown))
    try:
        _check_output(connection, transport, server, sink)
    finally:
        transport.output.clear()  # the pending lingering close keeps the transport alive for a while


async def _drive(
    connection: _HttpConnection, transport: RecordingTransport, chunks: list[bytes], shutdown: bool
) -> None:
    connection.connection_made(transport)
    largest = 0
    for chunk in chunks:
        if transport.closed:
            break  # asyncio delivers nothing after close()
        connection.data_received(chunk)
        await until_reading(transport, connection)
        largest = max(largest, len(chunk))
        _check_bounds(connection, largest)
    if shutdown and not transport.closed:
        connection.shutdown()
    if not transport.closed:
        connection.eof_received()
    connection.connection_lost(None)


async def until_reading(transport: RecordingTransport, connection: _HttpConnection | None = None) -> None:
    """As asyncio does, deliver nothing more while the connection has paused reading (it works in turns).

    With ``connection``, also until it has worked on what it was handed (a read is worked on in the loop's
    next pass), so that what follows sees its effects.
    """
    while not transport.closed and (
        not transport.reading or (connection is not None and connection._continuation is not None)
    ):
        await asyncio.sleep(0)


def _check_bounds(connection: _HttpConnection, largest_chunk: int) -> None:
    """h11 checks its header limit when it needs more data, so it may hold one read beyond it."""
    server = connection.server
    session = connection.session
    if isinstance(session, Http1ServerSession):
        held = len(session.body)
        require(held <= server.body_limit, f"HTTP/1.1 holds {held} body bytes, limit {server.body_limit}")
        unparsed = len(session.h11.trailing_data[0])
        require(unparsed <= server.max_header_size + largest_chunk, f"h11 holds {unparsed} unparsed bytes")
    elif isinstance(session, Http2ServerSession):
        for stream_id, stream in session.streams.items():
            held = len(stream.body)
            require(held <= server.body_limit, f"stream {stream_id} holds {held} body bytes")
        open_streams = len(session.streams)
        require(open_streams <= server.h2_max_concurrent_streams, f"{open_streams} streams held")


def _check_output(
    connection: _HttpConnection, transport: RecordingTransport, server: HttpRequestServer, sink: RecordingSink
) -> None:
    require(transport.writes_after_close == 0, "the server wrote after closing the connection")
    for route_key, payload in sink.offers:
        require(route_key == ENDPOINT, f"offered to {route_key!r}")
        require(len(payload) <= server.body_limit, f"a {len(payload)}-byte body passed a {server.body_limit} limit")
    answered = 503 if sink.rejection else 202
    if connection.protocol == "http/1.1":
        statuses = check_http1(bytes(transport.output), transport, failed=bool(server.wire_errors))
    elif connection.protocol == "h2":
        statuses = check_http2(bytes(transport.output), transport, failed=bool(server.wire_errors))
    else:
        require(not transport.output, "the server answered before it knew the protocol")
        statuses = []
    require(statuses.count(answered) == len(sink.offers), f"{len(sink.offers)} offers, statuses {statuses}")


def says_why(reason: bytes) -> bool:
    """A reason a person can act on has words in it, not just a number."""
    return any(character.isalpha() for character in reason.decode("utf-8", "replace"))


# --- HTTP/1.1 output -------------------------------------------------------------------------------

_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5]\d\d) [^\r\n]*")


def check_http1(output: bytes, transport: RecordingTransport, *, failed: bool) -> list[int]:
    """Split the output into responses, checking each one's framing; their statuses."""
    statuses: list[int] = []
    last: dict[bytes, bytes] = {}
    last_body = b""
    position = 0
    while position < len(output):
        end = output.find(b"\r\n\r\n", position)
        require(end >= 0, "a response head is cut short")
        status_line, *lines = output[position:end].split(b"\r\n")
        match = _STATUS_LINE.fullmatch(status_line)
        require(match is not None, f"bad status line {status_line[:80]!r}")
        assert match is not None
        headers: dict[bytes, bytes] = {}
        for line in lines:
            name, colon, value = line.partition(b":")
            require(bool(colon) and bool(name) and name == name.strip(), f"bad header line {line[:80]!r}")
            headers[name.lower()] = value.strip()
        position = end + 4
        status = int(match[1])
        if status < 200:
            continue
        require(headers.get(b"content-length", b"").isdigit(), f"{status} without a content-length")
        length = int(headers[b"content-length"])
        require(len(output) - position >= length, "a response body is cut short")
        last, last_body = headers, output[position : position + length]
        position += length
        statuses.append(status)
    if failed:
        require(bool(statuses) and statuses[-1] >= 400, f"a malformed request answered with {statuses[-1:]}")
        require(last.get(b"connection") == b"close", "a malformed request did not end the connection")
        require(says_why(last_body), f"a malformed request answered without a reason: {last_body[:80]!r}")
        require(transport.eof_written or transport.closed, "the connection stayed open after a malformed request")
    return statuses


# --- HTTP/2 output -----------------------------------------------------------------------------------


def h2_frames(output: bytes) -> list[Frame]:
    frames: list[Frame] = []
    position = 0
    while position < len(output):
        require(len(output) - position >= 9, "a frame header is cut short")
        frame, length = Frame.parse_frame_header(memoryview(output[position : position + 9]))
        require(len(output) - position - 9 >= length, "a frame is cut short")
        frame.parse_body(memoryview(output[position + 9 : position + 9 + length]))
        frames.append(frame)
        position += 9 + length
    return frames


def check_http2(output: bytes, transport: RecordingTransport, *, failed: bool) -> list[int]:
    """Parse every frame and header block the server wrote; the statuses of the answered streams."""
    frames = h2_frames(output)
    require(bool(frames) and isinstance(frames[0], SettingsFrame), "the server preface is not a SETTINGS frame")
    decoder = hpack.Decoder()
    decoder.max_allowed_table_size = 1 << 32  # the peer's SETTINGS may have raised it; not checked here
    block = b""
    heads: dict[int, dict[bytes, bytes]] = {}
    bodies: dict[int, int] = {}
    statuses: list[int] = []
    for frame in frames:
        if isinstance(frame, (HeadersFrame, ContinuationFrame)):
            block += frame.data
            if "END_HEADERS" not in frame.flags:
                continue
            head = dict(decoder.decode(block, raw=True))
            block = b""
            status = head.get(b":status", b"")
            require(status.isdigit(), f"stream {frame.stream_id} answered without a :status")
            heads[frame.stream_id] = head
            bodies[frame.stream_id] = 0
            statuses.append(int(status))
        elif isinstance(frame, DataFrame):
            require(frame.stream_id in heads, f"DATA before HEADERS on stream {frame.stream_id}")
            bodies[frame.stream_id] += len(frame.data)
        if "END_STREAM" in frame.flags:
            declared = heads[frame.stream_id].get(b"content-length")
            require(declared == str(bodies[frame.stream_id]).encode(), f"content-length {declared!r} is wrong")
    if failed:
        last = frames[-1]
        require(isinstance(last, GoAwayFrame), f"a protocol error did not end with a GOAWAY but {last!r}")
        assert isinstance(last, GoAwayFrame)
        require(last.error_code != 0, "a protocol error ended with a NO_ERROR GOAWAY")
        require(says_why(last.additional_data), f"the GOAWAY does not say why: {last.additional_data[:80]!r}")
        require(transport.eof_written or transport.closed, "the connection stayed open after a protocol error")
    return statuses
