"""Checks made on every plane at once (fixtures.roles.impl_caller_on_every_plane): once a run, judged per plane.

A check a failing implementation sits out (a prompt-failure check against a caller that never ends the call) costs
its bound once per plane when each plane's test makes its own call.  The first of the test's planes to run makes it
on every plane the session runs the test on; each plane's test still gets, and judges, only its own outcome (one
verdict per requirement and plane), and a plane whose check failed has its shared caller retired.
"""

from __future__ import annotations

import pytest

from tests.suite_samples import SUITE_INI, run_suite_sample

pytest_plugins = ["pytester"]

SAMPLE = """
import pytest

MADE = []
PIDS = {}

pytestmark = [pytest.mark.req("RS-CALLER-ITEMS")]


async def echo_or_fail_on_nats(caller, worker):
    MADE.append(caller.plane)
    PIDS[caller.plane] = caller.adapter.pid
    answer = await caller.call(worker.endpoint("echo"), {"plane": caller.plane})
    assert caller.plane != "nats", "this check fails on nats only"
    return answer["items"]


async def test_a_made_on_every_plane_at_once(impl_caller_on_every_plane, plane):
    items = await impl_caller_on_every_plane(echo_or_fail_on_nats)
    assert sorted(MADE) == sorted(PLANES), f"not made on every plane by the first test: {MADE}"
    assert items == [{"plane": plane}], "a plane's test got another plane's outcome"


async def test_b_made_once_and_a_failed_planes_caller_retired(impl_caller, plane):
    assert sorted(MADE) == sorted(PLANES), f"made more than once: {MADE}"
    if plane == "nats":
        assert impl_caller.adapter.pid != PIDS["nats"], "the caller the check failed on was handed on"
    else:
        assert impl_caller.adapter.pid == PIDS[plane], "a caller the check passed on was not shared"
"""


@pytest.mark.parametrize(("planes", "outcomes"), [("tcp,nats", {"passed": 3, "failed": 1}), ("tcp", {"passed": 2})])
def test_a_check_is_made_once_on_every_plane_and_judged_per_plane(
    pytester: pytest.Pytester, planes: str, outcomes: dict[str, int]
) -> None:
    pytester.makeini(SUITE_INI)
    pytester.makepyfile(test_sample=SAMPLE.replace("MADE = []", f"MADE = []\nPLANES = {planes.split(',')!r}"))
    result = run_suite_sample(pytester, "-p", "no:randomly", planes=planes)
    result.assert_outcomes(**outcomes)
    if "nats" in planes:
        result.stdout.fnmatch_lines(["FAILED test_sample.py::test_a_made_on_every_plane_at_once[[]nats[]]*"])


SAMPLE_XDIST = """
import pytest

MADE = []

pytestmark = [pytest.mark.req("RS-CALLER-ITEMS")]


async def echo(caller, worker):
    MADE.append(caller.plane)
    answer = await caller.call(worker.endpoint("echo"), {"plane": caller.plane})
    return answer["items"]


async def test_made_on_its_own_plane_only(impl_caller_on_every_plane, plane):
    items = await impl_caller_on_every_plane(echo)
    assert MADE[-1] == plane and MADE.count(plane) == 1, f"not made for its own plane alone: {MADE}"
    assert items == [{"plane": plane}], "a plane's test got another plane's outcome"
"""


def test_in_an_xdist_worker_each_planes_test_makes_its_own_check_only(pytester: pytest.Pytester) -> None:
    """An xdist worker does not know which of a test's other planes it will run: making them all would make them
    again on every worker that runs one."""
    pytester.makeini(SUITE_INI)
    pytester.makepyfile(test_sample=SAMPLE_XDIST)
    result = run_suite_sample(
        pytester, "-n", "2", planes="tcp,http"
    )  # two planes, two workers: no NATS server to start
    result.assert_outcomes(passed=2)
