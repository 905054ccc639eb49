"""Inputs the fuzz targets found that once crashed the reference implementation, each kept as a test."""

from __future__ import annotations

import json

import h2.config
import h2.connection
import h2.errors
import pytest
from hyperframe.frame import GoAwayFrame, RstStreamFrame

from reference_impl.errors import MalformedMessage
from reference_impl.protocol import annotated
from reference_impl.protocol.envelope import parse_envelope
from reference_impl.protocol.messages import CallHomeHandshake, RequestControlMessage, ResponseStreamPrologue
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.protocol.response_stream import CallerStream, ProtocolViolation
from reference_impl.transport.http.server import HttpRequestServer, _HttpConnection
from reference_impl.wire import two_part
from tests.fuzz.fuzz_input import pack
from tests.fuzz.http_targets import (
    ENDPOINT,
    RecordingSink,
    RecordingTransport,
    check_http2,
    event_loop,
    h2_frames,
    until_reading,
)
from tests.fuzz.targets import TARGETS

# --- in-stream error items: annotated.unwrap ---------------------------------------------------------

# msgpack nests up to 1024 levels, deeper than repr() can follow from inside a call stack.
DEEP_MSGPACK_ERROR = b"\x81\xa5error" + b"\x91" * 1020 + b"\x01"


def test_an_error_item_nested_deeper_than_repr_can_go_is_still_an_error() -> None:
    item = PayloadCodec.MSGPACK.decode(DEEP_MSGPACK_ERROR)
    unwrapped = annotated.unwrap(item)
    assert unwrapped.data is None
    assert unwrapped.error == "<list nested too deeply to show>"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"event": "error", "comment": 5}, "5"),  # once: TypeError, 'int' object is not iterable
        ({"event": "error", "comment": "one comment"}, "one comment"),  # once: 'o; n; e; ...'
        ({"event": "error", "comment": ["a", "b"]}, "a; b"),
        ({"event": "error", "error": ""}, "worker reported an error"),  # once: an empty message
        ({"event": "error", "error": {"message": ""}}, "{'message': ''}"),
        ({"event": "error", "comment": []}, "worker reported an error"),
        ({"error": {"message": "boom", "error_type": "x"}}, "boom"),
    ],
)
def test_any_error_item_shape_gives_a_non_empty_message(item: dict[str, object], message: str) -> None:
    assert annotated.unwrap(item) == annotated.Unwrapped(None, message)


def test_the_fuzz_target_accepts_the_deep_error_item() -> None:
    wrapper = b"\x82\xa4data" + DEEP_MSGPACK_ERROR + b"\xaecomplete_final\xc2"
    TARGETS["messages"](pack(wrapper, 5))


# --- lone surrogate escapes in control messages -------------------------------------------------------

LONE = "\\ud800"  # JSON text for an unpaired UTF-16 surrogate, which serde_json refuses


def control_json(*, info_subject: str = "s", request_id: str = "r", metadata_value: str = "v") -> bytes:
    info = f'{{"address":"127.0.0.1:1","subject":"{info_subject}","context":"{request_id}","stream_type":"response"}}'
    return (
        f'{{"id":"{request_id}","request_type":"single_in","response_type":"many_out",'
        f'"connection_info":{{"transport":"tcp_server","info":{json.dumps(info)}}},'
        f'"metadata":{{"k":"{metadata_value}"}}}}'
    ).encode()


BROKEN_INFO = (
    b'{"id":"r","request_type":"single_in","response_type":"many_out",'
    b'"connection_info":{"transport":"tcp_server","info":"' + LONE.encode() + b'"}}'
)


@pytest.mark.parametrize(
    "raw",
    [control_json(info_subject=LONE), control_json(request_id=LONE), control_json(metadata_value=LONE), BROKEN_INFO],
    ids=["call-home subject", "request id", "metadata", "connection info"],
)
def test_a_lone_surrogate_in_a_request_is_malformed_not_a_crash_later(raw: bytes) -> None:
    """Such a string once raised UnicodeEncodeError where the worker read the call-home details or dialled back."""
    with pytest.raises(MalformedMessage, match="surrogate"):
        parse_envelope(two_part.encode(raw, b"{}")).callhome()


def test_a_paired_surrogate_escape_is_an_ordinary_character() -> None:
    message = RequestControlMessage.from_json_bytes(control_json(metadata_value="\\ud83d\\ude00"))
    assert message.metadata == {"k": "\U0001f600"}
    assert RequestControlMessage.from_json_bytes(message.to_json_bytes()) == message


def test_a_lone_surrogate_in_the_handshake_or_prologue_is_malformed() -> None:
    with pytest.raises(MalformedMessage):
        CallHomeHandshake.from_json_bytes(f'{{"subject":"{LONE}","stream_type":"response"}}'.encode())
    with pytest.raises(MalformedMessage):
        ResponseStreamPrologue.from_json_bytes(f'{{"error":"{LONE}"}}'.encode())
    caller = CallerStream()
    events = list(caller.receive_data(two_part.encode(f'{{"subject":"{LONE}","stream_type":"response"}}'.encode())))
    assert len(events) == 1
    assert isinstance(events[0], ProtocolViolation)


def test_the_fuzz_target_accepts_the_surrogate_envelope() -> None:
    TARGETS["messages"](pack(two_part.encode(control_json(info_subject=LONE), b"{}"), 1))


# --- HTTP/2: a stream error must not become a connection error ----------------------------------------


def test_data_after_end_stream_resets_only_that_stream_and_other_streams_are_answered() -> None:
    """Once: the server offered the reset stream, failed to answer it and closed the whole connection.

    h2 resets a stream that gets DATA after END_STREAM while it reads the bytes; the session
    handled that stream's request afterwards, its answer raised StreamClosedError, and the
    connection went down with a GOAWAY (reason ``"1"``), taking stream 1 with it.
    """
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    head = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"w"), (b":path", b"/v1/rpc/generate")]
    client.send_headers(1, head)
    client.send_headers(3, head, end_stream=True)
    data_after_end = (1).to_bytes(3, "big") + b"\x00\x00" + (3).to_bytes(4, "big") + b"x"
    opening = client.data_to_send() + data_after_end
    client.send_data(1, b"body", end_stream=True)
    wire = opening + client.data_to_send()

    sink = RecordingSink(None)
    server = HttpRequestServer(sink)
    server.endpoints.add(ENDPOINT)
    transport = RecordingTransport()
    connection = _HttpConnection(server)

    async def exchange() -> None:
        connection.connection_made(transport)
        connection.data_received(wire)
        await until_reading(transport, connection)

    event_loop().run_until_complete(exchange())
    assert sink.offers == [(ENDPOINT, b"body")]
    assert server.wire_errors == []
    assert not transport.closed
    output = bytes(transport.output)
    assert check_http2(output, transport, failed=False) == [202]
    resets = [f for f in h2_frames(output) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(3, h2.errors.ErrorCodes.STREAM_CLOSED)]
    assert not any(isinstance(f, GoAwayFrame) for f in h2_frames(output))


def test_a_frame_for_a_stream_that_is_not_open_is_named_in_the_goaway() -> None:
    """Once the GOAWAY's reason read ``256``: h2's NoSuchStreamError prints as the bare stream id."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    head = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"w"), (b":path", b"/v1/rpc/generate")]
    client.send_headers(1, head, end_stream=True)
    data_on_idle_stream = (1).to_bytes(3, "big") + b"\x00\x00" + (256).to_bytes(4, "big") + b"x"

    sink = RecordingSink(None)
    server = HttpRequestServer(sink)
    server.endpoints.add(ENDPOINT)
    transport = RecordingTransport()
    connection = _HttpConnection(server)

    async def exchange() -> None:
        connection.connection_made(transport)
        connection.data_received(client.data_to_send())
        await until_reading(transport, connection)  # two reads: the request is served before the bad frame comes
        connection.data_received(data_on_idle_stream)
        await until_reading(transport, connection)

    event_loop().run_until_complete(exchange())
    assert sink.offers == [(ENDPOINT, b"")]
    output = bytes(transport.output)
    assert check_http2(output, transport, failed=True) == [202]
    goaway = h2_frames(output)[-1]
    assert isinstance(goaway, GoAwayFrame)
    assert goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert goaway.additional_data == b"NoSuchStreamError: a frame for stream 256, which is not open"
    assert server.wire_errors == ["HTTP/2 from 127.0.0.1:40000: " + goaway.additional_data.decode()]


def test_an_early_answer_to_a_stream_whose_end_is_in_the_same_read_keeps_the_connection() -> None:
    """Once: the early 405 tried to reset a stream h2 had already closed, and the connection fell.

    h2 reads a whole part before the session sees its events: the GET's END_STREAM (an empty
    DATA frame) was already in h2's state when the session answered the GET and reset it, so
    the reset raised StreamClosedError and the 202 already queued for stream 1 was thrown away.
    """
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    post = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"w"), (b":path", b"/v1/rpc/generate")]
    client.send_headers(1, post, end_stream=True)
    client.send_headers(3, [(b":method", b"GET"), *post[1:]])
    client.send_data(3, b"", end_stream=True)

    sink = RecordingSink(None)
    server = HttpRequestServer(sink)
    server.endpoints.add(ENDPOINT)
    transport = RecordingTransport()
    connection = _HttpConnection(server)

    async def exchange() -> None:
        connection.connection_made(transport)
        connection.data_received(client.data_to_send())
        await until_reading(transport, connection)

    event_loop().run_until_complete(exchange())
    assert sink.offers == [(ENDPOINT, b"")]
    assert server.wire_errors == []
    assert not transport.closed
    assert check_http2(bytes(transport.output), transport, failed=False) == [202, 405]
