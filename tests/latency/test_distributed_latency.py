"""Locust's distributed mode, judged against the unary profile's thresholds: a master and two workers, one target.

Why its own place: the run gates on a p99 limit, so it runs in tox's loadtests env, alone on the machine; that env
collects only this directory (``tests/conftest.py`` refuses a ``latency`` test anywhere else), not every module of
``tests``. Its twin with an unmeetable threshold is in ``tests/test_loadtests_distributed.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtests.check import main as check_main
from loadtests.target_process import TargetProcess
from tests.locust_distributed import WORKERS, run_distributed


@pytest.mark.latency  # the unary profile's p99 limit: run alone, not beside another xdist worker
def test_master_and_two_workers_load_one_target_and_are_judged(tmp_path: Path) -> None:
    target = TargetProcess(["--impl", "reference", "--plane", "tcp"], log_path=str(tmp_path / "target.log"))
    info = target.start()
    try:
        code, master_log, worker_logs = run_distributed(tmp_path, info["discovery_dir"], [])
        assert code == 0, master_log[-3000:] + "".join(log[-1500:] for log in worker_logs)
        assert "[PASS] unary" in master_log
        assert f"{WORKERS} workers connected" in master_log and f"to {WORKERS} ready workers" in master_log
        verdict: dict[str, Any] = json.loads((tmp_path / "unary.verdict.json").read_text())["verdicts"][0]
        assert verdict["profile"] == "unary" and verdict["passed"] and verdict["requests"] >= 200
        # The master only merges: every request in its JSON was made by the two worker processes.
        assert check_main(["--json", str(tmp_path / "unary.json"), "--profile", "unary"]) == 0
        for log in worker_logs:
            assert "Traceback" not in log, log[-3000:]
    finally:
        target.stop()
