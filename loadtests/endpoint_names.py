"""Where the load-test worker serves: its namespace, component and endpoints.

Why a module of its own: every Locust process needs these names, and ``loadtests.targets``, which starts a worker,
imports the suite's adapter launcher and NATS fixture (pytest among them, about 0.15 s per process); a Locust
process calling a worker already serving (``--rp-discovery``: every smoke run, every distributed worker) starts none.
"""

NAMESPACE = "loadtest"
COMPONENT = "backend"
ENDPOINTS = ("echo", "stream", "sink", "slow")
