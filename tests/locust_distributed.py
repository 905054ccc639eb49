"""Locust's distributed mode against one target, for the tests: a master and two worker processes, every one bounded.

Shared by ``tests/test_loadtests_distributed.py`` (the gate fails a run that misses its threshold) and
``tests/latency/test_distributed_latency.py`` (the latency-gated run, in the loadtests env alone on the machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

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
