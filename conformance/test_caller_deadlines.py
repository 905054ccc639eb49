"""The implementation as a caller: its ACK and call-home deadlines, judged from what was exchanged.

A deadline is honoured when the request reached the worker and the call then failed no sooner than the
deadline in force and no later than it plus the tolerance (CALLER-ACK-TIMEOUT, CALLER-CALLHOME-TIMEOUT).
Each check's caller is handed the deadline checked short and every other deadline past the check's bound
(``deadline_check_handed``), so nothing else the caller may bound its wait by can end the call in that
window.  What the caller *says* ended the call is a requirement of its own (CALLER-DEADLINE-REASON): the
timing proves the deadline exists, the words let a user of the caller tell a timeout from a lost connection.

Both requirements judge the same call: it is made once per plane and deadline and kept for the module.

The call-home deadline bounds the wait "for the worker's call-home and prologue": a worker that never dials
back is one shape of that wait, one that dials back and sends nothing, or only its handshake, the others (a
caller that stops its clock at the connect or at the handshake hangs on them).  Not checked: a worker that
sent its prologue and then no item.  Neither the protocol notes nor Dynamo (nor the reference) bound the wait
for items, since the first one may take as long as the model needs (tcp-and-response-stream.md §6.4).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from fixtures.probes.probe_worker import ProbeWorker
from fixtures.roles import CallerUnderTest
from fixtures.timeouts import DEADLINE_EARLY_SLACK_S, DEADLINE_TOLERANCE_S, TimeoutInForce, deadline_check_handed

# The probe worker's behaviour that makes each deadline the one to fire: it never ACKs; it ACKs, never calls home.
BEHAVIOUR_FOR = {"ack": "no_ack", "callhome": "silent"}
# The other shapes of the wait the call-home deadline bounds: the worker dials back, then stalls.
CALLHOME_STALLS = ("stall_before_handshake", "stall_before_prologue")


@dataclass(frozen=True)
class DeadlineRun:
    """One call made to meet a deadline, as the suite saw it (its own clock, its own probe worker)."""

    name: str
    timeout: TimeoutInForce
    answer: dict[str, Any]
    elapsed_s: float  # suite clock: from asking for the call to the caller's answer
    worker_side: str | None  # what kept the deadline from being put to the test on the worker's side; None: nothing

    @property
    def bound(self) -> float:
        return self.timeout.bound(self.name, deadline_check_handed(self.name))

    @property
    def earliest(self) -> float:
        """The soonest the deadline in force can end the call (none in force: the value handed)."""
        seconds = self.timeout.seconds
        if seconds is None:
            seconds = deadline_check_handed(self.name)[self.name]
        return seconds - DEADLINE_EARLY_SLACK_S

    def why_not_honoured(self) -> str | None:
        """None when the deadline ended the call; else what the exchange showed instead."""
        answer, what = self.answer, f"the {self.name} timeout in force: {self.timeout}"
        if self.worker_side is not None:
            return f"{self.worker_side}, so the {self.name} deadline was never tested: {answer}"
        if answer["outcome"] != "error":
            return f"no bounded wait ({what}): {answer}"
        if answer["error"]["kind"] == "timeout":
            return f"only the suite's deadline ended the wait after {self.elapsed_s:.1f} s ({what})"
        if self.elapsed_s < self.earliest:
            return (
                f"the call failed after {self.elapsed_s:.2f} s, before the deadline could fire ({what}): "
                f"something else ended it: {answer['error']}"
            )
        if self.elapsed_s >= self.bound:
            return f"waited {self.elapsed_s:.1f} s; {what}, tolerance {DEADLINE_TOLERANCE_S:g} s"
        return None


@pytest_asyncio.fixture(scope="module")
async def deadline_runs() -> dict[tuple[str, str], DeadlineRun]:
    """The calls made so far in this module, by (plane, deadline): each is made once, judged twice."""
    return {}


async def _deadline_run(
    runs: dict[tuple[str, str], DeadlineRun],
    caller: CallerUnderTest,
    make_probe_worker: Callable[..., ProbeWorker],
    timeout: TimeoutInForce,
    name: str,
    behaviour: str,
) -> DeadlineRun:
    key = (caller.plane, behaviour)
    if key not in runs:
        runs[key] = await _make_deadline_run(caller, make_probe_worker, timeout, name, behaviour)
    return runs[key]


async def _make_deadline_run(
    caller: CallerUnderTest,
    make_probe_worker: Callable[..., ProbeWorker],
    timeout: TimeoutInForce,
    name: str,
    behaviour: str,
) -> DeadlineRun:
    worker = make_probe_worker(caller.discovery)
    await worker.start()
    bound = timeout.bound(name, deadline_check_handed(name))
    try:
        started = time.monotonic()
        # The suite's deadline sits just past the bound: a later failure is a failure of the requirement anyway.
        answer = await caller.call(worker.endpoint(behaviour), {"n": 1}, deadline=bound + DEADLINE_TOLERANCE_S)
        elapsed = time.monotonic() - started
    finally:
        await worker.close()
    return DeadlineRun(name, timeout, answer, elapsed, _worker_side(worker, behaviour))


def _worker_side(worker: ProbeWorker, behaviour: str) -> str | None:
    if not worker.received:
        return "the request never reached the worker"
    received = worker.received[0]
    if behaviour in CALLHOME_STALLS and received.callhome is None:
        return f"the probe worker could not call home ({received.envelope_error})"
    return None


def _runner(
    runs: dict[tuple[str, str], DeadlineRun],
    caller: CallerUnderTest,
    make_probe_worker: Callable[..., ProbeWorker],
    timeouts: Callable[..., TimeoutInForce],
    name: str,
) -> Callable[..., Any]:
    """``run(behaviour)``: the call meeting the ``name`` deadline on ``caller``, made once (``deadline_runs``)."""
    timeout = timeouts(name, deadline_check_handed(name))

    def run(behaviour: str = BEHAVIOUR_FOR[name]) -> Any:
        return _deadline_run(runs, caller, make_probe_worker, timeout, name, behaviour)

    return run


@pytest.fixture
def ack_deadline_run(
    deadline_runs: dict[tuple[str, str], DeadlineRun],
    impl_caller_for_ack_deadline: CallerUnderTest,
    make_probe_worker: Callable[..., ProbeWorker],
    timeouts: Callable[..., TimeoutInForce],
) -> Callable[..., Any]:
    return _runner(deadline_runs, impl_caller_for_ack_deadline, make_probe_worker, timeouts, "ack")


@pytest.fixture
def callhome_deadline_run(
    deadline_runs: dict[tuple[str, str], DeadlineRun],
    impl_caller_for_callhome_deadline: CallerUnderTest,
    make_probe_worker: Callable[..., ProbeWorker],
    timeouts: Callable[..., TimeoutInForce],
) -> Callable[..., Any]:
    return _runner(deadline_runs, impl_caller_for_callhome_deadline, make_probe_worker, timeouts, "callhome")


def _assert_honoured(run: DeadlineRun) -> None:
    problem = run.why_not_honoured()
    assert problem is None, problem


def _assert_reported_as_that_timeout(run: DeadlineRun) -> None:
    problem = run.why_not_honoured()
    assert problem is None, f"no {run.name} deadline ended the call, so none could be reported: {problem}"
    error = run.answer["error"]
    # The deadline ended it (timing above); the caller's words must say so, not blame the connection or the worker.
    assert error["kind"] == f"{run.name}_timeout", f"the {run.name} deadline ended the call, reported as: {error}"


@pytest.mark.req("CALLER-ACK-TIMEOUT")
async def test_a_missing_ack_fails_the_call(ack_deadline_run: Callable[..., Any]):
    _assert_honoured(await ack_deadline_run())


@pytest.mark.req("CALLER-CALLHOME-TIMEOUT")
async def test_a_worker_that_never_calls_home_fails_the_call(callhome_deadline_run: Callable[..., Any]):
    _assert_honoured(await callhome_deadline_run())


@pytest.mark.req("CALLER-CALLHOME-TIMEOUT")
@pytest.mark.parametrize("behaviour", CALLHOME_STALLS)
async def test_a_worker_that_calls_home_and_stalls_fails_the_call(
    callhome_deadline_run: Callable[..., Any], behaviour: str
):
    _assert_honoured(await callhome_deadline_run(behaviour))


@pytest.mark.req("CALLER-DEADLINE-REASON")
async def test_a_missing_ack_is_reported_as_the_ack_timeout(ack_deadline_run: Callable[..., Any]):
    _assert_reported_as_that_timeout(await ack_deadline_run())


@pytest.mark.req("CALLER-DEADLINE-REASON")
async def test_a_missing_call_home_is_reported_as_the_callhome_timeout(callhome_deadline_run: Callable[..., Any]):
    _assert_reported_as_that_timeout(await callhome_deadline_run())
