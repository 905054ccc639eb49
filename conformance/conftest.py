"""The suite's pytest plugins, loaded wherever the suite is collected.

This conftest (not the repository's root one) names them, so ``pytest conformance/``
in a checkout, ``rp-conformance`` and ``pytest --pyargs conformance`` from an installed
wheel all load them once, and nothing else is touched: a pytest session that does
not collect the suite never sees them.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["fixtures.plugin", "fixtures.roles", "fixtures.nats_server"]

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
