"""The implementation as a caller: a worker that calls home and then stalls before its stream begins.

CALLER-CALLHOME-TIMEOUT bounds the wait "for the worker's call-home and prologue". A worker that never dials
back is one shape of that wait (``test_caller_requests.py``); a worker that dials back and then sends nothing,
or only its handshake, is the other: a caller that stops its clock at the connect or at the handshake hangs on
it.  Not checked here: a worker that sent its prologue and then no item.  Neither the protocol notes nor Dynamo
(nor the reference) put a deadline on the wait for items, since generating the first one may legitimately take
as long as the model needs (tcp-and-response-stream.md §6.4); a bound there would be a new rule, not this one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fixtures.probes.probe_worker import ProbeWorker
from fixtures.roles import CallerUnderTest
from fixtures.timeouts import DEADLINE_CHECK_HANDED_S, DEADLINE_TOLERANCE_S, TimeoutInForce


async def _ended_by_the_callhome_timeout(
    caller: CallerUnderTest, make_probe_worker: Callable[..., ProbeWorker], behaviour: str, timeout: TimeoutInForce
) -> None:
    """The call fails as the call-home timeout (``timeout``, in force), within the tolerance, after the dial-back."""
    bound = timeout.bound("callhome", DEADLINE_CHECK_HANDED_S)
    worker = make_probe_worker(caller.discovery)
    await worker.start()
    try:
        # The suite's deadline sits just past the bound: a later failure is a failure of the requirement anyway.
        answer = await caller.call(worker.endpoint(behaviour), {"n": 1}, deadline=bound + DEADLINE_TOLERANCE_S)
        (received,) = await worker.wait_for_requests(1)
    finally:
        await worker.close()
    assert received.callhome is not None, f"the probe could not call home: {received.envelope_error}"
    assert answer["outcome"] == "error", f"no bounded wait once the worker called home ({behaviour}): {answer}"
    assert answer["error"]["kind"] != "timeout", (
        f"the worker called home and stalled ({behaviour}); only the suite's deadline ended the wait: {answer['error']}"
    )
    assert answer["error"]["kind"] == "callhome_timeout", f"not failed by the call-home timeout: {answer['error']}"
    assert answer["elapsed_s"] < bound, f"waited {answer['elapsed_s']:.1f}s; the call-home timeout in force: {timeout}"


@pytest.mark.req("CALLER-CALLHOME-TIMEOUT")
@pytest.mark.parametrize("behaviour", ["stall_before_handshake", "stall_before_prologue"])
async def test_a_worker_that_calls_home_and_stalls_fails_the_call(
    impl_caller_for_deadlines: CallerUnderTest,
    make_probe_worker: Callable[..., ProbeWorker],
    timeouts: Callable[..., TimeoutInForce],
    behaviour: str,
):
    timeout = timeouts("callhome", DEADLINE_CHECK_HANDED_S)
    await _ended_by_the_callhome_timeout(impl_caller_for_deadlines, make_probe_worker, behaviour, timeout)
