"""The implementation as a caller: how it reads response streams, good and bad."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from fixtures.failures import PROMPT_DEADLINE_S, assert_prompt_failure
from fixtures.item_shapes import VARIED_VALUES, assert_same_values
from fixtures.judge.codecs import PayloadCodec
from fixtures.probes.probe_worker import ERROR_ITEM_TEXT, PROLOGUE_ERROR_TEXT, ProbeWorker
from fixtures.roles import CallerUnderTest, OnEveryPlane


def _seqs(answer: dict[str, Any]) -> list[int]:
    return [item["seq"] for item in answer["items"]]


@pytest.mark.req("RS-CALLER-ITEMS", "TP-CHECKSUM-ZERO")
async def test_every_item_arrives_in_order(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    answer = await impl_caller.call(probe_worker.endpoint("stream"), {"count": 200})
    assert answer["outcome"] == "complete", answer
    assert _seqs(answer) == list(range(200))


@pytest.mark.req("RS-CALLER-ITEMS", "TP-CHECKSUM-ZERO")
async def test_every_item_arrives_when_frames_are_torn_across_reads(
    impl_caller: CallerUnderTest, probe_worker: ProbeWorker
):
    """The same stream with checksum 0 on every frame, every write ending inside a frame: a caller must accept
    the 0 (and reassemble the frames) however the bytes are cut, not only when a read holds one whole frame."""
    answer = await impl_caller.call(probe_worker.endpoint("stream_split"), {"count": 200})
    assert answer["outcome"] == "complete", {**answer, "items": answer["items"][:8]}
    assert _seqs(answer) == list(range(200))


@pytest.mark.req("RS-CALLER-ITEMS")
@pytest.mark.parametrize("codec", [PayloadCodec.JSON, PayloadCodec.MSGPACK], ids=["json", "msgpack"])
async def test_items_of_every_shape_arrive_exactly(
    impl_caller: CallerUnderTest, make_probe_worker: Callable[..., ProbeWorker], codec: PayloadCodec
):
    """Falsy, nested, unicode and large values, each one item: none lost, changed or retyped."""
    worker = make_probe_worker(impl_caller.discovery, codec=codec)
    await worker.start()
    try:
        answer = await impl_caller.call(worker.endpoint("values"), {"values": VARIED_VALUES})
    finally:
        await worker.close()
    assert answer["outcome"] == "complete", {**answer, "items": answer["items"][:8]}
    assert_same_values(answer["items"], VARIED_VALUES, f"items streamed in {codec.value}")


@pytest.mark.req("RS-CALLER-ITEMS")
async def test_a_multi_megabyte_item_arrives_whole(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    """One 3 MiB item: a caller bounding call-home frames must not bound them below what items carry."""
    size = 3 * 1024 * 1024
    answer = await impl_caller.call(probe_worker.endpoint("big_item"), {"size": size}, deadline=30.0)
    assert answer["outcome"] == "complete", {**answer, "items": [len(i) for i in answer["items"]]}
    assert answer["items"] == ["z" * size], f"item lengths {[len(i) for i in answer['items']]}"


@pytest.mark.req("TP-CHECKSUM-VALID")
async def test_frames_with_xxh3_checksums_are_accepted(
    impl_caller: CallerUnderTest, make_probe_worker: Callable[..., ProbeWorker]
):
    worker = make_probe_worker(impl_caller.discovery, write_checksum=True)
    await worker.start()
    try:
        answer = await impl_caller.call(worker.endpoint("stream"), {"count": 5})
    finally:
        await worker.close()
    assert answer["outcome"] == "complete", answer
    assert _seqs(answer) == list(range(5))


@pytest.mark.req("RS-CALLER-PROLOGUE-ERROR")
async def test_prologue_error_fails_the_call_with_its_text(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    answer = await impl_caller.call(probe_worker.endpoint("prologue_error"), {}, deadline=PROMPT_DEADLINE_S)
    assert_prompt_failure(answer, "a prologue error")
    assert answer["items"] == []
    assert PROLOGUE_ERROR_TEXT in answer["error"]["message"], answer["error"]


@pytest.mark.req("RS-CALLER-ERROR-ITEM")
async def test_error_item_is_reported_after_the_items_before_it(
    impl_caller: CallerUnderTest, probe_worker: ProbeWorker
):
    answer = await impl_caller.call(probe_worker.endpoint("error_item"), {}, deadline=PROMPT_DEADLINE_S)
    assert answer["items"] == [{"seq": 0}], answer
    assert answer["outcome"] == "error", f"an error item was swallowed: {answer}"
    assert_prompt_failure(answer, "an error item")
    assert ERROR_ITEM_TEXT in answer["error"]["message"], answer["error"]
    # The older shape, still what `event: "error"` means: no `error` object, the text in `comment` (releases < 1.2).
    older = {"event": "error", "comment": [ERROR_ITEM_TEXT]}
    answer = await impl_caller.call(
        probe_worker.endpoint("typed_error_item"), {"error_item": older}, deadline=PROMPT_DEADLINE_S
    )
    assert answer["items"] == [{"seq": 0}], answer
    assert answer["outcome"] == "error", f"an error item of the older shape was swallowed: {answer}"
    assert_prompt_failure(answer, "an error item of the older shape")


@pytest.mark.robustness
@pytest.mark.req("RS-CALLER-INCOMPLETE")
@pytest.mark.parametrize("behaviour", ["truncate", "reset_mid"])
async def test_stream_cut_before_complete_final_is_an_error(
    impl_caller: CallerUnderTest, probe_worker: ProbeWorker, behaviour: str
):
    answer = await impl_caller.call(probe_worker.endpoint(behaviour), {"count": 2}, deadline=PROMPT_DEADLINE_S)
    assert answer["outcome"] == "error", f"a cut stream was presented as complete: {answer}"
    assert_prompt_failure(answer, f"a stream cut by {behaviour}")
    assert _seqs(answer) == [0, 1][: len(answer["items"])]


@pytest.mark.robustness
@pytest.mark.req("RS-CALLER-SENTINEL-NO-FINAL")
async def test_sentinel_without_complete_final_is_an_error(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    answer = await impl_caller.call(
        probe_worker.endpoint("sentinel_no_final"), {"count": 2}, deadline=PROMPT_DEADLINE_S
    )
    assert answer["outcome"] == "error", f"a stream without complete_final was presented as complete: {answer}"
    assert_prompt_failure(answer, "a sentinel without complete_final")


@pytest.mark.robustness
@pytest.mark.req("RS-CALLER-ITEM-AFTER-FINAL")
async def test_item_after_complete_final_is_an_error(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    answer = await impl_caller.call(probe_worker.endpoint("item_after_final"), {}, deadline=PROMPT_DEADLINE_S)
    assert answer["outcome"] == "error", f"data after complete_final went unnoticed: {answer}"
    assert_prompt_failure(answer, "an item after complete_final")


@pytest.mark.robustness
@pytest.mark.req("RS-CALLER-BAD-FRAME")
async def test_undecodable_frame_ends_the_call_with_an_error(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    answer = await impl_caller.call(probe_worker.endpoint("garbage_frame"), {}, deadline=PROMPT_DEADLINE_S)
    assert_prompt_failure(answer, "an undecodable frame")
    assert _seqs(answer) in ([], [0])


@pytest.mark.robustness
@pytest.mark.req("RS-CALLER-FRAME-LIMIT")
async def test_absurd_frame_length_ends_the_call_at_once(
    impl_caller_on_every_plane: OnEveryPlane[None],
):
    """Made on every plane at once: a caller that waits for the declared bytes sits out PROMPT_DEADLINE_S once."""

    async def absurd_frame(caller: CallerUnderTest, worker: ProbeWorker) -> None:
        answer = await caller.call(worker.endpoint("absurd_frame"), {}, deadline=PROMPT_DEADLINE_S)
        assert worker.received, f"the request never reached the worker, so no prelude was sent: {answer}"
        assert_prompt_failure(answer, "a prelude declaring 2^62-byte header and body")
        assert _seqs(answer) in ([], [0])

    await impl_caller_on_every_plane(absurd_frame)


@pytest.mark.req("RS-CALLER-FIN")
async def test_caller_closes_promptly_after_the_sentinel(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    answer = await impl_caller.call(probe_worker.endpoint("stream"), {"count": 3})
    assert answer["outcome"] == "complete", answer
    (received,) = await probe_worker.wait_for_requests(1)
    await asyncio.wait_for(received.done.wait(), 15.0)
    delay = received.activity.fin_after_sentinel_s
    assert delay is not None, "the caller never closed the call-home connection"
    assert delay < 2.0, f"the caller closed {delay:.2f}s after the sentinel"


@pytest.mark.req("RS-CALLER-STOP")
async def test_graceful_cancel_sends_stop(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    answer = await impl_caller.call(
        probe_worker.endpoint("slow"),
        {"interval": 0.05, "count": 400, "end_on_cancel": True},  # the worker ends the stream, as Dynamo's does
        cancel={"after_items": 2, "mode": "stop"},
        deadline=15.0,
    )
    assert answer["outcome"] in ("cancelled", "complete"), answer
    (received,) = await probe_worker.wait_for_requests(1)
    await asyncio.wait_for(received.done.wait(), 15.0)
    words = received.activity.control_words()
    assert words[:1] == ["stop"], f"expected 'stop' first on the call-home connection, got {words}"


@pytest.mark.req("RS-CALLER-KILL")
async def test_dropping_a_stream_tells_the_worker(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    answer = await impl_caller.call(
        probe_worker.endpoint("slow"),
        {"interval": 0.05, "count": 400},
        cancel={"after_items": 2, "mode": "kill"},
        deadline=15.0,
    )
    assert answer["outcome"] == "cancelled", answer
    (received,) = await probe_worker.wait_for_requests(1)
    await asyncio.wait_for(received.done.wait(), 15.0)
    activity = received.activity
    assert "kill" in activity.control_words() or activity.caller_closed_at is not None, (
        f"the worker was never told: controls {activity.control_words()}, closed {activity.caller_closed_at}"
    )


@pytest.mark.req("RS-CALLER-CONCURRENT")
async def test_concurrent_calls_do_not_mix(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    counts = [5, 17, 1, 40, 9, 23, 3, 31]
    answers = await asyncio.gather(
        *(impl_caller.call(probe_worker.endpoint("stream"), {"count": count}) for count in counts)
    )
    for count, answer in zip(counts, answers, strict=True):
        assert answer["outcome"] == "complete", answer
        assert _seqs(answer) == list(range(count)), f"call for {count} items got {_seqs(answer)}"
