"""Bounded memory on big inputs: what a parser holds follows its limits, not the size of the input.

Each case pushes many times the limit through one parser, in socket-sized chunks, and
measures the peak of Python allocations with tracemalloc.  The bounds are a few limits
plus a chunk: a parser that kept what it had consumed would need the whole input.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator

import h2.config
import h2.connection
import pytest

from reference_impl.errors import FrameTooLarge
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.protocol.response_stream import CallerStream, ItemReceived, ProtocolViolation, WorkerStream
from reference_impl.transport.http.http1_server import Http1ServerSession
from reference_impl.transport.http.http2_server import PREFACE, Http2ServerSession
from reference_impl.transport.http.server import HttpRequestServer, _HttpConnection
from reference_impl.wire import two_part
from reference_impl.wire.request_frame import RequestFrameDecoder, encode_request
from reference_impl.wire.two_part import TwoPartDecoder
from tests.fuzz.http_targets import (
    ENDPOINT,
    RecordingSink,
    RecordingTransport,
    check_http2,
    event_loop,
    until_reading,
)

KIB = 1024
MIB = 1024 * KIB
CHUNK = 64 * KIB  # what one socket read delivers
LIMIT = 1 * MIB
INPUT = 16 * MIB


def chunks_of(stream: bytes) -> Iterator[bytes]:
    for start in range(0, len(stream), CHUNK):
        yield stream[start : start + CHUNK]


def peak_while(run: Callable[[], None]) -> int:
    """Peak traced memory above what was allocated before ``run``."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_two_part_decoder_holds_about_one_frame_of_a_long_stream() -> None:
    frame = list(chunks_of(two_part.encode(b"h", b"x" * (LIMIT - two_part.PRELUDE_SIZE - 1))))
    decoder = TwoPartDecoder(max_message_size=LIMIT)
    received = 0

    def run() -> None:
        nonlocal received
        for _ in range(INPUT // LIMIT):
            for chunk in frame:
                decoder.feed(chunk)
                received += sum(len(message.data) for message in decoder)  # each message dropped once counted

    peak = peak_while(run)
    assert received > INPUT - MIB
    assert peak < 4 * LIMIT, f"peak {peak} bytes for a {LIMIT}-byte limit"


def test_two_part_decoder_refuses_a_huge_declaration_without_buffering_it() -> None:
    decoder = TwoPartDecoder(max_message_size=LIMIT)
    declared = two_part.PRELUDE.pack(0, INPUT, 0)
    zeros = bytes(CHUNK)

    def run() -> None:
        decoder.feed(declared + zeros[len(declared) :])
        with pytest.raises(FrameTooLarge):
            decoder.next_message()
        for _ in range(INPUT // CHUNK):
            with pytest.raises(FrameTooLarge):
                decoder.feed(zeros)  # poisoned: the rest is never buffered

    peak = peak_while(run)
    assert peak < 4 * CHUNK, f"peak {peak} bytes"


def test_request_frame_decoder_holds_about_one_frame_of_a_long_stream() -> None:
    frame = list(chunks_of(encode_request("generate", {"k": "v"}, b"p" * (LIMIT - 100))))
    decoder = RequestFrameDecoder(max_message_size=LIMIT)
    received = 0

    def run() -> None:
        nonlocal received
        for _ in range(INPUT // LIMIT):
            for chunk in frame:
                decoder.feed(chunk)
                received += sum(len(request.payload) for request in decoder)

    peak = peak_while(run)
    assert received > INPUT - MIB
    assert peak < 4 * LIMIT, f"peak {peak} bytes"


def test_caller_stream_holds_what_the_consumer_has_not_taken_yet() -> None:
    """Thousands of items through one stream: held memory is one chunk of frames, not the stream."""
    worker = WorkerStream("s", PayloadCodec.MSGPACK)
    opening = worker.handshake() + worker.prologue()
    item = b"".join(worker.item(b"z" * (8 * KIB)) for _ in range(8))
    caller = CallerStream(PayloadCodec.MSGPACK, max_message_size=LIMIT)
    items = 0

    def run() -> None:
        nonlocal items
        for event in caller.receive_data(opening):
            assert not isinstance(event, ProtocolViolation)
        for _ in range(INPUT // len(item)):
            for event in caller.receive_data(item):
                assert isinstance(event, ItemReceived)
                items += 1

    peak = peak_while(run)
    assert items * 8 * KIB > INPUT - MIB
    assert peak < 4 * len(item), f"peak {peak} bytes for {len(item)}-byte chunks"


def drive(session_input: Iterator[bytes], body_limit: int) -> tuple[HttpRequestServer, RecordingTransport, int]:
    sink = RecordingSink(None)
    server = HttpRequestServer(sink, body_limit=body_limit)
    server.endpoints.add(ENDPOINT)
    transport = RecordingTransport()
    connection = _HttpConnection(server)

    async def feed() -> None:
        connection.connection_made(transport)
        for chunk in session_input:
            if transport.closed:
                break
            connection.data_received(chunk)
            await until_reading(transport, connection)
        connection.eof_received()

    peak = peak_while(lambda: event_loop().run_until_complete(feed()))
    assert isinstance(connection.session, (Http1ServerSession, Http2ServerSession))
    assert sink.offers == []
    return server, transport, peak


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_http1_oversized_body_is_refused_and_dropped_not_buffered(framing: str) -> None:
    def requests() -> Iterator[bytes]:
        if framing == "chunked":
            yield b"POST /v1/rpc/generate HTTP/1.1\r\nhost: w\r\ntransfer-encoding: chunked\r\n\r\n"
            piece = b"%x\r\n" % CHUNK + b"b" * CHUNK + b"\r\n"
        else:
            yield b"POST /v1/rpc/generate HTTP/1.1\r\nhost: w\r\ncontent-length: %d\r\n\r\n" % INPUT
            piece = b"b" * CHUNK
        for _ in range(INPUT // CHUNK):
            yield piece

    _, transport, peak = drive(requests(), body_limit=LIMIT)
    assert bytes(transport.output).startswith(b"HTTP/1.1 413 ")
    assert peak < 2 * LIMIT + 4 * CHUNK, f"peak {peak} bytes"


def test_http2_oversized_body_resets_the_stream_and_is_not_buffered() -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    head = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"w"), (b":path", b"/v1/rpc/generate")]
    client.send_headers(1, head)
    opening = client.data_to_send()
    assert opening.startswith(PREFACE)
    data_frame = b"".join(
        (16 * KIB).to_bytes(3, "big") + b"\x00\x00" + (1).to_bytes(4, "big") + b"d" * (16 * KIB) for _ in range(4)
    )

    def frames() -> Iterator[bytes]:
        yield opening
        for _ in range(INPUT // len(data_frame)):
            yield data_frame

    server, transport, peak = drive(frames(), body_limit=LIMIT)
    assert 413 in check_http2(bytes(transport.output), transport, failed=bool(server.wire_errors))
    assert peak < 2 * LIMIT + 4 * CHUNK, f"peak {peak} bytes"
