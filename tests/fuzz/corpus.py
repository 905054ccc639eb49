"""Well-formed inputs for each target: atheris starts from them, hypothesis mutates them.

Random bytes rarely get past a length prefix or a request line; mutations of valid
traffic reach the states behind them.
"""

from __future__ import annotations

import h2.config
import h2.connection

from reference_impl.protocol.envelope import build_envelope
from reference_impl.protocol.messages import (
    KILL,
    SENTINEL,
    STOP,
    CallHomeHandshake,
    ConnectionInfo,
    RequestControlMessage,
    ResponseStreamPrologue,
    TcpStreamConnectionInfo,
    encode_item,
)
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.protocol.response_stream import WorkerStream
from reference_impl.transport.http.http2_server import PREFACE
from reference_impl.wire import two_part
from reference_impl.wire.request_frame import encode_ack, encode_request
from tests.fuzz.fuzz_input import pack

CHUNKINGS = (0, 1, 3, 17)


def _control(codec: str = "json") -> RequestControlMessage:
    info = TcpStreamConnectionInfo("127.0.0.1:4000", "subject-1", "req-1")
    return RequestControlMessage("req-1", ConnectionInfo.for_tcp(info), payload_codec=codec, metadata={"k": "v"})


def _response_stream(codec: PayloadCodec, items: int, *, checksum: bool = False, error: str | None = None) -> bytes:
    worker = WorkerStream("subject-1", codec, write_checksum=checksum)
    frames = [worker.handshake(), worker.prologue(error)]
    if error is None:
        frames += [worker.item({"data": {"i": i, "text": "x" * i}}) for i in range(items)]
        frames.append(worker.final())
    frames.append(worker.sentinel())
    return b"".join(frames)


def two_part_seeds() -> list[bytes]:
    frames = two_part.encode(b'{"h":1}', b"body") + two_part.encode(SENTINEL) + two_part.encode(data=b"{}")
    checked = two_part.encode(b"hd", b"data" * 10, write_checksum=True)
    return [
        pack(stream, limit, verify, 0, chunking)
        for stream in (frames, checked)
        for limit in (1, 3)
        for verify in (0, 1)
        for chunking in CHUNKINGS[:2]
    ]


def request_frame_seeds() -> list[bytes]:
    frames = encode_request("generate", {"x-request-id": "1"}, b"payload") + encode_request(b"\xff", None, b"")
    return [pack(frames, limit, 0, 0, chunking) for limit in (2, 4) for chunking in CHUNKINGS]


def tcp_ack_seeds() -> list[bytes]:
    acks = encode_ack("") + encode_ack("Server overloaded: worker at capacity") + encode_ack("Server unavailable: x")
    return [pack(acks, 3, 0, 0, chunking) for chunking in CHUNKINGS]


def caller_stream_seeds() -> list[bytes]:
    seeds = []
    for codec_index, codec in enumerate(PayloadCodec):
        seeds.append(pack(_response_stream(codec, 3), codec_index, 2, 0, 0))
        seeds.append(pack(_response_stream(codec, 2, checksum=True), codec_index, 2, 2, 5))
        seeds.append(pack(_response_stream(codec, 0, error="boom"), codec_index, 1, 0, 1))
        seeds.append(pack(_response_stream(codec, 2), codec_index, 2, 1 << 2, 7))  # the caller sends "stop"
    return seeds


def worker_stream_seeds() -> list[bytes]:
    return [pack(two_part.encode(STOP) + two_part.encode(KILL), 0, 0, 0, chunking) for chunking in CHUNKINGS]


def messages_seeds() -> list[bytes]:
    handshake = CallHomeHandshake("subject-1").to_json_bytes()
    prologue = ResponseStreamPrologue("failed", {"code": 1}).to_json_bytes()
    return [
        pack(_control().to_json_bytes(), 0),
        pack(build_envelope(_control(), {"n": 3}), 1),
        pack(build_envelope(_control("msgpack"), [1, 2]), 1),
        pack(handshake, 2),
        pack(prologue, 3),
        pack(encode_item(PayloadCodec.JSON, {"event": "error", "error": {"message": "m"}}), 4),
        pack(encode_item(PayloadCodec.MSGPACK, {"data": 1, "comment": ["a"]}), 5),
        pack(SENTINEL, 6),
    ]


def _post(body: bytes, *, target: bytes = b"/v1/rpc/generate", extra: bytes = b"") -> bytes:
    length = b"content-length: " + str(len(body)).encode() + b"\r\n"
    return b"POST " + target + b" HTTP/1.1\r\nhost: w\r\n" + length + extra + b"\r\n" + body


def http1_seeds() -> list[bytes]:
    chunked = b"POST /v1/rpc/generate HTTP/1.1\r\nhost: w\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    pipelined = _post(b"x" * 20) + _post(b"{}", target=b"/v1/rpc/other") + b"GET /v1/rpc/generate HTTP/1.1\r\n\r\n"
    expect = _post(b"body", extra=b"expect: 100-continue\r\nrequest-id: 5f0d6a1e-6a3c-4f0e-9d2b-7c1e2a3b4c5d\r\n")
    streams = [_post(b"hello"), chunked, pipelined, expect, _post(b"", target=b"/elsewhere")]
    return [
        pack(stream, limit, options, 0, chunking)
        for stream in streams
        for limit in (2, 1)
        for options in (0, 3)
        for chunking in (0, 5)
    ]


def _h2_client_bytes(bodies: list[bytes], *, reset: bool = False) -> bytes:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    for index, body in enumerate(bodies):
        stream_id = 1 + 2 * index
        headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"w"), (b":path", b"/v1/rpc/generate")]
        client.send_headers(stream_id, [*headers, (b"content-length", str(len(body)).encode())])
        client.send_data(stream_id, body, end_stream=True)
    if reset:
        head = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"w"), (b":path", b"/v1/rpc/x")]
        client.send_headers(1 + 2 * len(bodies), head)
        client.reset_stream(1 + 2 * len(bodies))
    client.ping(b"12345678")
    wire = client.data_to_send()
    assert wire.startswith(PREFACE)
    return wire[len(PREFACE) :]


def http2_seeds() -> list[bytes]:
    streams = [_h2_client_bytes([b"hello"]), _h2_client_bytes([b"a" * 30, b"", b"{}"], reset=True)]
    return [
        pack(stream, limit, options, 0, chunking)
        for stream in streams
        for limit in (2, 1)
        for options in (0, 5)
        for chunking in (0, 9)
    ]


SEEDS = {
    "two_part": two_part_seeds,
    "request_frame": request_frame_seeds,
    "tcp_ack": tcp_ack_seeds,
    "caller_stream": caller_stream_seeds,
    "worker_stream": worker_stream_seeds,
    "messages": messages_seeds,
    "http1": http1_seeds,
    "http2": http2_seeds,
}
