"""The implementation as a worker: the call-home response stream it produces."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from fixtures.item_shapes import VARIED_VALUES, assert_same_values
from fixtures.judge import annotated
from fixtures.judge.codecs import PayloadCodec
from fixtures.judge.control import CallHomeHandshake
from fixtures.judge.transcript import FinalReceived, ItemReceived, PrologueReceived, SentinelReceived
from fixtures.judge.two_part import xxh3_64
from fixtures.judge.words import ControlWord, FrameKind
from fixtures.probes.callhome_recorder import CallHomeSession, Transcript
from fixtures.probes.wire_client import ProbeResult, WireClient
from fixtures.roles import WorkerUnderTest


@pytest.mark.req("RS-HANDSHAKE", "RS-PROLOGUE", "RS-ITEMS", "RS-FINAL", "RS-SENTINEL", "TP-LAYOUT")
async def test_complete_stream_has_the_documented_shape(impl_worker: WorkerUnderTest, wire_client: WireClient):
    probe = wire_client.prepare(impl_worker.record("stream"), {"count": 5, "size": 10})
    assert await wire_client.deliver(impl_worker.record("stream"), probe) == b""
    session = await asyncio.wait_for(probe.session, 10.0)
    transcript = await _read_like_a_caller(session)
    handshake = CallHomeHandshake.from_json_bytes(transcript.frames[0].header)
    assert handshake.subject == probe.control.connection_info.tcp().subject
    assert handshake.stream_type == "response"
    assert [frame.kind for frame in transcript.frames] == [
        FrameKind.HEADER_ONLY.value,  # handshake
        FrameKind.HEADER_ONLY.value,  # prologue
        *[FrameKind.DATA_ONLY.value] * 5,  # items
        FrameKind.DATA_ONLY.value,  # complete_final
        FrameKind.HEADER_ONLY.value,  # sentinel
    ]
    assert transcript.frames[1].header == b'{"error":null}'
    assert transcript.frames[-1].header == ControlWord.SENTINEL.header
    assert transcript.event_names(probe.codec) == [
        "HandshakeReceived",
        "PrologueReceived",
        *["ItemReceived"] * 5,
        "FinalReceived",
        "SentinelReceived",
        "closed_complete",
    ]
    assert not transcript.violations(probe.codec)
    values = ProbeResult(b"", transcript, probe.codec).values()
    assert values == [{"seq": i, "pad": "x" * 10} for i in range(5)]


async def _read_like_a_caller(session: CallHomeSession, timeout: float = 10.0) -> Transcript:
    from fixtures.probes.wire_client import read_until_sentinel_then_close

    return await read_until_sentinel_then_close(session, timeout)


@pytest.mark.req("TP-CHECKSUM-SEND")
async def test_checksums_are_zero_or_xxh3(impl_worker: WorkerUnderTest, wire_client: WireClient):
    result = await wire_client.call(impl_worker.record("stream"), {"count": 4})
    assert result.transcript is not None
    for frame in result.transcript.frames:
        assert frame.checksum in (0, xxh3_64(frame.header, frame.data)), f"bad checksum on {frame}"


@pytest.mark.req("TP-CHECKSUM-ZERO", "TP-CHECKSUM-VALID")
@pytest.mark.parametrize("write_checksum", [False, True], ids=["zero", "xxh3"])
async def test_envelopes_with_zero_or_valid_checksum_are_accepted(
    impl_worker: WorkerUnderTest, wire_client: WireClient, write_checksum: bool
):
    result = await wire_client.call(
        impl_worker.record("echo"), {"checksum": write_checksum}, write_checksum=write_checksum
    )
    assert result.ack == b""
    assert result.values() == [{"checksum": write_checksum}]


@pytest.mark.req("RS-ITEMS")
async def test_a_thousand_items_arrive_in_order_exactly_once(impl_worker: WorkerUnderTest, wire_client: WireClient):
    result = await wire_client.call(impl_worker.record("stream"), {"count": 1000, "size": 100}, timeout=30.0)
    assert [v["seq"] for v in result.values()] == list(range(1000))
    assert result.events[-3:] == ["FinalReceived", "SentinelReceived", "closed_complete"]


@pytest.mark.req("RS-ITEMS")
@pytest.mark.parametrize("codec", [PayloadCodec.JSON, PayloadCodec.MSGPACK], ids=["json", "msgpack"])
async def test_items_of_every_shape_arrive_exactly(
    impl_worker: WorkerUnderTest, wire_client: WireClient, codec: PayloadCodec
):
    """Falsy, nested, unicode and large values in the request, each streamed back as one item.

    JSON always (every worker reads it); msgpack where the worker advertises it.
    """
    record = impl_worker.record("each")
    if codec is PayloadCodec.MSGPACK and record.request_plane_codec != codec.value:
        pytest.skip(f"not applicable: the worker advertises {record.request_plane_codec or 'no codec (JSON)'}")
    result = await wire_client.call(record, {"values": VARIED_VALUES}, codec=codec)
    assert result.ack == b""
    assert not result.errors(), result.errors()
    assert_same_values(result.values(), VARIED_VALUES, f"items of a {codec.value} request")
    assert result.events[-3:] == ["FinalReceived", "SentinelReceived", "closed_complete"]


@pytest.mark.req("RS-ITEMS")
async def test_a_large_request_reaches_the_handler_intact(
    impl_worker: WorkerUnderTest, wire_client: WireClient, request_size_limit: int
):
    """4 MiB, or as much as the plane carries (NATS: the server's max_payload)."""
    size = min(4 * 1024 * 1024, request_size_limit - 64 * 1024)
    blob = uuid.uuid4().hex * (size // 32)
    result = await wire_client.call(impl_worker.record("sink"), {"blob": blob}, timeout=30.0)
    assert result.ack == b""
    assert result.values() == [{"size": len(blob), "sha256": hashlib.sha256(blob.encode()).hexdigest()}]


# Text a prompt may well hold (quoted JSON, code): brackets, braces, escaped quotes and backslashes, non-ASCII.
BRACKETED_TEXT = '[{"ids": [1, 2], "q": "\\"[x]\\"", "path": "C:\\\\t"}, {"é": []}]; '


@pytest.mark.req("RS-ITEMS")
@pytest.mark.planes("tcp", "http")  # the body is decoded alike on every plane; NATS carries the test above
async def test_a_large_json_request_full_of_brackets_reaches_the_handler_intact(
    impl_worker: WorkerUnderTest, wire_client: WireClient, request_size_limit: int
):
    """A JSON body is text: brackets inside its strings are characters, whatever a decoder's guard counts."""
    size = min(4 * 1024 * 1024, request_size_limit - 64 * 1024) // 2  # JSON escapes make the body bigger
    blob = BRACKETED_TEXT * (size // len(BRACKETED_TEXT.encode()))
    result = await wire_client.call(impl_worker.record("sink"), {"blob": blob}, codec=PayloadCodec.JSON, timeout=30.0)
    assert result.ack == b""
    expected = {"size": len(blob.encode()), "sha256": hashlib.sha256(blob.encode()).hexdigest()}
    assert result.values() == [expected], "the body did not reach the handler intact (refused or altered)"


# A preprocessed prompt as Dynamo's frontend sends it: token ids, most of them 3 bytes in msgpack (256..65535).
LONG_PROMPT_TOKENS = 60_000


@pytest.mark.req("RS-ITEMS")
@pytest.mark.planes("tcp", "http")  # the body is decoded alike on every plane; NATS carries the size test above
async def test_a_long_prompt_of_token_ids_reaches_the_handler_intact(
    impl_worker: WorkerUnderTest, wire_client: WireClient
):
    """A body that is mostly one long array of small numbers: what a decoder's guard may count, a prompt is."""
    request = {"token_ids": [256 + (i * 7919) % 65_000 for i in range(LONG_PROMPT_TOKENS)], "stop": [[13], [2]]}
    result = await wire_client.call(impl_worker.record("echo"), request, timeout=30.0)
    assert result.ack == b""
    assert result.values() == [request], "the body did not reach the handler intact (refused or altered)"


@pytest.mark.req("RS-WORKER-CLOSE")
async def test_worker_closes_after_the_caller_does(impl_worker: WorkerUnderTest, wire_client: WireClient):
    probe = wire_client.prepare(impl_worker.record("stream"), {"count": 1})
    assert await wire_client.deliver(impl_worker.record("stream"), probe) == b""
    session = await asyncio.wait_for(probe.session, 10.0)
    while (frame := await session.next_frame(10.0)) is not None and frame.header != ControlWord.SENTINEL.header:
        pass
    assert frame is not None, "no sentinel"
    closed_at = time.monotonic()
    session.half_close()
    transcript = await session.read_to_end(5.0)
    assert transcript.ended_by in ("eof", "reset"), f"worker kept the connection ({transcript.ended_by})"
    assert transcript.ended_at is not None and transcript.ended_at - closed_at < 3.0


@pytest.mark.req("RS-ERROR-BEFORE")
async def test_failure_before_the_first_item_reaches_the_caller(impl_worker: WorkerUnderTest, wire_client: WireClient):
    result = await wire_client.call(impl_worker.record("error_before"), {})
    assert result.ack == b""
    assert result.transcript is not None
    events = result.transcript.events(result.codec)
    prologue = next((e for e in events if isinstance(e, PrologueReceived)), None)
    assert prologue is not None, f"no prologue: {result.transcript.violations(result.codec)}"
    data_items = [u for u in map(annotated.unwrap, result.items()) if u.error is None]
    assert not data_items, f"items sent despite the failure: {data_items}"
    assert prologue.error or result.errors(), "the failure was not reported (no prologue error, no error item)"
    assert "error_before" in " ".join(filter(None, [prologue.error, *result.errors()]))
    assert result.transcript.ended_by in ("eof", "reset"), "the stream did not end"


@pytest.mark.req("RS-ERROR-MID")
async def test_failure_mid_stream_follows_the_items_before_it(impl_worker: WorkerUnderTest, wire_client: WireClient):
    result = await wire_client.call(impl_worker.record("error_mid"), {"count": 2})
    assert result.transcript is not None
    unwrapped = [annotated.unwrap(item) for item in result.items()]
    assert [u.data for u in unwrapped[:2]] == [{"seq": 0}, {"seq": 1}]
    assert len(unwrapped) == 3 and unwrapped[2].error, f"expected an error item after two items, got {unwrapped}"
    assert "error_mid" in unwrapped[2].error
    events = result.transcript.events(result.codec)
    ended_normally = any(isinstance(e, FinalReceived) for e in events) and isinstance(events[-2], SentinelReceived)
    assert ended_normally or result.transcript.ended_by in ("eof", "reset")


# RS-CANCEL-*: the stream cancelled is ``slow``'s, an item every CANCELLED_STREAM_INTERVAL_S, read for
# CANCELLED_ITEMS_READ items before the stop or kill.  "Stops sending within a bounded time" is judged by the items
# that still come after it: fewer than STOP_WITHIN_S of them (at the stream's pace), so the bound is in seconds
# whatever the pace.  The pace only sets how long the suite waits for the items before the cancellation.
CANCELLED_STREAM_INTERVAL_S = 0.02
CANCELLED_STREAM_ITEMS = 1000  # 20 s at that pace: it never ends on its own within the check
CANCELLED_ITEMS_READ = 3
STOP_WITHIN_S = 2.0
ITEMS_AFTER_CANCEL_LIMIT = round(STOP_WITHIN_S / CANCELLED_STREAM_INTERVAL_S)
HANDLER_RECORD_WITHIN_S = 3.0  # for the handler's own record of the cancellation
HANDLER_RECORD_POLL_S = 0.01


@dataclass(frozen=True)
class CancelledStream:
    """One ``slow`` stream cancelled with stop or kill: what the suite saw after it, and what the handler recorded."""

    transcript: Transcript
    record: dict[str, object]
    codec: PayloadCodec

    def items(self) -> list[ItemReceived]:
        return [e for e in self.transcript.events(self.codec) if isinstance(e, ItemReceived)]


@pytest.fixture(scope="module")
def cancelled_streams() -> dict[tuple[str, str], asyncio.Task[CancelledStream]]:
    """The cancellations made in this module, by (plane, stop or kill), once each: RS-CANCEL-STOP or -KILL and
    RS-CANCEL-NO-SENTINEL judge the same exchange, as a caller's one cancellation is judged by both."""
    return {}


async def _cancelled_stream(
    impl_worker: WorkerUnderTest,
    wire_client: WireClient,
    mode: str,
    made: dict[tuple[str, str], asyncio.Task[CancelledStream]],
) -> CancelledStream:
    key = (impl_worker.plane, mode)
    if key not in made:
        made[key] = asyncio.ensure_future(_cancel_slow_stream(impl_worker, wire_client, mode))
    return await asyncio.shield(made[key])


async def _cancel_slow_stream(impl_worker: WorkerUnderTest, wire_client: WireClient, mode: str) -> CancelledStream:
    """Start ``slow``, read a few items, send ``mode``; return what followed."""
    tag = f"{mode}-{uuid.uuid4().hex[:8]}"
    record = impl_worker.record("slow")
    request = {"tag": tag, "interval": CANCELLED_STREAM_INTERVAL_S, "count": CANCELLED_STREAM_ITEMS}
    probe = wire_client.prepare(record, request)
    assert await wire_client.deliver(record, probe) == b""
    session = await asyncio.wait_for(probe.session, 10.0)
    await session.read_items(CANCELLED_ITEMS_READ, 10.0)
    await (session.send_stop() if mode == "stop" else session.send_kill())
    transcript = await session.read_to_end(5.0)
    records: dict[str, object] = {}
    deadline = time.monotonic() + HANDLER_RECORD_WITHIN_S
    while time.monotonic() < deadline:
        records = (await impl_worker.slow_records()).get(tag, {})
        if records.get("ended") or records.get("cancelled"):
            break
        await asyncio.sleep(HANDLER_RECORD_POLL_S)
    return CancelledStream(transcript, records, probe.codec)


def _assert_the_handler_stopped(cancelled: CancelledStream, mode: str) -> None:
    assert cancelled.transcript.ended_by in ("eof", "reset"), f"the worker kept streaming/open 5 s after {mode}"
    items = len(cancelled.items())
    assert items < ITEMS_AFTER_CANCEL_LIMIT, f"{items} items after {mode}: the worker did not stop in {STOP_WITHIN_S}s"
    assert cancelled.record.get("cancelled"), f"the handler never saw the {mode}: {cancelled.record}"


@pytest.mark.req("RS-CANCEL-STOP")
async def test_stop_reaches_the_handler_and_ends_the_stream(
    impl_worker: WorkerUnderTest, wire_client: WireClient, cancelled_streams: dict[tuple[str, str], Any]
):
    _assert_the_handler_stopped(await _cancelled_stream(impl_worker, wire_client, "stop", cancelled_streams), "stop")


@pytest.mark.req("RS-CANCEL-KILL")
async def test_kill_reaches_the_handler_and_ends_the_stream(
    impl_worker: WorkerUnderTest, wire_client: WireClient, cancelled_streams: dict[tuple[str, str], Any]
):
    _assert_the_handler_stopped(await _cancelled_stream(impl_worker, wire_client, "kill", cancelled_streams), "kill")


@pytest.mark.req("RS-CANCEL-NO-SENTINEL")
@pytest.mark.parametrize("mode", ["stop", "kill"])
async def test_no_sentinel_after_a_cancellation(
    impl_worker: WorkerUnderTest, wire_client: WireClient, mode: str, cancelled_streams: dict[tuple[str, str], Any]
):
    cancelled = await _cancelled_stream(impl_worker, wire_client, mode, cancelled_streams)
    names = cancelled.transcript.event_names(cancelled.codec)
    assert "SentinelReceived" not in names and "FinalReceived" not in names, names
