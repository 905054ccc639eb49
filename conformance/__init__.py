"""The request-plane conformance suite, as an installable package.

Its data travel with it as package data, found next to this file from a checkout
and from an installed wheel alike: the normative requirements (``requirements.toml``,
rendered as ``REQUIREMENTS.md``), the known divergences per implementation
(``expected_failures/``) and the pytest settings the suite needs (``suite.ini``).
``rp-conformance`` (:mod:`conformance.cli`) runs it from any directory.
"""

from __future__ import annotations

from pathlib import Path

SUITE_DIR = Path(__file__).resolve().parent
# The suite's pytest settings (event-loop scope, markers, per-test timeout) for runs outside this
# repository, whose pyproject.toml gives the same ones here (tests/test_suite_package.py keeps them in step).
PYTEST_SETTINGS = SUITE_DIR / "suite.ini"
