"""The suite's garbage-collector guard: paused while a report is built, and what collection built frozen."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fixtures import gc_guard


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def _full_collection_s() -> float:
    started = time.perf_counter()
    gc.collect()
    return time.perf_counter() - started


@pytest.mark.usefixtures("unfrozen")
def test_what_collection_built_is_frozen_and_no_longer_walked() -> None:
    held = [[object()] for _ in range(300_000)]  # a heap as large as a collected suite's, alive all session
    walked = min(_full_collection_s() for _ in range(3))
    gc_guard.pytest_collection_finish(session=None)  # type: ignore[arg-type]  # the hook reads nothing of it
    assert gc.get_freeze_count() >= len(held)
    assert min(_full_collection_s() for _ in range(3)) < walked / 2, "a full collection still walks the frozen heap"


def test_no_collection_runs_while_a_report_is_built() -> None:
    seen: list[bool] = []
    hook: Any = gc_guard.pytest_runtest_makereport(item=None, call=None)  # type: ignore[arg-type]
    next(hook)
    seen.append(gc.isenabled())
    with pytest.raises(StopIteration):
        hook.send(None)
    assert seen == [False] and gc.isenabled()
