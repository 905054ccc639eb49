"""The implementation as a caller: a stream nobody reads any more must be cancelled.

Checked from what the probe worker receives on the call-home connection while
it streams ``slow`` (an item every 50 ms for 20 s): a caller that ignores the
drop lets it run to the end, one that notices sends ``stop`` or ``kill``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from fixtures.adapter_process import AdapterError
from fixtures.probes.probe_worker import ProbeWorker
from fixtures.roles import CallerUnderTest, OnEveryPlane, unless_the_call_fails

NOTICE_WITHIN_S = 2.0  # RS-CALLER-DROP / RS-CALLER-TASK-CANCEL: first stop/kill after the consumer let go
CLOSE_WITHIN_S = 10.0  # ... and the call-home connection closed
# RS-CALLER-TASK-CANCEL-HELD: the adapter keeps the stream referenced this long after cancelling its reading task,
# longer than NOTICE_WITHIN_S, so the stop must come from the cancellation, not from releasing the stream.  The
# suite ends the hold sooner (the adapter protocol's ``release``) once the probe worker has seen that stop, so only a
# caller that fails sits it out.  The margin over NOTICE_WITHIN_S is what keeps a stop sent on the release from
# passing for one within NOTICE_WITHIN_S of the cancellation: the suite dates the cancellation from the adapter's
# answer, which follows the release, so such a stop reads as coming the hold minus that lag after it.  The lag seen
# against the Dynamo releases whose kill comes on the release was 0.03-0.06 s (kill 2.94-2.97 s into a 3 s hold,
# 0.8.1 to 1.6.1: conformance/expected_failures); half a second is eight times the most, and the 1 s margin it was
# cost a second per plane on every run of such a caller.
HOLD_MARGIN_S = 0.5
HOLD_AFTER_TASK_CANCEL_S = NOTICE_WITHIN_S + HOLD_MARGIN_S
RELEASE_POLL_S = 0.02  # how often the suite looks for the stop that lets it end the hold
# An item every 50 ms for 20 s.  Not faster: the adapter answers with the items read before it let go, which must be
# exactly the first two, and at load 12 an adapter took over 20 ms to cancel its reading task after the second.
SLOW_STREAM = {"interval": 0.05, "count": 400}


async def _abandon(impl_caller: CallerUnderTest, probe_worker: ProbeWorker, mode: str, hold_s: float = 0.0) -> None:
    cancel: dict[str, object] = {"after_items": 2, "mode": mode}
    if hold_s:
        cancel["hold_s"] = hold_s  # the stream stays referenced: only the cancellation itself may stop it
        cancel["release"] = uuid.uuid4().hex  # ... and the hold ends once the probe worker has seen that stop
    call = asyncio.ensure_future(
        impl_caller.call(probe_worker.endpoint("slow"), dict(SLOW_STREAM), cancel=cancel, deadline=15.0)
    )
    answered_at: list[float] = []
    call.add_done_callback(lambda _: answered_at.append(time.monotonic()))
    held_s = await _release_once_stopped(impl_caller, probe_worker, call, str(cancel["release"])) if hold_s else None
    answer = await call
    answered = answered_at[0]
    let_go_by = answered - (hold_s if held_s is None else held_s)  # the adapter answered: the consumer let go before
    assert answer["outcome"] == "cancelled", answer
    assert [item["seq"] for item in answer["items"]] == [0, 1], answer
    (received,) = await probe_worker.wait_for_requests(1)
    activity = received.activity
    while not activity.controls and time.monotonic() < let_go_by + NOTICE_WITHIN_S:
        await asyncio.sleep(0.02)
    words = activity.control_words()
    assert words and words[0] in ("stop", "kill"), (
        f"no stop/kill within {NOTICE_WITHIN_S}s of the consumer letting go ({mode}): the worker keeps streaming; "
        f"controls {words}, caller closed: {activity.caller_closed_at is not None}"
    )
    notice_s = activity.controls[0][0] - let_go_by
    if hold_s:
        assert activity.controls[0][0] < answered, (
            f"{words[0]!r} came only once the stream object was released, not when its reading task was cancelled"
        )
    assert notice_s < NOTICE_WITHIN_S, f"{words[0]!r} came {notice_s:.2f}s after the consumer let go"
    await asyncio.wait_for(received.done.wait(), CLOSE_WITHIN_S + 5.0)
    assert activity.caller_closed_at is not None, f"the call-home connection was left open (controls {words})"
    assert activity.caller_closed_at - let_go_by < CLOSE_WITHIN_S, (
        f"the call-home connection closed {activity.caller_closed_at - let_go_by:.1f}s after the consumer let go"
    )


async def _release_once_stopped(
    impl_caller: CallerUnderTest, probe_worker: ProbeWorker, call: asyncio.Future[Any], token: str
) -> float | None:
    """End the adapter's hold as soon as the probe worker saw a stop or kill: how long it had held.

    None: the hold ran its full length (no stop came while it held, or the adapter cannot end it sooner)."""
    (received,) = await unless_the_call_fails(call, probe_worker.wait_for_requests(1))
    while not received.activity.controls and not call.done():
        await asyncio.sleep(RELEASE_POLL_S)
    if call.done():
        return None
    try:
        released = await impl_caller.adapter.request("release", token=token)
    except AdapterError:  # an adapter without the op: the hold runs out
        return None
    return float(released["held_s"]) if released.get("released") else None


@pytest.mark.req("RS-CALLER-DROP")
async def test_releasing_a_stream_cancels_it(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    await _abandon(impl_caller, probe_worker, "drop")


@pytest.mark.req("RS-CALLER-TASK-CANCEL")
async def test_cancelling_the_reading_task_cancels_the_stream(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    await _abandon(impl_caller, probe_worker, "cancel_task")


@pytest.mark.req("RS-CALLER-TASK-CANCEL-HELD")
async def test_cancelling_the_reading_task_cancels_a_stream_still_referenced(
    impl_caller_on_every_plane: OnEveryPlane[None],
):
    """Made on every plane at once: a caller that stops the stream only on its release sits out the hold once."""

    async def held(caller: CallerUnderTest, worker: ProbeWorker) -> None:
        await _abandon(caller, worker, "cancel_task", hold_s=HOLD_AFTER_TASK_CANCEL_S)

    await impl_caller_on_every_plane(held)
