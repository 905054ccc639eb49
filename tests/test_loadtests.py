"""The load tests' own machinery: sub-millisecond stats, items rows, the threshold gate, the bridge, a real run."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

# Importing locust monkey-patches the whole process with gevent unless told not to; the rest of the test
# session (asyncio, real sockets) must not be patched.  The Locust runs below are separate processes.
os.environ.setdefault("LOCUST_SKIP_MONKEY_PATCH", "1")
import gevent
import locust.stats as locust_stats
import pytest

from loadtests import latency_resolution
from loadtests.asyncio_bridge import AsyncioBridge
from loadtests.check import main as check_main
from loadtests.gate import RowStats, evaluate
from loadtests.locust_reporting import log_items
from loadtests.profiles import ITEMS, PROFILES
from loadtests.stats_rows import percentile_of_histogram, rows_from_csv, rows_from_json
from reference_impl.planes import PLANES

SKIP_PATCH = "LOCUST_SKIP_MONKEY_PATCH"  # left set: a child process that needs gevent's patches drops it
PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 120.0

latency_resolution.install()


def test_importing_locust_here_did_not_monkey_patch_the_test_session() -> None:
    import gevent.monkey

    assert not gevent.monkey.is_module_patched("socket")


# --- sub-millisecond resolution ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "bucket"),
    [(0.0, 0), (0.0123, 0.012), (0.1234, 0.123), (0.4567, 0.457), (1.234, 1.23), (12.34, 12.3), (3432, 3430)],
)
def test_buckets_keep_three_significant_figures(raw: float, bucket: float) -> None:
    assert latency_resolution.bucket_ms(raw) == bucket


def test_patched_locust_keeps_submillisecond_percentiles() -> None:
    stats = locust_stats.RequestStats(use_response_times_cache=False)
    for value in [0.21] * 60 + [0.35] * 39 + [0.87]:
        stats.log_request("tcp", "unary/echo", value, 64)  # type: ignore[arg-type]
    entry = stats.get("unary/echo", "tcp")
    assert entry.get_response_time_percentile(0.5) == 0.21
    assert entry.get_response_time_percentile(0.98) == 0.35
    assert entry.get_response_time_percentile(1.0) == 0.87
    assert entry.median_response_time == 0.21

    class Environment:
        pass

    environment = Environment()
    environment.stats = stats  # type: ignore[attr-defined]
    csv_writer = locust_stats.StatsCSV(environment, [0.5, 0.98])  # type: ignore[arg-type]
    assert csv_writer._percentile_fields(entry) == [0.21, 0.35]


def test_verify_fails_loudly_when_locust_rounds_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locust_stats, "bucket_response_time", lambda response_time: round(response_time))
    with pytest.raises(latency_resolution.LocustInternalsChanged, match="bucketing"):
        latency_resolution.verify()


def test_items_row_counts_every_item_in_one_step() -> None:
    stats = locust_stats.RequestStats(use_response_times_cache=False)
    log_items(stats, "stream/stream-1000", 1000, 0.025)
    log_items(stats, "stream/stream-1000", 1000, 0.035)
    entry = stats.get("stream/stream-1000", ITEMS)
    assert entry.num_requests == 2000
    assert sum(entry.num_reqs_per_sec.values()) == 2000
    assert entry.response_times == {0.025: 1000, 0.035: 1000}
    assert entry.avg_response_time == pytest.approx(0.030)
    assert stats.total.num_requests == 0  # items never count as requests


# --- the threshold gate and the checker ----------------------------------------------------------------

CSV_HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
    "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)


def write_csv(path: Path, requests: int, failures: int, p99: float) -> Path:
    rows = [
        CSV_HEADER,
        f"tcp,unary/echo,{requests},{failures},0.3,0.31,0.2,9.0,64,2000.0,0.0,0.3,0.3,0.3,0.3,0.4,0.5,0.6,{p99},1,2,9",
        f"items,unary/echo,{requests},0,0.3,0.31,0.2,9.0,0,2000.0,0.0,0.3,0.3,0.3,0.3,0.4,0.5,0.6,0.7,1,2,9",
        f",Aggregated,{requests},{failures},0.3,0.31,0.2,9.0,64,2000.0,0.0,0.3,0.3,0.3,0.3,0.4,0.5,0.6,{p99},1,2,9",
    ]
    file = path / "run_stats.csv"
    file.write_text("\n".join(rows) + "\n")
    return file


def write_json(path: Path, histogram: dict[str, int], failures: int) -> Path:
    requests = sum(histogram.values())
    entries = [
        {
            "name": "unary/echo",
            "method": "tcp",
            "num_requests": requests,
            "num_none_requests": 0,
            "num_failures": failures,
            "response_times": histogram,
            "start_time": 1000.0,
            "last_request_timestamp": 1010.0,
        },
        {
            "name": "unary/echo",
            "method": ITEMS,
            "num_requests": requests * 3,
            "num_none_requests": 0,
            "num_failures": 0,
            "response_times": {"0.1": requests * 3},
            "start_time": 1000.0,
            "last_request_timestamp": 1010.0,
        },
    ]
    file = path / "run.json"
    file.write_text(json.dumps(entries))
    return file


def test_checker_passes_and_fails_on_csv(tmp_path: Path) -> None:
    limit = PROFILES["unary"].thresholds.p99_ms
    assert check_main(["--csv", str(write_csv(tmp_path, 5000, 0, limit / 2)).removesuffix("_stats.csv")]) == 0
    assert check_main(["--csv", str(write_csv(tmp_path, 5000, 0, limit * 2))]) == 1
    assert check_main(["--csv", str(write_csv(tmp_path, 5000, 1, limit / 2))]) == 1  # no failure allowed
    assert check_main(["--csv", str(write_csv(tmp_path, 10, 0, limit / 2))]) == 1  # too few requests
    rows = rows_from_csv(write_csv(tmp_path, 5000, 0, 0.25))
    assert [r.p99_ms for r in rows if r.kind == "tcp"] == [0.25]


def test_checker_passes_and_fails_on_json(tmp_path: Path) -> None:
    fast = {"0.21": 900, "0.35": 99, "0.87": 1}
    assert check_main(["--json", str(write_json(tmp_path, fast, 0)), "--profile", "unary"]) == 0
    slow = {"0.21": 900, "120.0": 100}
    assert check_main(["--json", str(write_json(tmp_path, slow, 0))]) == 1
    assert check_main(["--json", str(write_json(tmp_path, fast, 0)), "--p99-ms", "0.3"]) == 1
    assert check_main(["--json", str(write_json(tmp_path, fast, 0)), "--profile", "soak"]) == 1  # nothing ran
    rows = rows_from_json(write_json(tmp_path, fast, 0))
    request_row = next(r for r in rows if r.kind == "tcp")
    assert request_row.p50_ms == 0.21 and request_row.p99_ms == 0.35
    assert request_row.per_second == pytest.approx(100.0)


def test_gate_reads_items_and_ignores_them_for_thresholds() -> None:
    rows = [
        RowStats("tcp", "stream/stream-1000", 100, 0, 20.0, 40.0, 10.0),
        RowStats(ITEMS, "stream/stream-1000", 100_000, 0, 0.02, 10_000.0, 10_000.0),
    ]
    verdict = evaluate("stream", rows)
    assert verdict.passed, verdict.problems
    assert verdict.items_per_s == 10_000.0 and verdict.requests == 100


def test_percentile_of_histogram_matches_locust() -> None:
    histogram = {0.1: 50, 0.2: 49, 5.0: 1}
    for percent in (0.5, 0.9, 0.99, 1.0):
        assert percentile_of_histogram(histogram, 100, percent) == locust_stats.calculate_response_time_percentile(
            histogram,  # type: ignore[arg-type]
            100,
            percent,
        )


# --- the gevent/asyncio bridge -------------------------------------------------------------------------


def test_bridge_runs_coroutines_from_greenlets_and_cancels_killed_ones() -> None:
    bridge = AsyncioBridge()
    bridge.start()
    cancelled: list[bool] = []
    try:

        async def double(value: int) -> int:
            await asyncio.sleep(0.01)
            return value * 2

        async def fail() -> None:
            raise ValueError("boom")

        async def forever() -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        results = [gevent.spawn(bridge.run, double(i)) for i in range(20)]
        gevent.joinall(results, timeout=10)
        assert [g.value for g in results] == [i * 2 for i in range(20)]
        with pytest.raises(ValueError, match="boom"):
            bridge.run(fail(), timeout=10)
        waiting = gevent.spawn(bridge.run, forever())
        gevent.sleep(0.05)
        waiting.kill(block=True, timeout=5)
        gevent.sleep(0.1)
        assert cancelled == [True]
    finally:
        bridge.stop(timeout=10)


# --- a real headless Locust run ------------------------------------------------------------------------


def run_locust(arguments: list[str], tmp_path: Path, *, cwd: Path = PROJECT_ROOT) -> tuple[int, str]:
    """``locust -f loadtests/ --headless ...`` (from the repository root by default), bounded, stopped by PID."""
    locustfiles = os.path.relpath(PROJECT_ROOT / "loadtests", cwd) + "/"
    command = [sys.executable, "-m", "locust", "-f", locustfiles, "--headless", "--only-summary", *arguments]
    log = tmp_path / "locust.log"
    with log.open("wb") as output:
        env = {key: value for key, value in os.environ.items() if key != SKIP_PATCH}
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            pytest.fail(f"locust did not finish within {RUN_TIMEOUT}s:\n{log.read_text()[-3000:]}")
    return code, log.read_text(errors="replace")


# Limits no machine misses, however loaded: a p99 of a minute, one request (Locust's options, then the same for
# `python -m loadtests.check`).
LOAD_FREE_LIMITS = ("--rp-p99-ms", "60000", "--rp-min-requests", "1")
LOAD_FREE_CHECK = ("--p99-ms", "60000", "--min-requests", "1")
# How long the headless runs below load the worker: they check what a run writes and how it is judged, which needs
# some requests, not a measurement (4 users made 396 to 633 in 1 s at load 2.5, by plane); each second is a Locust
# process and a worker busy on CI's shared cores.
HEADLESS_RUN = "1s"


def nats_url_in(log: str) -> str | None:
    match = re.search(r"serving \S+ on \S+ \(adapter pid \d+, nats (\S+)\)", log)
    assert match, f"no 'serving' line in the Locust log:\n{log[-3000:]}"
    return None if match.group(1) == "None" else match.group(1)


def accepts_connections(url: str) -> bool:
    host, _, port = url.removeprefix("nats://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


# The unary profile's own limits (p99, request count) against the reference on every plane are the smoke's gate
# (`python -m loadtests.smoke`, tox's loadtests env, alone on the machine); this test checks what a headless run
# writes and how it is judged, under limits no load misses, so it runs beside other tests.  It runs from a
# directory outside the repository: ``-f`` imports every file of the directory, so each must import from any
# working directory (the run then finds its profiles and judges them).
@pytest.mark.parametrize("load_plane", PLANES)
def test_headless_unary_run_against_reference_passes(load_plane: str, tmp_path: Path) -> None:
    out = tmp_path / "unary"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    arguments = ["-u", "4", "-r", "4", "-t", HEADLESS_RUN, "UnaryUser", "--rp-plane", load_plane]
    arguments += ["--json-file", str(out)]
    command = [*arguments, "--rp-summary", f"{out}.verdict.json", *LOAD_FREE_LIMITS]
    code, log = run_locust(command, tmp_path, cwd=outside)
    assert code == 0, log[-3000:]
    assert "[PASS] unary" in log
    entries: list[dict[str, Any]] = json.loads(Path(f"{out}.json").read_text())
    kinds = {entry["method"] for entry in entries}
    assert {load_plane, ITEMS} <= kinds
    request_entry = next(e for e in entries if e["method"] == load_plane)
    assert request_entry["num_failures"] == 0
    assert any(float(bucket) % 1 for bucket in request_entry["response_times"]), "times were rounded to whole ms"
    verdict = json.loads(Path(f"{out}.verdict.json").read_text())["verdicts"][0]
    assert verdict["profile"] == "unary" and verdict["passed"]
    assert check_main(["--json", f"{out}.json", "--profile", "unary", *LOAD_FREE_CHECK]) == 0
    nats_url = nats_url_in(log)
    if load_plane == "nats":  # a real nats-server was started for the run, and stopped with it
        assert nats_url is not None and not accepts_connections(nats_url)


def test_headless_run_that_misses_its_threshold_exits_1(tmp_path: Path) -> None:
    code, log = run_locust(["-u", "2", "-r", "2", "-t", HEADLESS_RUN, "UnaryUser", "--rp-p99-ms", "0.001"], tmp_path)
    assert code == 1, log[-3000:]
    assert "[FAIL] unary" in log
