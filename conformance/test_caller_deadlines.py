"""The implementation as a caller: its ACK and call-home deadlines, judged from what was exchanged.

A deadline is honoured when the request reached the worker and the call then failed no sooner than the
deadline in force and no later than it plus the tolerance (CALLER-ACK-TIMEOUT, CALLER-CALLHOME-TIMEOUT).
Each check's caller is handed the deadline checked short and every other deadline past the check's bound
(``deadline_check_handed``), so nothing else the caller may bound its wait by can end the call in that
window.  What the caller *says* ended the call is a requirement of its own (CALLER-DEADLINE-REASON): the
timing proves the deadline exists, the words let a user of the caller tell a timeout from a lost connection.

Both requirements judge the same call: it is made once per plane and behaviour and kept for the module, and
all the calls of every plane run at once (each on its own probe worker and clock), so the module sits out one
deadline, not one per plane.  Before its clock starts, each call is preceded by one healthy call from the same
caller to the same probe worker (``WARM_UP``): what a caller does once (import its plane's client, connect to the
NATS server, open its connection to that worker) is then not counted against a quarter-second deadline, so it cannot
end a call before its request even reached the worker, or push it past the bound, on a loaded machine.  The judged
request is the worker's second, on a connection already in use: a deadline must hold there as on a first call.
A caller's warm-up calls are made one after another (Dynamo 1.6.1's NATS caller can wedge its event loop for good
on concurrent first calls to new endpoints), and every clock starts once every warm-up is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from fixtures.plugin import session_of
from fixtures.probes.probe_worker import ProbeWorker
from fixtures.roles import CallerUnderTest, new_probe_worker
from fixtures.timeouts import (
    DEADLINE_EARLY_SLACK_S,
    DEADLINE_TOLERANCE_S,
    TimeoutInForce,
    deadline_check_handed,
    in_force,
)

# The probe worker's behaviour that makes each deadline the one to fire: it never ACKs; it ACKs, never calls home.
BEHAVIOUR_FOR = {"ack": "no_ack", "callhome": "silent"}
# The other shapes of the wait the call-home deadline bounds: the worker dials back, then stalls.
CALLHOME_STALLS = ("stall_before_handshake", "stall_before_prologue")
# Every call of the module, per plane: (deadline, probe behaviour).
RUNS = (*BEHAVIOUR_FOR.items(), *(("callhome", stall) for stall in CALLHOME_STALLS))
# The healthy call made before each judged call's clock starts (same caller, same probe worker), and its bound: it
# only has to be over, whatever its outcome (a caller that cannot make it fails the judged call on its own).
WARM_UP = "echo"
WARM_UP_DEADLINE_S = 10.0
# How much longer than its own deadline an adapter's answer to a warm-up call is awaited.  An adapter answers at its
# deadline (these calls carry nothing); one that has not answered this much later is stuck (Dynamo 1.6.1's NATS
# caller sometimes wedges its event loop with calls in flight here, as on main), and the default 30 s would only be
# the suite's cost.
ANSWER_SLACK_S = 5.0
# The judged call's deadline is the bound itself, and its answer is awaited only this much past it: an answer that
# comes later fails the check whatever it says (the suite's clock then reads at least the bound), so a longer wait
# (it was the bound plus the 2 s tolerance, then 5 s more for the answer) could change no verdict, only the words
# of a failure: "the adapter did not answer" instead of "waited N s".  Half a second lets a healthy adapter's
# answer to the deadline it was given (a timer firing, a line of JSON) arrive on a loaded machine, so a caller
# with no such deadline is still reported as having waited past the bound.
JUDGED_ANSWER_SLACK_S = 0.5


@dataclass(frozen=True)
class DeadlineRun:
    """One call made to meet a deadline, as the suite saw it (its own clock, its own probe worker)."""

    name: str
    handed: dict[str, float]  # what the caller making it was handed (``deadline_check_handed``)
    timeout: TimeoutInForce
    answer: dict[str, Any]
    elapsed_s: float  # suite clock: from asking for the call to the caller's answer
    worker_side: str | None  # what kept the deadline from being put to the test on the worker's side; None: nothing

    @property
    def bound(self) -> float:
        return self.timeout.bound(self.name, self.handed)

    @property
    def earliest(self) -> float:
        """The soonest the deadline in force can end the call (none in force: the value handed)."""
        seconds = self.timeout.seconds
        if seconds is None:
            seconds = self.handed[self.name]
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
async def deadline_runs() -> dict[str, asyncio.Task[dict[tuple[str, str], DeadlineRun | BaseException]]]:
    """The calls made in this module (by plane and behaviour), once: each is judged by every test citing it."""
    return {}


async def _make_deadline_run(
    caller: CallerUnderTest,
    worker: ProbeWorker,
    timeout: TimeoutInForce,
    handed: dict[str, float],
    name: str,
    behaviour: str,
    first_calls: asyncio.Lock,
    all_warm: asyncio.Barrier,
) -> DeadlineRun:
    """Start ``worker``, warm ``caller`` up on it (one first call of that caller at a time), wait for every run's
    warm-up (``all_warm``), then time the judged call."""
    bound = timeout.bound(name, handed)
    try:
        try:
            await worker.start()
            async with first_calls:
                with contextlib.suppress(Exception):  # its outcome is not judged (see WARM_UP)
                    await caller.call(
                        worker.endpoint(WARM_UP),
                        {"warm": "up"},
                        deadline=WARM_UP_DEADLINE_S,
                        answer_slack=ANSWER_SLACK_S,
                    )
        finally:
            await all_warm.wait()  # reached whatever happened, so no other run waits for this one in vain
        started = time.monotonic()
        # The suite's deadline is the bound: a later failure is a failure of the requirement anyway.
        answer = await caller.call(
            worker.endpoint(behaviour), {"n": 1}, deadline=bound, answer_slack=JUDGED_ANSWER_SLACK_S
        )
        elapsed = time.monotonic() - started
    finally:
        await worker.close()
    return DeadlineRun(name, handed, timeout, answer, elapsed, _worker_side(worker, behaviour))


def _worker_side(worker: ProbeWorker, behaviour: str) -> str | None:
    received = [request for request in worker.received if request.behaviour == behaviour]
    if not received:
        return "the request never reached the worker"
    if behaviour in CALLHOME_STALLS and received[0].callhome is None:
        return f"the probe worker could not call home ({received[0].envelope_error})"
    return None


@pytest.fixture
def deadline_run(
    request: pytest.FixtureRequest,
    deadline_runs: dict[str, asyncio.Task[dict[tuple[str, str], DeadlineRun | BaseException]]],
    impl_callers_for_deadline_checks: dict[tuple[str, str], CallerUnderTest],
    plane: str,
) -> Callable[[str], Awaitable[DeadlineRun]]:
    """``run(behaviour)``: the call meeting the deadline ``behaviour`` is for, on this test's plane.

    The first test of the module makes every call of every plane (``RUNS``) at once, each on its own probe worker and
    timed on its own clock, and waits for all of them (no probe worker outlives the test that started it): the calls
    share nothing the deadlines depend on, so the module sits out its longest deadline once, not each in turn."""
    callers = impl_callers_for_deadline_checks
    planes = list(dict.fromkeys(caller_plane for caller_plane, _ in callers))
    hello = session_of(request.config).hello

    async def make_all() -> dict[tuple[str, str], DeadlineRun | BaseException]:
        keys, made = [], []
        first_calls = {key: asyncio.Lock() for key in callers}
        all_warm = asyncio.Barrier(len(planes) * len(RUNS))
        for p in planes:
            for name, behaviour in RUNS:
                handed = deadline_check_handed(name, hello)
                caller = callers[p, name]
                worker = new_probe_worker(request, p, caller.discovery)
                timeout = in_force(hello, name, p, handed)
                keys.append((p, behaviour))
                made.append(
                    _make_deadline_run(caller, worker, timeout, handed, name, behaviour, first_calls[p, name], all_warm)
                )
        made_runs = await asyncio.gather(*made, return_exceptions=True)  # one failing call fails only its tests
        return dict(zip(keys, made_runs, strict=True))

    async def run(behaviour: str) -> DeadlineRun:
        if "all" not in deadline_runs:
            deadline_runs["all"] = asyncio.ensure_future(make_all())
        made = (await asyncio.shield(deadline_runs["all"]))[plane, behaviour]
        if isinstance(made, BaseException):
            raise made
        return made

    return run


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
async def test_a_missing_ack_fails_the_call(deadline_run: Callable[[str], Awaitable[DeadlineRun]]):
    _assert_honoured(await deadline_run(BEHAVIOUR_FOR["ack"]))


@pytest.mark.req("CALLER-CALLHOME-TIMEOUT")
async def test_a_worker_that_never_calls_home_fails_the_call(deadline_run: Callable[[str], Awaitable[DeadlineRun]]):
    _assert_honoured(await deadline_run(BEHAVIOUR_FOR["callhome"]))


@pytest.mark.req("CALLER-CALLHOME-TIMEOUT")
@pytest.mark.parametrize("behaviour", CALLHOME_STALLS)
async def test_a_worker_that_calls_home_and_stalls_fails_the_call(
    deadline_run: Callable[[str], Awaitable[DeadlineRun]], behaviour: str
):
    _assert_honoured(await deadline_run(behaviour))


@pytest.mark.req("CALLER-DEADLINE-REASON")
async def test_a_missing_ack_is_reported_as_the_ack_timeout(deadline_run: Callable[[str], Awaitable[DeadlineRun]]):
    _assert_reported_as_that_timeout(await deadline_run(BEHAVIOUR_FOR["ack"]))


@pytest.mark.req("CALLER-DEADLINE-REASON")
async def test_a_missing_call_home_is_reported_as_the_callhome_timeout(
    deadline_run: Callable[[str], Awaitable[DeadlineRun]],
):
    _assert_reported_as_that_timeout(await deadline_run(BEHAVIOUR_FOR["callhome"]))
