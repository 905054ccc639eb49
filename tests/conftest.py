"""The project's own tests: the NATS server fixture, and the suite's role fixtures for the reference's interop tests.

``tests/test_interop_reference.py`` runs the reference against itself through the suite's adapters
(``impl_worker``/``impl_caller``), so the suite's plugins are loaded here too; the plugin stays passive
(no report, no certificate) because no test here cites a requirement. Tests of the plugin itself load
it again in their own pytester sessions (``-p fixtures.plugin``).
"""

import pytest

pytest_plugins = ["fixtures.plugin", "fixtures.roles", "fixtures.nats_server"]


def pytest_configure(config: pytest.Config) -> None:
    # Here, not in pyproject.toml: the project's tests only (pyproject's markers are the suite's, as in suite.ini).
    config.addinivalue_line(
        "markers", "latency: the test gates on a latency limit; tox's loadtests env runs it, alone on the machine"
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
