"""Per-test timeouts (pytest-timeout): a hang fails the test that hangs, by name, and the run goes on."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

HANGING = """
import asyncio

import pytest


@pytest.fixture(scope="session")
async def session_loop():
    yield asyncio.get_running_loop()


async def test_waits_for_an_answer_that_never_comes(session_loop):
    await asyncio.Event().wait()


async def test_runs_after_the_hang_on_the_same_loop(session_loop):
    assert asyncio.get_running_loop() is session_loop
    await asyncio.sleep(0)


@pytest.mark.timeout(30)
async def test_a_longer_limit_where_a_test_needs_it(session_loop):
    await asyncio.sleep(2.5)
"""


def test_the_project_sets_a_default_per_test_timeout(pytestconfig: pytest.Config) -> None:
    assert float(pytestconfig.getini("timeout")) > 0


def test_a_hanging_async_test_fails_by_timeout_naming_the_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the summary line whole, not cut at the terminal's width
    pytester.makeini(
        """
        [pytest]
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = session
        asyncio_default_test_loop_scope = session
        timeout = 2
        """
    )
    pytester.makepyfile(test_hang=HANGING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rf")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "FAILED test_hang.py::test_waits_for_an_answer_that_never_comes"
            " - Failed: Timeout (>2.0s) from pytest-timeout*"
        ]
    )
