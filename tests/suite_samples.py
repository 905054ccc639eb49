"""Sample test files run under the suite's own plugins (pytester), against the reference: what they share.

A test of a suite fixture (shared adapters, checks made on every plane or scenarios made at once) writes a small
test file that uses it and runs it in a pytest of its own: the settings the suite needs (``SUITE_INI``) and the
plugins, implementation and report directory it runs with (``run_suite_sample``) are the same for each.
"""

from __future__ import annotations

import pytest

SUITE_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
markers =
    req(*ids): requirement IDs
    planes(*planes): planes
    fresh_adapter: own adapter
"""
SUITE_PLUGINS = ("fixtures.plugin", "fixtures.roles", "fixtures.nats_server")


def run_suite_sample(
    pytester: pytest.Pytester, *options: str, planes: str = "tcp", plugins: tuple[str, ...] = ()
) -> pytest.RunResult:
    """Run the sample written to ``pytester`` against the reference on ``planes``, with the suite's plugins (and
    ``plugins``), in a pytest process of its own."""
    loaded = (*SUITE_PLUGINS, *plugins, "no:cacheprovider")
    return pytester.runpytest_subprocess(
        *(arg for plugin in loaded for arg in ("-p", plugin)),
        *("--impl", "reference", "--planes", planes, "--report-dir", str(pytester.path / "reports")),
        *options,
    )
