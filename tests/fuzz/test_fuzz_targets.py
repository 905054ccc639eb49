"""Every fuzz target under hypothesis: garbage, mutated seeds and near-valid traffic.

The targets carry the properties (see ``targets.py``); this runs them on a bounded
number of examples so that CI stays fast.  Longer runs: ``python -m tests.fuzz.atheris_main``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.checks import hang_guard
from tests.fuzz.corpus import SEEDS
from tests.fuzz.strategies import fuzz_inputs
from tests.fuzz.targets import TARGETS

# A guard against hangs, far above the milliseconds an input takes.
HANG_SECONDS = 10.0


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_pass_every_check(name: str) -> None:
    seeds = SEEDS[name]()
    assert seeds
    for seed in seeds:
        with hang_guard(HANG_SECONDS):
            TARGETS[name](seed)


@pytest.mark.parametrize("name", sorted(TARGETS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_target_holds_on_fuzzed_input(name: str, data: st.DataObject) -> None:
    raw = data.draw(fuzz_inputs(name), label="raw input")
    with hang_guard(HANG_SECONDS):
        TARGETS[name](raw)
