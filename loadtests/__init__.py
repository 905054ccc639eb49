"""Locust load profiles, their thresholds, a smoke runner and a benchmark for the request plane.

See ``loadtests/README.md``.  Modules here are imported by path when Locust
is given the directory (``locust -f loadtests/``), so none of them does
anything at import time except ``locustfile.py``.
"""
