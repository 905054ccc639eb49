"""Locust's distributed mode against one target: a master and two worker processes, judged by the gate.

Why: one Locust process drives at most one Python core of load; users load a worker harder with
Locust's own master + workers.  The target is put up once (``loadtests.target_process``), every
Locust worker calls it through ``--rp-discovery``, and the master, which calls nothing, judges
the merged stats with the same thresholds as a local run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from loadtests.check import main as check_main
from loadtests.target_process import TargetProcess

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 150.0
WORKERS = 2
# Seconds of load per distributed run: 4 workers' unary calls made 4,774 requests in 4 s at load 3 (1,170/s), so 2 s
# gives about 2,300, over ten times the profile's floor of 200 and enough for its p99; the gated run is in the
# loadtests env, alone on the machine, where each second is a second of CI's critical path.
RUN_SECONDS = 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def locust(arguments: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A Locust process with gevent's patches (the test session itself is not patched), in its own group."""
    env = {key: value for key, value in os.environ.items() if key != "LOCUST_SKIP_MONKEY_PATCH"}
    command = [sys.executable, "-m", "locust", "-f", "loadtests/", *arguments]
    with log.open("wb") as output:
        return subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def run_distributed(tmp_path: Path, discovery: str, extra: list[str]) -> tuple[int, str, list[str]]:
    """Master (headless, 4 users for ``RUN_SECONDS``, waits for both workers) + 2 workers; every process bounded,
    by PID."""
    port = free_port()
    out = tmp_path / "unary"
    master_args = [
        "--headless",
        "--only-summary",
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        "--expect-workers",
        str(WORKERS),
        "--expect-workers-max-wait",
        "60",
        "-u",
        "4",
        "-r",
        "4",
        "-t",
        f"{RUN_SECONDS}s",
        "UnaryUser",
        "--rp-discovery",
        discovery,
        "--json-file",
        str(out),
        "--rp-summary",
        f"{out}.verdict.json",
        *extra,
    ]
    worker_args = ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port), "--rp-discovery", discovery]
    with ExitStack() as cleanup:
        master = locust(master_args, tmp_path / "master.log")
        cleanup.callback(stop, master)
        for number in range(WORKERS):
            worker = locust(worker_args, tmp_path / f"worker{number}.log")
            cleanup.callback(stop, worker)
        try:
            code = master.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = -1
    worker_logs = [(tmp_path / f"worker{n}.log").read_text(errors="replace") for n in range(WORKERS)]
    return code, (tmp_path / "master.log").read_text(errors="replace"), worker_logs


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


# Not latency-gated (no load can meet the threshold), so it runs in the unit env beside the other tests, and the
# loadtests env, alone on the machine, waits only for the run whose p99 limit load could break.
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
