"""Locust's distributed mode against one target: a master and two worker processes, judged by the gate.

Why: one Locust process drives at most one Python core of load; users load a worker harder with
Locust's own master + workers.  The target is put up once (``loadtests.target_process``), every
Locust worker calls it through ``--rp-discovery``, and the master, which calls nothing, judges
the merged stats with the same thresholds as a local run.  The run gated on latency is
``tests/latency/test_distributed_latency.py``; the run here, against a threshold nobody can meet, is not.
"""

from __future__ import annotations

from pathlib import Path

from loadtests.target_process import TargetProcess
from tests.locust_distributed import run_distributed


# Not latency-gated (no load can meet the threshold), so it runs in the unit env beside the other tests, and the
# loadtests env, alone on the machine, waits only for the run whose p99 limit load could break (tests/latency).
def test_the_masters_gate_fails_a_distributed_run_that_misses_its_threshold(tmp_path: Path) -> None:
    """The same distributed run, with a threshold nobody can meet: the master's gate fails it."""
    target = TargetProcess(["--impl", "reference", "--plane", "tcp"], log_path=str(tmp_path / "target.log"))
    info = target.start()
    try:
        code, master_log, _ = run_distributed(tmp_path, info["discovery_dir"], ["--rp-p99-ms", "0.001"])
        assert code == 1, master_log[-3000:]
        assert "[FAIL] unary" in master_log
    finally:
        target.stop()
