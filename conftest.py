"""Root pytest configuration: the suite's plugins, for conformance/ and tests/ alike.

``fixtures.plugin`` stays passive unless requirement-marked tests are collected.
"""

pytest_plugins = ["fixtures.plugin", "fixtures.roles", "fixtures.nats_server", "fixtures.gc_guard"]
