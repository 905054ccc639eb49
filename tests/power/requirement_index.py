"""Which of the suite's modules cite each requirement: a pytest plugin for one collection of the suite.

Why: each catalogue entry's child run selects its requirements with ``--req``, and collecting every module of the
suite to keep a few cost each of the 75 runs about 0.25 CPU-s more than collecting the modules that hold those
tests. ``catalogue.requirement_index`` runs ``pytest conformance --collect-only -p tests.power.requirement_index``
once; this plugin writes ``{requirement: [module path, ...]}`` (paths relative to the repository, as collected) to
the file named by ``RP_POWER_INDEX_OUT``. The ``--req`` selection inside each module is the plugin's, unchanged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fixtures.plugin import item_requirements

INDEX_OUT = "RP_POWER_INDEX_OUT"


def pytest_collection_finish(session: pytest.Session) -> None:
    index: dict[str, set[str]] = {}
    for item in session.items:
        module = item.nodeid.split("::", 1)[0]
        for requirement in item_requirements(item):
            index.setdefault(requirement, set()).add(module)
    Path(os.environ[INDEX_OUT]).write_text(json.dumps({r: sorted(m) for r, m in sorted(index.items())}, indent=1))
