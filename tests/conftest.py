"""The project's own tests: the NATS server fixture, and the suite's role fixtures for the reference's interop tests.

``tests/test_interop_reference.py`` runs the reference against itself through the suite's adapters
(``impl_worker``/``impl_caller``), so the suite's plugins are loaded here too; the plugin stays passive
(no report, no certificate) because no test here cites a requirement. Tests of the plugin itself load
it again in their own pytester sessions (``-p fixtures.plugin``).
"""

from pathlib import Path

import pytest

pytest_plugins = ["fixtures.plugin", "fixtures.roles", "fixtures.nats_server"]


def pytest_configure(config: pytest.Config) -> None:
    # Here, not in pyproject.toml: the project's tests only (pyproject's markers are the suite's, as in suite.ini).
    config.addinivalue_line(
        "markers", "latency: the test gates on a latency limit; tox's loadtests env runs it, alone on the machine"
    )


# Where the latency-gated tests live: tox's loadtests env collects only this directory (importing every module of
# tests to run one test cost it 4-11 s alone on the machine), so a `latency` test anywhere else would run nowhere.
LATENCY_TESTS = Path(__file__).resolve().parent / "latency"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a `latency` test outside tests/latency: the unit env (which collects every module) fails on it."""
    astray = [
        item.nodeid for item in items if item.get_closest_marker("latency") and LATENCY_TESTS not in item.path.parents
    ]
    if astray:
        raise pytest.UsageError(
            f"latency-gated tests must live in {LATENCY_TESTS} (tox's loadtests env runs only it): {astray}"
        )


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The project's pytester, whose child pytest runs go without hypothesis's pytest plugin.

    Why: no sample test of a child run uses hypothesis, and that plugin's terminal summary imports all of
    hypothesis to say so (2 to 3 s of CPU per child run on the loaded 2-core machine: more than half of a child
    pytest's start and finish). ``conformance/conftest.py`` does the same for the suite's own runs.
    """
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest")
    return pytester
