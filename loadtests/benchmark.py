"""Benchmark: the reference worker against Dynamo 1.6.1's, same load generator, one run, on loopback.

Not a test (nothing here passes or fails); run it and read the figures::

    python -m loadtests.benchmark                      # TCP, ~2 min on 2 cores
    python -m loadtests.benchmark --planes tcp,nats --json out/bench.json

Both workers are started through their adapters (their own DYN_FILE_KV,
DYN_TCP_RPC_HOST=127.0.0.1, DYN_EVENT_PLANE=zmq) and driven in turn by the
coroutines the Locust profiles use (``loadtests.calls`` on the reference
``Caller``) in a closed loop at fixed concurrency.  Measurements are short
and alternate between the workers (the order flips every round), so a
burst of other work on a shared machine hits both alike; figures are
medians over rounds.

On a machine with 2+ cores the generator is pinned to core 0 and the workers
to the other cores, so neither steals the other's CPU; the workers' CPU time
per request is read from /proc (Dynamo's figure includes its runtime's idle
polling threads).  The codec section times ``two_part.encode`` and
``TwoPartDecoder`` on small item frames.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtests import codec_bench
from loadtests.cached_discovery import CachedDiscovery
from loadtests.calls import CallOutcome, LoadCalls
from loadtests.targets import COMPONENT, NAMESPACE, ServedTarget, TargetOptions, serve_target
from reference_impl.caller import Caller, CallerConfig

UNARY_TEXT = "x" * 64
GENERATOR_CORE = 0


@dataclass
class Measurement:
    requests: int
    errors: int
    seconds: float
    requests_per_s: float
    items_per_s: float
    p50_ms: float
    p99_ms: float
    worker_cpu_us_per_request: float
    worker_cpu_percent: float
    generator_cpu_percent: float
    first_error: str | None = None


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in ("ai-dynamo-runtime", "locust"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": versions,
    }


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(pid: int, cores: set[int]) -> None:
    """Pin a process and all its threads (threads started later inherit it)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cores)
        except (ProcessLookupError, PermissionError):
            pass


def renice(pid: int, niceness: int) -> None:
    """Set the niceness of every thread of ``pid`` (Linux applies it per thread)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.setpriority(os.PRIO_PROCESS, int(task), niceness)
        except (ProcessLookupError, PermissionError):
            pass


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


async def closed_loop(make_call: Any, concurrency: int, seconds: float) -> tuple[list[CallOutcome], float]:
    """``concurrency`` callers, each starting its next call as soon as one ends, for ``seconds``."""
    outcomes: list[CallOutcome] = []
    deadline = time.monotonic() + seconds

    async def one_caller() -> None:
        while time.monotonic() < deadline:
            outcomes.append(await make_call())

    started = time.monotonic()
    await asyncio.gather(*(one_caller() for _ in range(concurrency)))
    return outcomes, time.monotonic() - started


async def measure(make_call: Any, concurrency: int, seconds: float, warmup: float, worker_pid: int) -> Measurement:
    await closed_loop(make_call, concurrency, warmup)
    worker_cpu = process_cpu_seconds(worker_pid)
    generator_cpu = time.process_time()
    outcomes, elapsed = await closed_loop(make_call, concurrency, seconds)
    worker_cpu = process_cpu_seconds(worker_pid) - worker_cpu
    generator_cpu = time.process_time() - generator_cpu
    good = [o for o in outcomes if o.error is None]
    errors = [o for o in outcomes if o.error is not None]
    latencies = sorted(o.latency_ms for o in good)
    return Measurement(
        requests=len(good),
        errors=len(errors),
        seconds=elapsed,
        requests_per_s=len(good) / elapsed,
        items_per_s=sum(o.items for o in good) / elapsed,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        worker_cpu_us_per_request=1e6 * worker_cpu / max(1, len(outcomes)),
        worker_cpu_percent=100 * worker_cpu / elapsed,
        generator_cpu_percent=100 * generator_cpu / elapsed,
        first_error=repr(errors[0].error) if errors else None,
    )


def median_of(measurements: list[Measurement]) -> Measurement:
    fields = asdict(measurements[0])
    merged: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            merged[name] = statistics.median(getattr(m, name) for m in measurements)
        else:
            merged[name] = next((getattr(m, name) for m in measurements if getattr(m, name)), None)
    merged["requests"] = int(merged["requests"])
    merged["errors"] = sum(m.errors for m in measurements)
    return Measurement(**merged)


async def open_calls(target: ServedTarget) -> LoadCalls:
    config = CallerConfig(nats_url=target.nats_url) if target.nats_url else CallerConfig()
    caller = Caller(CachedDiscovery(target.discovery_dir), config)
    await caller.start()
    await caller.wait_for_instances(target.endpoint("echo"), timeout=30)
    return LoadCalls(caller, NAMESPACE, COMPONENT, plane=target.plane)


def split(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    impls, planes = split(args.impls), split(args.planes)
    report: dict[str, Any] = {
        "machine": machine_info(),
        "settings": vars(args).copy(),
        "load_average_before": os.getloadavg(),  # other work on the machine skews every figure
    }
    print(f"machine: {json.dumps(report['machine'])}", flush=True)
    codec = codec_bench.measure()
    report["codec"] = codec.to_json()
    print(
        f"codec ({codec.frame_bytes}-byte item frames): encode {codec.encode_per_s:,.0f}/s, "
        f"decode {codec.decode_per_s:,.0f}/s, encode+decode {codec.round_trip_per_s:,.0f}/s "
        f"(target > {codec_bench.TARGET_FRAMES_PER_S:,}/s: "
        f"{'met' if codec.round_trip_per_s > codec_bench.TARGET_FRAMES_PER_S else 'MISSED'})",
        flush=True,
    )
    cores = os.sched_getaffinity(0)
    pinned = args.pin and len(cores) >= 2
    worker_cores = cores - {GENERATOR_CORE} if pinned else cores
    report["pinning"] = (
        {"generator": [GENERATOR_CORE], "workers": sorted(worker_cores)}
        if pinned
        else ("none (fewer than 2 cores)" if args.pin else "none (--no-pin)")
    )
    workloads = {
        "unary": (args.concurrency, lambda c: c.echo("bench/echo", UNARY_TEXT)),
        "stream": (
            args.stream_concurrency,
            lambda c: c.stream("bench/stream", args.stream_items, args.stream_item_size),
        ),
    }
    results: dict[str, dict[str, list[Measurement]]] = {}
    async with AsyncExitStack() as stack:
        targets: dict[tuple[str, str], ServedTarget] = {}
        calls: dict[tuple[str, str], LoadCalls] = {}
        for plane in planes:
            for impl in impls:
                target = await stack.enter_async_context(serve_target(TargetOptions(impl=impl, plane=plane)))
                if pinned:
                    pin(target.adapter_pid, worker_cores)
                if args.nice:
                    renice(target.adapter_pid, args.nice)
                targets[plane, impl] = target
                calls[plane, impl] = await open_calls(target)
                stack.push_async_callback(calls[plane, impl].caller.close)
        if pinned:
            os.sched_setaffinity(0, {GENERATOR_CORE})
        if args.nice:
            renice(os.getpid(), args.nice)
        for round_number in range(args.rounds):
            order = impls if round_number % 2 == 0 else list(reversed(impls))
            for plane in planes:
                for workload, (concurrency, call) in workloads.items():
                    scenario = f"{plane} {workload}"
                    for impl in order:
                        measurement = await measure(
                            lambda call=call, key=(plane, impl): call(calls[key]),
                            concurrency,
                            args.seconds,
                            args.warmup,
                            targets[plane, impl].adapter_pid,
                        )
                        results.setdefault(scenario, {i: [] for i in impls})[impl].append(measurement)
                        print(
                            f"  round {round_number + 1} {scenario:12} {impl:9} {measurement.requests_per_s:9.0f} req/s"
                            f" {measurement.items_per_s:10.0f} items/s  p50 {measurement.p50_ms:.3f} ms  "
                            f"p99 {measurement.p99_ms:.3f} ms  errors {measurement.errors}",
                            flush=True,
                        )
    report["load_average_after"] = os.getloadavg()
    report["results"] = {
        scenario: {impl: asdict(median_of(runs)) for impl, runs in by_impl.items()}
        for scenario, by_impl in results.items()
    }
    return report


def format_report(report: dict[str, Any]) -> str:
    settings = report["settings"]
    impls = split(settings["impls"])
    versions = report["machine"]["versions"]
    labels = {"reference": "reference", "dynamo": f"dynamo {versions.get('ai-dynamo-runtime') or '?'}"}
    titles = {
        "unary": f"unary echo ({len(UNARY_TEXT)} B), concurrency {settings['concurrency']}",
        "stream": (
            f"streams of {settings['stream_items']} x {settings['stream_item_size']} B items, "
            f"concurrency {settings['stream_concurrency']}"
        ),
    }
    lines = [
        f"median of {settings['rounds']} rounds x {settings['seconds']} s per scenario and worker; pinning: "
        f"{report['pinning']}; nice {settings['nice']}; load average before {_loads(report['load_average_before'])}, "
        f"after {_loads(report['load_average_after'])}"
    ]
    columns = ("req/s", "items/s", "p50 ms", "p99 ms", "worker CPU us/req", "worker CPU %", "gen CPU %", "errors")
    header = f"{'':22}" + "".join(f"{c:>18}" for c in columns)
    for scenario, by_impl in report["results"].items():
        plane, _, workload = scenario.partition(" ")
        lines += ["", f"{plane.upper()}: {titles.get(workload, workload)}", header]
        for impl in impls:
            m = by_impl[impl]
            values = (
                f"{m['requests_per_s']:.0f}",
                f"{m['items_per_s']:.0f}",
                f"{m['p50_ms']:.3f}",
                f"{m['p99_ms']:.3f}",
                f"{m['worker_cpu_us_per_request']:.0f}",
                f"{m['worker_cpu_percent']:.0f}",
                f"{m['generator_cpu_percent']:.0f}",
                f"{m['errors']}",
            )
            lines.append(f"{labels.get(impl, impl):22}" + "".join(f"{v:>18}" for v in values))
        if len(impls) == 2:
            a, b = (by_impl[i] for i in impls)
            ratios = [
                _ratio(a[key], b[key])
                for key in ("requests_per_s", "items_per_s", "p50_ms", "p99_ms", "worker_cpu_us_per_request")
            ]
            lines.append(f"{f'ratio {impls[0]}/{impls[1]}':22}" + "".join(f"{r:>18}" for r in ratios))
    return "\n".join(lines)


def _loads(loads: list[float]) -> str:
    return "/".join(f"{value:.2f}" for value in loads)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impls", default="reference,dynamo", help="comma-separated built-in adapters to compare")
    parser.add_argument("--planes", default="tcp", help="comma-separated request planes (tcp, nats, http)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per scenario, worker and round")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (figures are medians)")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight, unary scenario")
    parser.add_argument("--stream-concurrency", type=int, default=4, help="calls in flight, stream scenario")
    parser.add_argument("--stream-items", type=int, default=1000)
    parser.add_argument("--stream-item-size", type=int, default=32)
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin generator and workers to cores")
    parser.add_argument(
        "--nice", type=int, default=0, help="niceness for generator and workers (e.g. -5: less skew from other work)"
    )
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    print()
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
