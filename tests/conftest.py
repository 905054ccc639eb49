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
        "markers", "latency: the test gates on a latency limit; tox's unit env runs it after the xdist part, alone"
    )
