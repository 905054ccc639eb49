"""The benchmark's tooling: the lean wire-level generator, the optional uvloop event loop, the spread rule.

The generator and the event loop are checked against a real reference worker (its adapter, started as
the load tests start it); the benchmark's statistics on per-round figures; and one short benchmark run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtests import benchmark
from loadtests.target_process import TargetProcess
from loadtests.targets import COMPONENT, NAMESPACE
from loadtests.wire_load import Result, WireLoad, Workload, workload_named
from reference_impl.routing import EndpointId
from reference_impl.transport import event_loop

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Measured seconds per scenario and round of the short benchmark run below: it checks the run's shape (six rounds,
# figures, spreads, load averages, no errors), which a quarter second of calls gives as well as half of one
# (hundreds of echos and streams of 20 items per window), and it runs in the unit env beside other CPU-bound tests.
SHORT_RUN_SECONDS = "0.25"


@pytest.fixture(scope="module")
def reference_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    log = tmp_path_factory.mktemp("target") / "target.log"
    target = TargetProcess(["--impl", "reference", "--plane", "tcp"], log_path=str(log))
    info = target.start()
    try:
        yield info
    finally:
        target.stop()


def run_wire_load(
    discovery: str, workload: Workload, *, concurrency: int = 8, seconds: float = 1.0, nats_url: str | None = None
) -> Result:
    """The generator in a thread of its own (it blocks in epoll), bounded by its own window."""
    endpoint = EndpointId(NAMESPACE, COMPONENT, workload.endpoint)
    load = WireLoad(discovery, endpoint, workload, concurrency, nats_url=nats_url)
    now = time.monotonic()
    results: list[Result] = []
    thread = threading.Thread(target=lambda: results.append(load.run(now + 0.2, now + 0.2 + seconds)))
    thread.start()
    thread.join(timeout=seconds + 30)
    load.close()
    assert results, "the wire generator did not finish its window"
    return results[0]


def test_wire_generator_checks_every_echo(reference_target: dict[str, Any]) -> None:
    result = run_wire_load(reference_target["discovery_dir"], workload_named("unary"))
    assert result.errors == 0, result.first_error
    assert result.requests >= 20 and result.items == result.requests
    assert len(result.latencies_ms) == result.requests and min(result.latencies_ms) > 0
    assert 0 < result.cpu_seconds < 5


def test_wire_generator_checks_every_stream_item(reference_target: dict[str, Any]) -> None:
    result = run_wire_load(reference_target["discovery_dir"], workload_named("stream", items=200, item_size=16))
    assert result.errors == 0, result.first_error
    assert result.requests >= 2 and result.items >= 200 * result.requests


def test_wire_generator_counts_a_wrong_answer_as_an_error(reference_target: dict[str, Any]) -> None:
    """The worker streams 5 items; a generator told to expect 6 must fail every call, not count it."""
    expecting_more = Workload("stream", {"count": 5, "size": 8}, items=6, item_size=8)
    result = run_wire_load(reference_target["discovery_dir"], expecting_more, seconds=0.5)
    assert result.requests == 0 and result.errors > 0
    assert result.first_error is not None and "complete_final after 5 items, expected 6" in result.first_error


def test_wire_generator_over_nats(tmp_path: Path) -> None:
    """Requests published to a real nats-server (HPUB, replies on our inbox), answers over the call-home."""
    target = TargetProcess(["--impl", "reference", "--plane", "nats"], log_path=str(tmp_path / "target.log"))
    info = target.start()
    try:
        result = run_wire_load(info["discovery_dir"], workload_named("unary"), nats_url=info["nats_url"])
        assert result.errors == 0 and result.requests >= 20, result.first_error
        stream = run_wire_load(info["discovery_dir"], workload_named("stream", items=50), nats_url=info["nats_url"])
        assert stream.errors == 0 and stream.requests >= 2, stream.first_error
    finally:
        target.stop()


def test_wire_generator_needs_a_worker_in_discovery(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no instance"):
        WireLoad(str(tmp_path), EndpointId(NAMESPACE, COMPONENT, "echo"), workload_named("unary"), 1)


# --- the optional uvloop event loop -------------------------------------------------------------------


def test_event_loop_setting_is_validated() -> None:
    assert event_loop.configured_loop({}) == "asyncio"
    assert event_loop.configured_loop({"RP_EVENT_LOOP": " UVLOOP "}) == "uvloop"
    with pytest.raises(event_loop.EventLoopError, match="expected one of asyncio, uvloop"):
        event_loop.configured_loop({"RP_EVENT_LOOP": "trio"})


@pytest.mark.parametrize("name", event_loop.EVENT_LOOPS)
def test_run_uses_the_configured_loop(name: str) -> None:
    if name == "uvloop":
        pytest.importorskip("uvloop")
    code = (
        "from reference_impl.transport import event_loop\n"
        "async def which():\n    return event_loop.running_loop_name()\n"
        f"print(event_loop.run(which(), {{'RP_EVENT_LOOP': {name!r}}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == name, out.stderr


def test_reference_worker_serves_on_uvloop(tmp_path: Path) -> None:
    """The whole reference adapter on uvloop: uvloop's extension is loaded in it and every call is answered."""
    pytest.importorskip("uvloop")
    target = TargetProcess(
        ["--impl", "reference", "--plane", "tcp", "--env", "RP_EVENT_LOOP=uvloop"], log_path=str(tmp_path / "t.log")
    )
    info = target.start()
    try:
        maps = Path(f"/proc/{info['adapter_pid']}/maps").read_text()
        assert "uvloop" in maps, "the adapter does not run uvloop"
        for workload in (workload_named("unary"), workload_named("stream", items=100, item_size=16)):
            result = run_wire_load(info["discovery_dir"], workload)
            assert result.errors == 0 and result.requests > 0, result.first_error
    finally:
        target.stop()


# --- the benchmark's statistics -------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, Any]:
    return {"requests_per_s": statistics.median(values), "spread": {"requests_per_s": benchmark.spread_of(values)}}


def test_ratio_is_refused_when_rounds_disagree_more_than_the_workers_differ() -> None:
    steady_a = summary([1000, 1010, 990, 1005, 995, 1000])
    steady_b = summary([800, 805, 795, 810, 790, 800])
    assert benchmark.compare(steady_a, steady_b, "requests_per_s") == "1.25"
    noisy_a = summary([1000, 1400, 700, 1300, 800, 1000])
    assert benchmark.compare(noisy_a, steady_b, "requests_per_s") == "noise"


def test_benchmark_needs_six_rounds() -> None:
    with pytest.raises(SystemExit):
        benchmark.main(["--rounds", "3"])


def test_short_benchmark_run_with_the_wire_generator(tmp_path: Path) -> None:
    """Six alternating rounds against the reference worker alone: figures, spreads, load averages, no errors."""
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        "-m",
        "loadtests.benchmark",
        "--impls",
        "reference",
        "--seconds",
        SHORT_RUN_SECONDS,
        "--warmup",
        "0.1",
        "--stream-items",
        "20",
        "--codec-frames",
        "20000",
        "--json",
        str(out),
    ]
    run = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["generators"] == {"tcp": "wire"}
    assert len(report["round_load_averages"]) == 6 and len(report["load_average_after"]) == 3
    for scenario in ("tcp unary", "tcp stream"):
        figures = report["results"][scenario]["reference"]
        # items/s, not requests/s: a stream may span a short window
        assert figures["errors"] == 0 and figures["items_per_s"] > 0, run.stdout[-3000:]
        assert len(figures["rounds"]["requests_per_s"]) == 6
        assert figures["spread"]["requests_per_s"] >= 0
    assert "gen CPU %" in run.stdout and "load average before" in run.stdout
