"""Every known-bad implementation in the catalogue is rejected by the requirements it names.

The patches must still apply to today's ``reference_impl`` (exactly once each).  Then each entry runs
the suite with ``--req <its requirements> --planes <its planes>`` against the mutant in a child pytest that
collects only the suite's modules citing those requirements (``catalogue.requirement_index``: one collection of the
whole suite first), several at a time (``RP_POWER_JOBS``, default 8: the child runs mostly wait on the network), and its
JSON report must show those requirements failed.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fixtures.requirements import load_requirements
from tests.power import catalogue
from tests.power.catalogue import Entry, RunResult

ENTRIES = catalogue.load()
JOBS = int(os.environ.get("RP_POWER_JOBS", "8"))
# The first selected entry's set-up runs every selected entry (JOBS at a time): pytest-timeout's per-test
# default (180 s) is for one test, this bounds the whole catalogue on a loaded 2-core machine.
CATALOGUE_TIMEOUT_S = 40 * 60
REJECTION_TEST = "test_the_named_requirements_reject_the_entry"


def test_the_catalogue_is_broad_enough():
    requirements = load_requirements()
    assert len(ENTRIES) >= 40
    assert {e.role for e in ENTRIES} == set(catalogue.ROLES)
    assert {p for e in ENTRIES for p in e.planes} == set(catalogue.PLANES)
    unknown = {r for e in ENTRIES for r in e.requirements} - set(requirements)
    assert not unknown, f"entries name unknown requirements {unknown}"
    areas = {requirements[r].area for e in ENTRIES for r in e.requirements}
    missing = {r.area for r in requirements.values()} - areas - {"interoperability", "robustness"}
    assert not missing, f"no entry for the requirement areas {missing}"
    for entry in ENTRIES:
        levels = Counter(requirements[r].level for r in entry.requirements)
        if entry.catch == "MUST":
            assert levels["MUST"], f"{entry.id} declares a MUST-level catch but names only SHOULDs"
        roles = {role for r in entry.requirements for role in requirements[r].roles}
        assert entry.role in roles, f"{entry.id}: its requirements do not apply to the {entry.role} role"


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.file], ids=lambda e: e.id)
def test_the_patch_applies_to_todays_reference(entry: Entry):
    assert catalogue.patched_source(entry) != (catalogue.REPOSITORY / "reference_impl" / str(entry.file)).read_text()


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest) -> Iterator[dict[str, RunResult]]:
    """Runs only the entries whose rejection test was selected (``-k``), so one entry can be checked alone."""
    selected = {
        item.callspec.params["entry"].id
        for item in request.session.items
        if getattr(item, "originalname", None) == REJECTION_TEST and hasattr(item, "callspec")
    }
    with tempfile.TemporaryDirectory(prefix="rp-power-") as scratch:
        # Each run collects only the modules citing its requirements (the whole suite once, here, to know which).
        index = catalogue.requirement_index(Path(scratch)) if selected else None

        def run_one(entry: Entry) -> RunResult:
            directory = Path(scratch) / entry.id
            directory.mkdir()
            return catalogue.run(entry, directory, requirements=entry.requirements, index=index)

        with ThreadPoolExecutor(max_workers=JOBS) as pool:
            yield {result.entry.id: result for result in pool.map(run_one, [e for e in ENTRIES if e.id in selected])}


@pytest.mark.timeout(CATALOGUE_TIMEOUT_S)
@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_the_named_requirements_reject_the_entry(entry: Entry, results: dict[str, RunResult]):
    result = results[entry.id]
    problem = catalogue.rejected_as_declared(result, full_suite=False)
    assert problem is None, f"{entry.id} ({entry.description}): {problem}"
