"""The suite's pytest plugins, loaded wherever the suite is collected.

This conftest (not the repository's root one) names them, so ``pytest conformance/``
in a checkout, ``rp-conformance`` and ``pytest --pyargs conformance`` from an installed
wheel all load them once, and nothing else is touched: a pytest session that does
not collect the suite never sees them.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Generator

import pytest

pytest_plugins = [
    "fixtures.plugin",
    "fixtures.roles",
    "fixtures.dos.fresh_workers",
    "fixtures.dos.at_once",
    "fixtures.nats_server",
    "fixtures.gc_guard",
    "fixtures.client_guard",
]

# Settings the suite cannot run without (pyproject.toml in a checkout, suite.ini elsewhere).
REQUIRED_SETTINGS = {
    "asyncio_mode": "auto",
    "asyncio_default_fixture_loop_scope": "session",
    "asyncio_default_test_loop_scope": "session",
}


def _setting(config: pytest.Config, name: str) -> object:
    """A setting as pytest-asyncio reads it: the command line first (``--asyncio-mode``), then the ini file."""
    return config.getoption(name, None) or config.getini(name)


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run with pytest settings the suite's session-wide event loop does not survive."""
    wrong = {name: found for name, value in REQUIRED_SETTINGS.items() if (found := _setting(config, name)) != value}
    if wrong:
        from conformance import PYTEST_SETTINGS

        raise pytest.UsageError(
            f"the conformance suite needs its pytest settings ({', '.join(f'{k}={v!r}' for k, v in wrong.items())}"
            f" found): run it with `rp-conformance`, or `pytest -c {PYTEST_SETTINGS} --rootdir . --pyargs conformance`"
        )


# Tests that did not pass cleanly (failed, errored, xfailed: a SHOULD not met), by node ID, until they end.
_UNCLEAN: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.outcome != "passed":
        _UNCLEAN.add(report.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """After a test that did not pass, collect its garbage now, at a point where nothing parses source.

    Why: a test that fails before awaiting all its calls leaves tasks whose exception nobody retrieved;
    asyncio logs each, with a traceback, when the garbage collector frees it, which can happen while
    pytest parses source to show the next failure. Python 3.11's traceback formatting parses source too,
    and CPython 3.11 (3.11.7 at least) cannot parse re-entrantly ("SystemError: AST constructor recursion
    depth mismatch"): the run would end with an INTERNALERROR instead of reporting the implementation.
    ``fixtures.gc_guard`` closes the other side: no collection at all while a report is being built.
    """
    try:
        return (yield)
    finally:
        if item.nodeid in _UNCLEAN:
            _UNCLEAN.discard(item.nodeid)
            gc.collect()


# Plugins installed beside the suite (a development environment) that have nothing to say about a session in which
# their library was never imported, but import it to say so: hypothesis's summary imports hypothesis (0.7 s of CPU).
SILENT_UNLESS_IMPORTED = {"hypothesispytest": "hypothesis"}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Before the terminal summary: drop those plugins whose library this session never imported (nothing to report)."""
    manager = session.config.pluginmanager
    for plugin_name, library in SILENT_UNLESS_IMPORTED.items():
        plugin = manager.get_plugin(plugin_name)
        if plugin is not None and library not in sys.modules:
            manager.unregister(plugin)
