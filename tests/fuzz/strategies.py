"""Hypothesis strategies for fuzz inputs: garbage, mutated seeds, and near-valid traffic per target.

Each strategy yields one raw input in the ``fuzz_input`` format, so that a failing example
can be replayed through atheris or by calling the target directly.
"""

from __future__ import annotations

import json

import h2.config
import h2.connection
from hypothesis import strategies as st

from reference_impl.protocol.messages import KILL, SENTINEL, STOP, encode_final, encode_item
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.protocol.response_stream import WorkerStream
from reference_impl.transport.http.http2_goaway import encode_goaway
from reference_impl.transport.http.http2_server import PREFACE
from reference_impl.wire import two_part
from reference_impl.wire.request_frame import encode_ack, encode_request
from tests.fuzz.corpus import SEEDS
from tests.fuzz.fuzz_input import OPTION_COUNT, pack
from tests.fuzz.stream_targets import CODECS
from tests.strategies import bodies, header_maps, headers, json_values

option_bytes = st.lists(st.integers(0, 255), min_size=OPTION_COUNT, max_size=OPTION_COUNT)
# Chunkings that matter most: whole, byte by byte, small and large random pieces.
chunkings = st.sampled_from([0, 1, 2, 3, 7, 31, 200])


@st.composite
def with_options(draw: st.DrawFn, streams: st.SearchStrategy[bytes]) -> bytes:
    options = draw(option_bytes)
    options[-1] = draw(chunkings)
    return pack(draw(streams), *options)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed after a few byte-level edits, as a mutation fuzzer would make them."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["set", "insert", "delete", "truncate", "repeat", "max"]))
        if edit == "set" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif edit == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif edit == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        elif edit == "truncate":
            del data[position:]
        elif edit == "repeat":
            data[position:position] = data[position : position + draw(st.integers(1, 64))]
        elif edit == "max" and position < len(data):
            data[position : position + 4] = b"\xff\xff\xff\xff"
    return bytes(data)


# --- near-valid traffic ------------------------------------------------------------------------------


@st.composite
def two_part_streams(draw: st.DrawFn) -> bytes:
    frames = []
    for header, data in draw(st.lists(st.tuples(headers, bodies), max_size=5)):
        frame = bytearray(two_part.encode(header, data, write_checksum=draw(st.booleans())))
        if draw(st.integers(0, 5)) == 0:
            frame[16:24] = draw(st.binary(min_size=8, max_size=8))  # a wrong checksum, most likely
        frames.append(bytes(frame))
    return b"".join(frames) + draw(st.binary(max_size=30) | st.just(b""))


request_paths = st.text(max_size=30).map(str.encode) | st.binary(max_size=30)
request_headers = header_maps.map(lambda h: json.dumps(h).encode() if h else b"") | st.binary(max_size=40)


@st.composite
def request_streams(draw: st.DrawFn) -> bytes:
    frames = draw(st.lists(st.tuples(request_paths, request_headers, bodies), max_size=4))
    wire = b"".join(encode_request(path, raw, payload) for path, raw, payload in frames)
    return wire + draw(st.binary(max_size=12) | st.just(b""))


ack_streams = st.lists(st.text(max_size=40) | st.binary(max_size=40), max_size=5).map(
    lambda texts: b"".join(encode_ack(t) for t in texts)
)

_hostile_parts = st.binary(max_size=40) | st.sampled_from([STOP, KILL, SENTINEL, b"{}", b'{"error":null}', b"[]"])
_wrapper_keys = st.sampled_from(["data", "complete_final", "error", "event", "comment"])


@st.composite
def response_streams(draw: st.DrawFn, codec: PayloadCodec = PayloadCodec.JSON) -> bytes:
    """A well-behaved start, then frames that are often nearly right."""
    worker = WorkerStream("subject-1", codec)
    frames = [worker.handshake(), worker.prologue(draw(st.none() | st.text(max_size=10)))]
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["item", "final", "sentinel", "raw", "wrapper"]))
        if kind == "item":
            frames.append(two_part.encode(data=encode_item(codec, draw(json_values))))
        elif kind == "final":
            frames.append(two_part.encode(data=encode_final(codec)))
        elif kind == "sentinel":
            frames.append(two_part.encode(SENTINEL))
        elif kind == "raw":
            frames.append(two_part.encode(draw(_hostile_parts), draw(_hostile_parts)))
        else:
            wrapper = draw(st.dictionaries(_wrapper_keys, json_values | st.booleans(), max_size=3))
            frames.append(two_part.encode(data=codec.encode(wrapper)))
    return b"".join(frames)


cancel_streams = st.lists(
    st.sampled_from([two_part.encode(STOP), two_part.encode(KILL), two_part.encode(SENTINEL), two_part.encode(b"[]")])
    | st.binary(max_size=30),
    max_size=5,
).map(b"".join)


@st.composite
def caller_stream_inputs(draw: st.DrawFn) -> bytes:
    codec_index = draw(st.integers(0, len(CODECS) - 1))  # option 0 names the codec the stream is written in
    wire = draw(response_streams(CODECS[codec_index]))
    options = draw(option_bytes)
    return pack(wire, codec_index, options[1], options[2], draw(chunkings))


_control_keys = st.sampled_from(
    ["id", "request_type", "response_type", "payload_codec", "connection_info", "metadata", "frontend_send_ts_ns"]
)


# Strings JSON can carry but serde_json refuses: lone UTF-16 surrogates (json.dumps escapes them as \\udxxx).
hostile_text = st.text(st.characters(categories=["Cs", "Lu", "Nd"]), min_size=1, max_size=6)


@st.composite
def control_messages(draw: st.DrawFn) -> dict[str, object]:
    """A request control message that is valid but for its strings and up to two overridden fields."""
    text = st.text(max_size=8) | hostile_text
    request_id = draw(text)
    context = request_id if draw(st.booleans()) else draw(text)
    info = {"address": "127.0.0.1:1", "subject": draw(text), "context": context, "stream_type": "response"}
    message: dict[str, object] = {
        "id": request_id,
        "request_type": "single_in",
        "response_type": "many_out",
        "connection_info": {"transport": "tcp_server", "info": json.dumps(info)},
        "metadata": draw(st.dictionaries(text, text, max_size=2)),
    }
    message.update(draw(st.dictionaries(_control_keys, json_values | hostile_text, max_size=2)))
    return message


@st.composite
def response_items(draw: st.DrawFn, codec: PayloadCodec) -> bytes:
    """A response item carrying an annotated value: plain data, or an error item of any shape or depth."""
    if codec is PayloadCodec.MSGPACK and draw(st.integers(0, 3)) == 0:
        depth = draw(st.integers(900, 1030))  # around msgpack's nesting limit and repr's
        nested = b"\x81\xa5error" + b"\x91" * depth + b"\x01"
        return b"\x82\xa4data" + nested + b"\xaecomplete_final\xc2"
    shape = draw(st.sampled_from(["data", "comment", "error"]))
    if shape == "data":
        annotated: dict[str, object] = {"data": draw(json_values)}
    elif shape == "comment":  # the older form: event "error" plus comments, in whatever type the peer chose
        annotated = {"event": "error", "comment": draw(json_values)}
    else:
        error_object = st.dictionaries(st.sampled_from(["message", "error_type"]), json_values, max_size=2)
        annotated = {"error": draw(json_values | st.just("") | error_object)}
    return codec.encode({"data": annotated, "complete_final": False})


@st.composite
def message_inputs(draw: st.DrawFn) -> bytes:
    parser = draw(st.integers(0, 6))
    if parser in (4, 5):
        return pack(draw(response_items(CODECS[parser - 4])), parser)
    if parser in (0, 1) and draw(st.booleans()):
        obj = draw(control_messages())
    else:
        keys = _control_keys | st.sampled_from(["subject", "stream_type", "error"])
        obj = draw(st.dictionaries(keys, json_values | hostile_text))
    raw = json.dumps(obj).encode()
    if parser == 1:
        raw = two_part.encode(raw, draw(st.binary(max_size=20)))
    return pack(raw, parser)


# --- HTTP --------------------------------------------------------------------------------------------

_methods = st.sampled_from([b"POST", b"GET", b"PUT", b"post", b"POST\x00"])
_targets = st.sampled_from(
    [
        b"/v1/rpc/generate",
        b"/v1/rpc/gen%65rate",
        b"/v1/rpc/%ff",
        b"/v1/rpc/",
        b"/other",
        b"*",
        b"http://w/v1/rpc/generate",
    ]
)
_extra_headers = st.lists(
    st.sampled_from(
        [
            b"content-length: 5",
            b"content-length: -1",
            b"content-length: 99999999999999999999",
            b"content-length: 3, 3",
            b"transfer-encoding: chunked",
            b"transfer-encoding: gzip, chunked",
            b"expect: 100-continue",
            b"connection: close",
            b"connection: keep-alive",
            b"upgrade: h2c",
            b"request-id: 00000000-0000-0000-0000-000000000000",
            b"traceparent: \xff\xfe",
            b"x" * 300 + b": y",
            b"bad header",
        ]
    ),
    max_size=4,
)
_http_versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 "])


@st.composite
def http1_requests(draw: st.DrawFn) -> bytes:
    body = draw(st.binary(max_size=40))
    head = [draw(_methods) + b" " + draw(_targets) + b" " + draw(_http_versions), b"host: w"]
    extra = draw(_extra_headers)
    chunked = b"transfer-encoding: chunked" in extra
    if not chunked and not any(h.startswith(b"content-length") for h in extra) and draw(st.booleans()):
        extra.append(b"content-length: " + str(len(body)).encode())
    if chunked:
        pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + draw(st.sampled_from([b"0\r\n\r\n", b"0\r\n"]))
    return b"\r\n".join([*head, *extra]) + b"\r\n\r\n" + body


http1_streams = st.lists(http1_requests(), min_size=1, max_size=4).map(b"".join)


@st.composite
def http2_streams(draw: st.DrawFn) -> bytes:
    """What an h2 client sends, driven through hyper-h2 so that most of it is valid, then spliced with raw frames."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    wire = client.data_to_send()[len(PREFACE) :]
    stream_id = 1
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["request", "request", "open", "ping", "window", "goaway", "raw"]))
        if action in ("request", "open"):
            body = draw(st.binary(max_size=80))
            head = [
                (b":method", draw(_methods.filter(lambda m: b"\x00" not in m))),
                (b":scheme", b"http"),
                (b":authority", b"w"),
                (b":path", draw(_targets.filter(lambda t: t != b"*"))),
            ]
            if draw(st.booleans()):
                head.append((b"content-length", str(len(body) + draw(st.sampled_from([0, 0, 1, 10**6]))).encode()))
            client.send_headers(stream_id, head, end_stream=not body and action == "request")
            if body:
                client.send_data(stream_id, body, end_stream=action == "request")
            stream_id += 2
        elif action == "ping":
            client.ping(b"01234567")
        elif action == "window":
            client.increment_flow_control_window(draw(st.integers(1, 1 << 16)))
        wire += client.data_to_send()
        if action == "goaway":
            wire += encode_goaway(draw(st.integers(0, 7)), draw(st.integers(0, 2)), b"bye")
        elif action == "raw":
            payload = draw(st.binary(max_size=20))
            header = len(payload).to_bytes(3, "big") + bytes([draw(st.integers(0, 10)), draw(st.integers(0, 255))])
            wire += header + draw(st.integers(0, 9)).to_bytes(4, "big") + payload
    return wire


def fuzz_inputs(name: str) -> st.SearchStrategy[bytes]:
    """Every kind of input for one target."""
    structured: dict[str, st.SearchStrategy[bytes]] = {
        "two_part": with_options(two_part_streams()),
        "request_frame": with_options(request_streams()),
        "tcp_ack": with_options(ack_streams),
        "caller_stream": caller_stream_inputs(),
        "worker_stream": with_options(cancel_streams),
        "messages": message_inputs(),
        "http1": with_options(http1_streams),
        "http2": with_options(http2_streams()),
    }
    # Half near-valid traffic: random bytes and mutations rarely get past the first length or request line.
    return st.one_of(st.binary(max_size=300), mutated(SEEDS[name]()), structured[name], structured[name])
