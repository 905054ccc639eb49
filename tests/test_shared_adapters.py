"""Adapter processes shared across suite tests (fixtures.roles.SharedAdapters): reused only while safe.

``impl_worker``/``impl_caller`` hand every test the same process per role and plane, because starting one per
module and plane was most of a serial run. Sharing must not let one test's leftovers decide another's
verdict: a process that died (or stops answering) is replaced before the next test gets it, a test that did
not pass retires the processes it used, and ``@pytest.mark.fresh_adapter`` gives a test a process of its own.
"""

from __future__ import annotations

import pytest

from tests.suite_samples import SUITE_INI, run_suite_sample

pytest_plugins = ["pytester"]

SAMPLE = """
import os
import signal

import pytest

PIDS = {}

pytestmark = [pytest.mark.planes("tcp"), pytest.mark.req("TCP-ACK-EMPTY")]


async def test_1_first(impl_worker, plane):
    PIDS["first"] = impl_worker.adapter.pid


async def test_2_same_process_for_the_next_test(impl_worker, plane):
    PIDS["second"] = impl_worker.adapter.pid
    assert PIDS["second"] == PIDS["first"], "the worker was not shared"


@pytest.mark.fresh_adapter
async def test_3_fresh_when_marked(impl_worker, plane):
    PIDS["fresh"] = impl_worker.adapter.pid
    assert PIDS["fresh"] != PIDS["first"], "a test marked fresh_adapter got the shared process"


async def test_4_shared_again_after_a_fresh_one(impl_worker, plane):
    assert impl_worker.adapter.pid == PIDS["first"]


async def test_5_fails_after_killing_nothing(impl_worker, plane):
    PIDS["failed_on"] = impl_worker.adapter.pid
    assert False, "a failing test"


async def test_6_fresh_after_a_failure(impl_worker, plane):
    PIDS["after_failure"] = impl_worker.adapter.pid
    assert PIDS["after_failure"] != PIDS["failed_on"], "a failed test's process was handed on"


async def test_7_kills_the_shared_process(impl_worker, plane):
    PIDS["killed"] = impl_worker.adapter.pid
    os.killpg(impl_worker.adapter.pid, signal.SIGKILL)
    await impl_worker.adapter.process.wait()


async def test_8_a_dead_process_is_replaced(impl_worker, wire_client, plane):
    assert impl_worker.adapter.pid != PIDS["killed"], "a dead process was handed out"
    result = await wire_client.call(impl_worker.record("echo"), {"alive": True})
    assert result.values() == [{"alive": True}]
"""


def test_shared_adapters_are_reused_replaced_and_retired(pytester: pytest.Pytester) -> None:
    pytester.makeini(SUITE_INI)
    pytester.makepyfile(test_sample=SAMPLE)
    result = run_suite_sample(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_sample.py::test_5_fails_after_killing_nothing*"])
