"""Scenarios of different tests made at once (fixtures.dos.at_once): once a run, each judged by its own test.

The first of a set's tests to run makes every scenario of the set the session runs, at once, each on a worker of its
own; each test gets, and judges, only its own scenario's outcome (a failing scenario fails its test alone), and a test
deselected has its scenario not made at all.
"""

from __future__ import annotations

import pytest

from tests.suite_samples import SUITE_INI, run_suite_sample

pytest_plugins = ["pytester"]

SAMPLE = """
import asyncio
import time

import pytest

from fixtures.dos.at_once import Scenario

MADE = {}

pytestmark = [pytest.mark.planes("tcp")]


def recorder(name, fails=False):
    async def make(worker, wire_client):
        MADE[name] = (worker.adapter.pid, time.monotonic())
        await asyncio.sleep(0.5)  # a window the scenario sits out
        assert (await wire_client.call(worker.record("echo"), {"from": name})).values() == [{"from": name}]
        assert not fails, f"{name} fails"

    return make


async def test_a_first(dos_scenarios_at_once):
    await dos_scenarios_at_once(AT_ONCE)
    assert set(MADE) == set(EXPECTED), f"not every scenario of the set was made by the first test: {sorted(MADE)}"
    assert len({pid for pid, _ in MADE.values()}) == len(MADE), "two scenarios shared a worker"
    started = [at for _, at in MADE.values()]
    assert max(started) - min(started) < 0.4, "the scenarios were made one after another"


async def test_b_fails(dos_scenarios_at_once):
    await dos_scenarios_at_once(AT_ONCE)


async def test_c_second(dos_scenarios_at_once):
    await dos_scenarios_at_once(AT_ONCE)
    assert set(MADE) == set(EXPECTED), f"made more than once or missing: {sorted(MADE)}"


AT_ONCE = {
    test_a_first.__name__: Scenario(recorder("a")),
    test_b_fails.__name__: Scenario(recorder("b", fails=True)),
    test_c_second.__name__: Scenario(recorder("c")),
}
"""


@pytest.mark.parametrize(
    ("select", "expected", "outcomes"),
    [(None, "abc", {"passed": 2, "failed": 1}), ("not test_b", "ac", {"passed": 2})],
)
def test_a_set_is_made_at_once_and_judged_per_test(
    pytester: pytest.Pytester, select: str | None, expected: str, outcomes: dict[str, int]
) -> None:
    pytester.makeini(SUITE_INI)
    pytester.makepyfile(test_sample=SAMPLE.replace("MADE = {}", f"MADE = {{}}\nEXPECTED = {list(expected)!r}"))
    selected = ["-k", select] if select else []
    result = run_suite_sample(pytester, "-p", "no:randomly", *selected, plugins=("fixtures.dos.at_once",))
    result.assert_outcomes(**outcomes)
    if "b" in expected:
        result.stdout.fnmatch_lines(["FAILED test_sample.py::test_b_fails*b fails*"])
