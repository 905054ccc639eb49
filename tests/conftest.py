"""The project's own tests: the NATS server fixture (a real ``nats-server`` for the plane tests).

The conformance suite's plugins are not loaded here; tests of the plugin load it themselves
(pytester, ``-p fixtures.plugin``).
"""

pytest_plugins = ["fixtures.nats_server"]
