"""The project's tests that gate on a latency limit (marker ``latency``): only here; tox's loadtests env runs them."""
