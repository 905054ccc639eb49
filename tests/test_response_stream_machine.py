"""Properties of the sans-IO call-home response stream: ``WorkerStream`` writes, ``CallerStream`` reads.

handshake -> prologue -> item* -> final (``complete_final``) -> ``"sentinel"``; the caller may send
``"stop"`` / ``"kill"`` back on the same connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_impl.errors import LocalProtocolError
from reference_impl.protocol.messages import KILL, SENTINEL, STOP, Cancel, encode_final, encode_item
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.protocol.response_stream import (
    CallerState,
    CallerStream,
    CancelReceived,
    Event,
    FinalReceived,
    HandshakeReceived,
    ItemReceived,
    PrologueReceived,
    ProtocolViolation,
    SentinelReceived,
    StreamClosed,
    WorkerState,
    WorkerStream,
)
from reference_impl.wire import two_part
from tests.strategies import chunks_of, item_data, json_values

SUBJECT = "call-home-subject-1"
codecs = st.sampled_from(PayloadCodec)
# PayloadCodec subclasses str but overrides str.encode, which breaks pytest's default ids.
CODEC_IDS = [codec.value for codec in PayloadCodec]
item_lists = st.lists(item_data, max_size=6)


def full_stream(codec: PayloadCodec, items: Iterable[Any], *, write_checksum: bool = False) -> list[bytes]:
    """The frames a well-behaved worker writes for a successful call."""
    worker = WorkerStream(SUBJECT, codec, write_checksum=write_checksum)
    frames = [worker.handshake(), worker.prologue()]
    frames += [worker.item(item) for item in items]
    frames += [worker.final(), worker.sentinel()]
    return frames


def opening(codec: PayloadCodec = PayloadCodec.JSON) -> list[bytes]:
    worker = WorkerStream(SUBJECT, codec)
    return [worker.handshake(), worker.prologue()]


def feed(caller: CallerStream, chunks: Iterable[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events.extend(caller.receive_data(chunk))
    return events


def expected_events(items: list[Any]) -> list[Event]:
    return [
        HandshakeReceived(SUBJECT, "response"),
        PrologueReceived(None),
        *(ItemReceived(item) for item in items),
        FinalReceived(),
        SentinelReceived(complete=True),
    ]


# --- golden bytes --------------------------------------------------------------------


def test_final_frame_bodies_match_the_runtime() -> None:
    assert encode_final(PayloadCodec.MSGPACK).hex() == "81ae636f6d706c6574655f66696e616cc3"
    assert encode_final(PayloadCodec.JSON) == b'{"complete_final":true}'


@pytest.mark.parametrize("codec", list(PayloadCodec), ids=CODEC_IDS)
def test_worker_final_frame_is_data_only(codec: PayloadCodec) -> None:
    worker = WorkerStream(SUBJECT, codec)
    worker.handshake()
    worker.prologue()
    assert worker.final() == two_part.encode(data=encode_final(codec))


def test_sentinel_frame_matches_the_runtime() -> None:
    worker = WorkerStream(SUBJECT)
    worker.handshake()
    worker.prologue()
    worker.final()
    assert worker.sentinel() == bytes.fromhex("000000000000000a") + bytes(16) + b'"sentinel"'


@pytest.mark.parametrize(("kind", "word"), [("stop", b'"stop"'), ("kill", b'"kill"')])
def test_cancel_frames_are_header_only_json_strings(kind: str, word: bytes) -> None:
    assert CallerStream().send_cancel(kind) == bytes.fromhex("0000000000000006") + bytes(16) + word


def test_handshake_prologue_and_item_use_serde_field_order() -> None:
    worker = WorkerStream("s")
    assert worker.handshake() == two_part.encode(b'{"subject":"s","stream_type":"response"}')
    assert worker.prologue() == two_part.encode(b'{"error":null}')
    assert worker.item({"x": 1}) == two_part.encode(data=b'{"data":{"x":1},"complete_final":false}')


# --- the happy path --------------------------------------------------------------------


@given(codec=codecs, items=item_lists, write_checksum=st.booleans(), data=st.data())
def test_worker_stream_reads_back_identically_under_any_chunking(
    codec: PayloadCodec, items: list[Any], write_checksum: bool, data: st.DataObject
) -> None:
    wire = b"".join(full_stream(codec, items, write_checksum=write_checksum))
    caller = CallerStream(codec, verify_checksum=write_checksum)
    events = feed(caller, data.draw(chunks_of(wire), label="chunks"))
    assert events == expected_events(items)
    # == alone would accept True for 1 or 1.0 for 1; the re-encoding must match too.
    received = [e.data for e in events if isinstance(e, ItemReceived)]
    assert [codec.encode(x) for x in received] == [codec.encode(x) for x in items]
    assert caller.items_received == len(items)
    assert caller.complete
    assert caller.receive_eof() == StreamClosed(complete=True)


def test_caller_without_handshake_starts_at_the_prologue() -> None:
    frames = full_stream(PayloadCodec.JSON, ["a"])[1:]
    caller = CallerStream(expect_handshake=False)
    assert feed(caller, frames) == expected_events(["a"])[1:]


def test_codec_can_be_chosen_after_the_handshake_event() -> None:
    """Decoding is lazy: a consumer may set the codec named by the handshake before items are decoded."""
    wire = b"".join(full_stream(PayloadCodec.MSGPACK, [{"t": 1}, [2, 3]]))
    caller = CallerStream(PayloadCodec.JSON)
    events: list[Event] = []
    for event in caller.receive_data(wire):
        if isinstance(event, HandshakeReceived):
            caller.codec = PayloadCodec.MSGPACK
        events.append(event)
    assert events == expected_events([{"t": 1}, [2, 3]])


@given(codec=codecs, items=item_lists, data=st.data())
def test_eof_after_final_without_sentinel_is_complete(
    codec: PayloadCodec, items: list[Any], data: st.DataObject
) -> None:
    frames = full_stream(codec, items)[:-1]
    caller = CallerStream(codec)
    feed(caller, data.draw(chunks_of(b"".join(frames)), label="chunks"))
    assert caller.receive_eof() == StreamClosed(complete=True)


# --- incomplete streams ------------------------------------------------------------------


@given(codec=codecs, items=item_lists, data=st.data())
def test_eof_before_complete_final_is_an_incomplete_stream(
    codec: PayloadCodec, items: list[Any], data: st.DataObject
) -> None:
    frames = full_stream(codec, items)
    final_index = len(frames) - 2
    kept = data.draw(st.integers(min_value=0, max_value=final_index), label="frames kept")
    caller = CallerStream(codec)
    events = feed(caller, frames[:kept])
    assert not any(isinstance(e, ProtocolViolation) for e in events)
    assert caller.receive_eof() == StreamClosed(complete=False)
    assert not caller.complete


@given(codec=codecs, items=item_lists, data=st.data())
def test_eof_inside_a_frame_is_a_violation(codec: PayloadCodec, items: list[Any], data: st.DataObject) -> None:
    frames = full_stream(codec, items)
    index = data.draw(st.integers(min_value=0, max_value=len(frames) - 1), label="frame cut")
    cut = data.draw(st.integers(min_value=1, max_value=len(frames[index]) - 1), label="bytes kept")
    caller = CallerStream(codec)
    feed(caller, [*frames[:index], frames[index][:cut]])
    assert isinstance(caller.receive_eof(), ProtocolViolation)


def test_eof_after_a_cancel_is_cancelled_not_failed() -> None:
    caller = CallerStream()
    feed(caller, opening())
    caller.send_cancel("stop")
    assert caller.receive_eof() == StreamClosed(complete=False, cancelled=True)


def test_eof_after_cancel_and_final_is_complete() -> None:
    caller = CallerStream()
    feed(caller, full_stream(PayloadCodec.JSON, ["x"]))
    caller.send_cancel("stop")
    assert caller.receive_eof() == StreamClosed(complete=True, cancelled=False)


# --- prologue errors -------------------------------------------------------------------


def test_prologue_error_is_reported_and_ends_the_stream() -> None:
    worker = WorkerStream(SUBJECT)
    caller = CallerStream()
    events = feed(caller, [worker.handshake(), worker.prologue("no such endpoint", {"code": 404})])
    assert events == [HandshakeReceived(SUBJECT, "response"), PrologueReceived("no such endpoint", {"code": 404})]
    assert caller.state is CallerState.FAILED
    assert caller.receive_eof() == StreamClosed(complete=False)


@given(data=st.data())
def test_prologue_error_then_sentinel_gives_the_same_events_under_any_chunking(data: st.DataObject) -> None:
    """WorkerStream allows a sentinel after an error prologue; what the caller reports must not depend on chunking."""
    worker = WorkerStream(SUBJECT)
    frames = [worker.handshake(), worker.prologue("boom"), worker.sentinel()]
    caller = CallerStream()
    events = feed(caller, data.draw(chunks_of(b"".join(frames)), label="chunks"))
    assert events == [HandshakeReceived(SUBJECT, "response"), PrologueReceived("boom")]
    assert caller.receive_eof() == StreamClosed(complete=False)


# --- protocol violations -----------------------------------------------------------------


def frame(header: bytes = b"", data: bytes = b"") -> bytes:
    return two_part.encode(header, data)


def item_frame(codec: PayloadCodec, value: Any) -> bytes:
    return frame(data=codec.encode(value))


VIOLATIONS: dict[str, Callable[[PayloadCodec], list[bytes]]] = {
    "item after final": lambda c: [*opening(c), frame(data=encode_final(c)), frame(data=encode_item(c, 1))],
    "data in the final frame": lambda c: [*opening(c), item_frame(c, {"data": 1, "complete_final": True})],
    "stop from the worker": lambda c: [*opening(c), frame(STOP)],
    "kill from the worker": lambda c: [*opening(c), frame(KILL)],
    "stop from the worker after final": lambda c: [*opening(c), frame(data=encode_final(c)), frame(STOP)],
    "data-only prologue": lambda c: [opening(c)[0], frame(data=b'{"error":null}')],
    "header-and-data prologue": lambda c: [opening(c)[0], frame(b'{"error":null}', b"x")],
    "empty prologue": lambda c: [opening(c)[0], frame()],
    "prologue not an object": lambda c: [opening(c)[0], frame(b"[]")],
    "prologue error not a string": lambda c: [opening(c)[0], frame(b'{"error":5}')],
    "data-only handshake": lambda c: [frame(data=b'{"subject":"s","stream_type":"response"}')],
    "handshake not json": lambda c: [frame(b"hello")],
    "handshake subject not a string": lambda c: [frame(b'{"subject":1,"stream_type":"response"}')],
    "handshake unknown stream type": lambda c: [frame(b'{"subject":"s","stream_type":"sideways"}')],
    "item without data": lambda c: [*opening(c), item_frame(c, {"complete_final": False})],
    "item with null data": lambda c: [*opening(c), item_frame(c, {"data": None, "complete_final": False})],
    "item not a map": lambda c: [*opening(c), item_frame(c, [1, 2])],
    "complete_final not a boolean": lambda c: [*opening(c), item_frame(c, {"data": 1, "complete_final": 1})],
    "undecodable item": lambda c: [*opening(c), frame(data=b"\xc1{")],
    "header-and-data item": lambda c: [*opening(c), frame(b"{}", encode_item(c, 1))],
    "empty frame while streaming": lambda c: [*opening(c), frame()],
    "unknown control word": lambda c: [*opening(c), frame(b'"pause"')],
    "frame after the sentinel": lambda c: [*opening(c), frame(data=encode_final(c)), frame(SENTINEL), frame(SENTINEL)],
    # Hostile content must be a violation, never an exception out of the state machine.
    "deeply nested handshake": lambda c: [frame(b"[" * 50_000)],
    "deeply nested prologue": lambda c: [opening(c)[0], frame(b'{"error":' * 20_000)],
    "deeply nested control word": lambda c: [*opening(c), frame(b"[" * 50_000)],
    "deeply nested item": lambda c: [
        *opening(c),
        frame(data=b"[" * 50_000 if c is PayloadCodec.JSON else b"\x91" * 50_000),
    ],
    "unhashable map key in item": lambda c: [
        *opening(c),
        frame(data=b"{[1]:2}" if c is PayloadCodec.JSON else b"\x81\x91\x01\x02"),
    ],
}


@pytest.mark.parametrize("codec", list(PayloadCodec), ids=CODEC_IDS)
@pytest.mark.parametrize("case", list(VIOLATIONS))
def test_protocol_violations_end_the_stream(case: str, codec: PayloadCodec) -> None:
    caller = CallerStream(codec)
    events = feed(caller, VIOLATIONS[case](codec))
    assert isinstance(events[-1], ProtocolViolation), events
    assert not any(isinstance(e, ProtocolViolation) for e in events[:-1])
    assert caller.state is CallerState.FAILED
    # Nothing more is read, and the end of the connection is an incomplete stream.
    assert feed(caller, full_stream(codec, [1])) == []
    assert caller.receive_eof() == StreamClosed(complete=False)


@pytest.mark.parametrize("case", list(VIOLATIONS))
def test_violations_are_detected_in_a_single_chunk_too(case: str) -> None:
    """Frames after the offending one in the same chunk are not interpreted."""
    caller = CallerStream()
    events = feed(caller, [b"".join([*VIOLATIONS[case](PayloadCodec.JSON), *full_stream(PayloadCodec.JSON, [1])])])
    assert isinstance(events[-1], ProtocolViolation)
    assert sum(isinstance(e, ProtocolViolation) for e in events) == 1


def test_oversized_frame_is_a_violation_from_its_prelude() -> None:
    caller = CallerStream(max_message_size=1000)
    feed(caller, opening())
    events = feed(caller, [two_part.PRELUDE.pack(0, 1000, 0)])
    assert len(events) == 1
    assert isinstance(events[0], ProtocolViolation)


def test_bad_checksum_is_a_violation_when_verifying() -> None:
    caller = CallerStream(verify_checksum=True)
    feed(caller, opening())
    body = encode_item(PayloadCodec.JSON, "x")
    events = feed(caller, [two_part.PRELUDE.pack(0, len(body), 1) + body])
    assert len(events) == 1
    assert isinstance(events[0], ProtocolViolation)


frame_parts = st.binary(max_size=40) | st.sampled_from([STOP, KILL, SENTINEL, b"{}", b"null", b'{"error":null}'])


@st.composite
def hostile_frames(draw: st.DrawFn, codec: PayloadCodec) -> bytes:
    """A frame that is often nearly right: random parts, or a wrapper map with random fields."""
    if draw(st.booleans()):
        return frame(draw(frame_parts), draw(frame_parts))
    keys = st.sampled_from(["data", "complete_final", "error", "other"])
    wrapper = draw(st.dictionaries(keys, json_values | st.booleans(), max_size=3))
    return frame(data=codec.encode(wrapper))


@given(codec=codecs, start_streaming=st.booleans(), data=st.data())
def test_arbitrary_frames_produce_events_never_exceptions(
    codec: PayloadCodec, start_streaming: bool, data: st.DataObject
) -> None:
    frames = data.draw(st.lists(hostile_frames(codec), max_size=6), label="frames")
    if data.draw(st.booleans(), label="trailing garbage"):
        frames.append(data.draw(st.binary(max_size=60), label="garbage"))
    wire = b"".join([*(opening(codec) if start_streaming else []), *frames])
    caller = CallerStream(codec, max_message_size=4096)
    events = feed(caller, data.draw(chunks_of(wire), label="chunks"))
    violations = [i for i, e in enumerate(events) if isinstance(e, ProtocolViolation)]
    assert violations in ([], [len(events) - 1])
    assert isinstance(caller.receive_eof(), (StreamClosed, ProtocolViolation))


# --- caller cancellation -----------------------------------------------------------------


def test_each_cancellation_is_sent_at_most_once_and_kill_is_final() -> None:
    caller = CallerStream()
    assert caller.send_cancel("stop") == two_part.encode(STOP)
    assert caller.send_cancel("stop") == b""
    assert caller.send_cancel("kill") == two_part.encode(KILL)
    assert caller.send_cancel("kill") == b""
    assert caller.send_cancel("stop") == b""


def test_unknown_cancellation_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        CallerStream().send_cancel("pause")


# --- worker side ---------------------------------------------------------------------------

# Legal next operations in each state, written from the protocol, not from WorkerStream.
LEGAL = {
    "idle": {"handshake": "handshake_sent"},
    "handshake_sent": {"prologue": "streaming", "prologue_error": "final_sent"},
    "streaming": {"item": "streaming", "final": "final_sent"},
    "final_sent": {"sentinel": "closed"},
    "closed": {},
}
OPERATIONS: dict[str, Callable[[WorkerStream], bytes]] = {
    "handshake": lambda w: w.handshake(),
    "prologue": lambda w: w.prologue(),
    "prologue_error": lambda w: w.prologue("failed"),
    "item": lambda w: w.item({"n": 1}),
    "final": lambda w: w.final(),
    "sentinel": lambda w: w.sentinel(),
}


@given(operations=st.lists(st.sampled_from(sorted(OPERATIONS)), max_size=12))
def test_worker_refuses_out_of_order_calls(operations: list[str]) -> None:
    worker = WorkerStream(SUBJECT)
    state = "idle"
    frames: list[bytes] = []
    for operation in operations:
        if operation in LEGAL[state]:
            frames.append(OPERATIONS[operation](worker))
            state = LEGAL[state][operation]
        else:
            with pytest.raises(LocalProtocolError):
                OPERATIONS[operation](worker)
        assert worker.state is WorkerState(state)
    # Whatever the worker agreed to write, a caller reading it sees no violation.
    events = feed(CallerStream(), [b"".join(frames)])
    assert not any(isinstance(e, ProtocolViolation) for e in events), events


def test_worker_refuses_a_null_item() -> None:
    worker = WorkerStream(SUBJECT)
    worker.handshake()
    worker.prologue()
    with pytest.raises(LocalProtocolError):
        worker.item(None)
    assert worker.state is WorkerState.STREAMING


@given(words=st.lists(st.sampled_from(["stop", "kill"]), max_size=6), data=st.data())
def test_worker_reads_cancellations_under_any_chunking(words: list[str], data: st.DataObject) -> None:
    wire = b"".join(two_part.encode(STOP if w == "stop" else KILL) for w in words)
    worker = WorkerStream(SUBJECT)
    events: list[Event] = []
    for chunk in data.draw(chunks_of(wire), label="chunks"):
        events.extend(worker.receive_data(chunk))
    assert events == [CancelReceived(Cancel(w)) for w in words]
    assert worker.cancelled == ("kill" if "kill" in words else "stop" if words else None)


@pytest.mark.parametrize(
    "wire",
    [two_part.encode(SENTINEL), two_part.encode(data=b"{}"), two_part.encode(b'"pause"'), two_part.encode()],
    ids=["sentinel", "data", "unknown-word", "empty"],
)
def test_worker_treats_anything_but_stop_or_kill_as_a_violation(wire: bytes) -> None:
    events = WorkerStream(SUBJECT).receive_data(two_part.encode(STOP) + wire)
    assert events[0] == CancelReceived(Cancel.STOP)
    assert len(events) == 2
    assert isinstance(events[1], ProtocolViolation)


def test_worker_rejects_an_oversized_caller_frame_from_its_prelude() -> None:
    events = WorkerStream(SUBJECT).receive_data(two_part.PRELUDE.pack(1 << 20, 0, 0))
    assert len(events) == 1
    assert isinstance(events[0], ProtocolViolation)


@given(data=st.data(), garbage=st.binary(max_size=200))
def test_worker_never_raises_on_garbage(data: st.DataObject, garbage: bytes) -> None:
    worker = WorkerStream(SUBJECT)
    for chunk in data.draw(chunks_of(garbage), label="chunks"):
        events = worker.receive_data(chunk)
        assert all(isinstance(e, (CancelReceived, ProtocolViolation)) for e in events)


# --- state owned by the machine ---------------------------------------------------------------------


def test_a_call_is_bound_between_handshake_and_prologue_only() -> None:
    worker = WorkerStream(SUBJECT, PayloadCodec.MSGPACK)
    caller = CallerStream()
    with pytest.raises(LocalProtocolError, match="bound after its handshake"):
        CallerStream(expect_handshake=True).bind_call(PayloadCodec.MSGPACK)  # no handshake yet
    assert isinstance(feed(caller, [worker.handshake()])[0], HandshakeReceived)
    caller.bind_call(PayloadCodec.MSGPACK)
    events = feed(caller, [worker.prologue(), worker.item({"n": 1}), worker.final(), worker.sentinel()])
    assert events == [PrologueReceived(None), ItemReceived({"n": 1}), FinalReceived(), SentinelReceived(complete=True)]
    with pytest.raises(LocalProtocolError, match="not in state done"):
        caller.bind_call(PayloadCodec.JSON)


def test_a_sentinel_without_final_says_the_stream_is_incomplete() -> None:
    worker = WorkerStream(SUBJECT)
    frames = [worker.handshake(), worker.prologue(), worker.item(1), two_part.encode(SENTINEL)]
    events = feed(CallerStream(), frames)
    assert events[-1] == SentinelReceived(complete=False)
