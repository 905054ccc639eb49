"""Benchmark: the reference worker against Dynamo 1.6.1's, same load generator, one run, on loopback.

Not a test (nothing here passes or fails); run it and read the figures::

    python -m loadtests.benchmark                      # TCP, ~2 min on 2 cores
    python -m loadtests.benchmark --planes tcp,nats --json out/bench.json

Both workers are started through their adapters (their own DYN_FILE_KV,
DYN_TCP_RPC_HOST=127.0.0.1, DYN_EVENT_PLANE=zmq) and driven in turn, in a
closed loop at fixed concurrency, by the same generator:

* TCP and NATS planes: ``loadtests.wire_load``, a lean wire-level generator
  in its own process(es) (``--generators N``), several times cheaper per
  request than the reference ``Caller``, so that the worker, not the
  generator, is the limit;
* other planes (or ``--generator caller``): the coroutines the Locust
  profiles use (``loadtests.calls`` on the reference ``Caller``), in this
  process.

The CPU share of every generator process is printed, with a warning when one
is above :data:`GENERATOR_CPU_LIMIT` of its core (the figures then measure
the generator too).  Measurements are short and alternate between the
workers (the order flips every round; at least :data:`MIN_ROUNDS` rounds),
so a burst of other work on a shared machine hits both alike; figures are
medians over rounds with their spread (interquartile range), and a ratio is
printed only when the difference of the medians is larger than that spread.
The load average is recorded before, after and at every round.

On a machine with 2+ cores the generator is pinned to core 0 and the workers
to the other cores, so neither steals the other's CPU; the workers' CPU time
per request is read from /proc (Dynamo's figure includes its runtime's idle
polling threads).  The codec section times ``two_part.encode`` and
``TwoPartDecoder`` on small item frames, by CPU time over 6 rounds
(``loadtests.codec_bench`` says why).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import itertools
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

from fixtures.suite_runs import cpu_model
from loadtests import codec_bench
from loadtests.cached_discovery import CachedDiscovery
from loadtests.calls import CallOutcome, LoadCalls
from loadtests.targets import COMPONENT, NAMESPACE, ServedTarget, TargetOptions, serve_target
from loadtests.wire_load import Result
from reference_impl.caller import Caller, CallerConfig
from reference_impl.transport.nats.config import NatsCallerConfig

UNARY_TEXT = "x" * 64
GENERATOR_CORE = 0
WIRE_PLANES = ("tcp", "nats")  # planes loadtests.wire_load speaks
GENERATOR_CPU_LIMIT = 70.0  # percent of one core: above it the generator, not the worker, may set the pace
MIN_ROUNDS = 6
WIRE_READY_TIMEOUT = 60.0  # seconds for a generator process to connect and say it is ready
LATE_LIMIT = 0.1  # seconds: a generator that started counting later than this is reported
WIRE_TIMEOUT_SLACK = 30.0  # a generator process not done this long after its window is stopped by PID


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
    generator_cpu_percent: float  # the busiest generator process, percent of its core
    generators: int = 1
    generator_late_s: float = 0.0  # latest start of counting after the window opened, over generator processes
    load_average: float = 0.0  # 1-minute load average when the measurement ended
    first_error: str | None = None


def machine_info() -> dict[str, Any]:
    model = cpu_model() or "unknown"
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
        load_average=os.getloadavg()[0],
        first_error=repr(errors[0].error) if errors else None,
    )


async def measure_wire(
    target: ServedTarget, workload: str, concurrency: int, args: argparse.Namespace, generator_cores: list[int]
) -> Measurement:
    """``args.generators`` ``wire_load`` processes, pinned round-robin to ``generator_cores``, one shared window.

    The window opens ``args.warmup`` seconds after every generator said it is connected and
    ready, so a slow start on a loaded machine never eats into it.
    """
    per_process = max(1, concurrency // args.generators)
    processes = []
    cores = itertools.cycle(generator_cores or [None])
    for _ in range(args.generators):
        command = [
            sys.executable,
            "-m",
            "loadtests.wire_load",
            "--discovery",
            target.discovery_dir,
            "--namespace",
            NAMESPACE,
            "--component",
            COMPONENT,
            "--workload",
            workload,
            "--concurrency",
            str(per_process),
            "--stream-items",
            str(args.stream_items),
            "--stream-item-size",
            str(args.stream_item_size),
        ]
        if target.nats_url:
            command += ["--nats-url", target.nats_url]
        core = next(cores)
        if core is not None:
            command += ["--cpu", str(core)]
        processes.append(
            await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        )
    try:
        for process in processes:
            if args.nice:
                renice(process.pid, args.nice)
            assert process.stdout is not None
            async with asyncio.timeout(WIRE_READY_TIMEOUT):
                ready = await process.stdout.readline()
            if not ready.startswith(b'{"ready"'):
                raise RuntimeError(f"generator pid {process.pid} did not start: {ready[:300]!r}")
    except BaseException:
        for process in processes:
            if process.returncode is None:
                process.kill()
            await process.wait()
        raise
    loop_start = time.monotonic() + args.warmup
    stop_at = loop_start + args.seconds
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(f"{loop_start!r} {stop_at!r}\n".encode())
        process.stdin.close()
    await asyncio.sleep(max(0.0, loop_start - time.monotonic()))
    worker_cpu = process_cpu_seconds(target.adapter_pid)
    started = time.monotonic()
    await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
    worker_cpu = process_cpu_seconds(target.adapter_pid) - worker_cpu
    elapsed = time.monotonic() - started
    results: list[Result] = []
    failures: list[str] = []
    for process in processes:
        try:
            async with asyncio.timeout(WIRE_TIMEOUT_SLACK):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            failures.append(f"generator pid {process.pid} did not finish")
            continue
        if process.returncode != 0:
            failures.append(f"generator pid {process.pid} exited {process.returncode}: {err.decode()[-500:]}")
            continue
        results.append(Result(**json.loads(out)))
    if failures:
        raise RuntimeError("; ".join(failures))
    good = sum(r.requests for r in results)
    errors = sum(r.errors for r in results)
    latencies = sorted(itertools.chain.from_iterable(r.latencies_ms for r in results))
    return Measurement(
        requests=good,
        errors=errors,
        seconds=elapsed,
        requests_per_s=good / elapsed,
        items_per_s=sum(r.items for r in results) / elapsed,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        worker_cpu_us_per_request=1e6 * worker_cpu / max(1, good + errors),
        worker_cpu_percent=100 * worker_cpu / elapsed,
        generator_cpu_percent=max(100 * r.cpu_seconds / r.seconds for r in results),
        generators=len(results),
        load_average=os.getloadavg()[0],
        first_error=next((r.first_error for r in results if r.first_error), None)
        or next(
            (f"a generator started counting {r.late_s:.2f} s late" for r in results if r.late_s > LATE_LIMIT), None
        ),
    )


SPREAD_FIELDS = ("requests_per_s", "items_per_s", "worker_cpu_us_per_request", "generator_cpu_percent")


def spread_of(values: list[float]) -> float:
    """Interquartile range of per-round figures: how far rounds disagree, robust to one disturbed round."""
    if len(values) < 2:
        return float("nan")
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return high - low


def summarise(measurements: list[Measurement]) -> dict[str, Any]:
    """Medians over rounds, each figure's spread, and the per-round values."""
    summary = asdict(median_of(measurements))
    summary["spread"] = {name: spread_of([getattr(m, name) for m in measurements]) for name in SPREAD_FIELDS}
    summary["rounds"] = {name: [getattr(m, name) for m in measurements] for name in SPREAD_FIELDS}
    return summary


def compare(a: dict[str, Any], b: dict[str, Any], key: str) -> str:
    """``a/b`` of the medians, or why it is not printed: the rounds disagree more than the workers differ."""
    if not b[key]:
        return "n/a"
    difference = abs(a[key] - b[key])
    spread = max(a["spread"][key], b["spread"][key])
    if not difference > spread:
        return "noise"
    return f"{a[key] / b[key]:.2f}"


def rounds_ahead(a: dict[str, Any], b: dict[str, Any], key: str, higher_is_better: bool = True) -> str:
    """In how many alternating rounds ``a`` beat ``b`` (rounds are paired: same round, back to back)."""
    pairs = list(zip(a["rounds"][key], b["rounds"][key], strict=False))
    wins = sum(1 for x, y in pairs if (x > y if higher_is_better else x < y))
    return f"{wins}/{len(pairs)}"


def median_of(measurements: list[Measurement]) -> Measurement:
    fields = asdict(measurements[0])
    merged: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            merged[name] = statistics.median(getattr(m, name) for m in measurements)
        else:
            merged[name] = next((getattr(m, name) for m in measurements if getattr(m, name)), None)
    merged["requests"] = int(merged["requests"])
    merged["generators"] = int(merged["generators"])
    merged["errors"] = sum(m.errors for m in measurements)
    return Measurement(**merged)


async def open_calls(target: ServedTarget) -> LoadCalls:
    config = CallerConfig(planes={"nats": NatsCallerConfig(url=target.nats_url)}) if target.nats_url else CallerConfig()
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
    codec = codec_bench.measure(frames=args.codec_frames)
    report["codec"] = codec.to_json()
    print(codec_bench.describe(codec), flush=True)
    cores = os.sched_getaffinity(0)
    pinned = args.pin and len(cores) >= 2
    worker_cores = cores - {GENERATOR_CORE} if pinned else cores
    generator_cores = [GENERATOR_CORE] if pinned else []
    if args.generators is None:
        args.generators = max(1, len(cores - worker_cores)) if pinned else max(1, len(cores) - 1)
    report["pinning"] = (
        {"generator": generator_cores, "workers": sorted(worker_cores)}
        if pinned
        else ("none (fewer than 2 cores)" if args.pin else "none (--no-pin)")
    )
    report["generators"] = {plane: generator_for(plane, args) for plane in planes}
    report["generator_processes"] = args.generators
    workloads = {
        "unary": (args.concurrency, lambda c: c.echo("bench/echo", UNARY_TEXT)),
        "stream": (
            args.stream_concurrency,
            lambda c: c.stream("bench/stream", args.stream_items, args.stream_item_size),
        ),
    }
    results: dict[str, dict[str, list[Measurement]]] = {}
    report["round_load_averages"] = []
    async with AsyncExitStack() as stack:
        targets: dict[tuple[str, str], ServedTarget] = {}
        calls: dict[tuple[str, str], LoadCalls] = {}
        for plane in planes:
            for impl in impls:
                target = await stack.enter_async_context(serve_target(target_options(impl, plane, args)))
                if pinned:
                    pin(target.adapter_pid, worker_cores)
                if args.nice:
                    renice(target.adapter_pid, args.nice)
                targets[plane, impl] = target
                if report["generators"][plane] == "caller":
                    calls[plane, impl] = await open_calls(target)
                    stack.push_async_callback(calls[plane, impl].caller.close)
        if pinned:
            os.sched_setaffinity(0, {GENERATOR_CORE})
        if args.nice:
            renice(os.getpid(), args.nice)
        for round_number in range(args.rounds):
            report["round_load_averages"].append(os.getloadavg()[0])
            order = impls if round_number % 2 == 0 else list(reversed(impls))
            for plane in planes:
                for workload, (concurrency, call) in workloads.items():
                    scenario = f"{plane} {workload}"
                    for impl in order:
                        if report["generators"][plane] == "wire":
                            measurement = await measure_wire(
                                targets[plane, impl], workload, concurrency, args, generator_cores
                            )
                        else:
                            measurement = await measure(
                                lambda call=call, key=(plane, impl): call(calls[key]),
                                concurrency,
                                args.seconds,
                                args.warmup,
                                targets[plane, impl].adapter_pid,
                            )
                        results.setdefault(scenario, {i: [] for i in impls})[impl].append(measurement)
                        warning = (
                            f"  WARNING: generator at {measurement.generator_cpu_percent:.0f}% of its core"
                            if measurement.generator_cpu_percent > GENERATOR_CPU_LIMIT
                            else ""
                        ) + (
                            f"  WARNING: a generator started counting {measurement.generator_late_s:.2f} s late"
                            if measurement.generator_late_s > LATE_LIMIT
                            else ""
                        )
                        print(
                            f"  round {round_number + 1} {scenario:12} {impl:9} {measurement.requests_per_s:9.0f} req/s"
                            f" {measurement.items_per_s:10.0f} items/s  p50 {measurement.p50_ms:.3f} ms  "
                            f"p99 {measurement.p99_ms:.3f} ms  worker {measurement.worker_cpu_us_per_request:.0f} us"
                            f"  gen CPU {measurement.generator_cpu_percent:.0f}%  errors {measurement.errors}"
                            f"  load {measurement.load_average:.2f}{warning}",
                            flush=True,
                        )
    report["load_average_after"] = os.getloadavg()
    report["results"] = {
        scenario: {impl: summarise(runs) for impl, runs in by_impl.items()} for scenario, by_impl in results.items()
    }
    return report


UVLOOP_SUFFIX = "-uvloop"  # "reference-uvloop": the reference worker on uvloop, alongside the default loop


def target_options(impl: str, plane: str, args: argparse.Namespace) -> TargetOptions:
    """``reference-uvloop`` is the reference adapter with RP_EVENT_LOOP=uvloop; others as named."""
    if impl.endswith(UVLOOP_SUFFIX):
        return TargetOptions(impl=impl.removesuffix(UVLOOP_SUFFIX), plane=plane, env=(("RP_EVENT_LOOP", "uvloop"),))
    if impl == "reference":
        return TargetOptions(impl=impl, plane=plane, env=(("RP_EVENT_LOOP", args.reference_loop),))
    return TargetOptions(impl=impl, plane=plane)


def generator_for(plane: str, args: argparse.Namespace) -> str:
    """``wire`` (lean; TCP and NATS) unless ``--generator caller`` or the plane has no wire generator (HTTP)."""
    return "wire" if args.generator == "wire" and plane in WIRE_PLANES else "caller"


def format_report(report: dict[str, Any]) -> str:
    settings = report["settings"]
    impls = split(settings["impls"])
    versions = report["machine"]["versions"]
    loop = settings.get("reference_loop", "asyncio")
    labels = {
        "reference": "reference" if loop == "asyncio" else f"reference ({loop})",
        "reference-uvloop": "reference (uvloop)",
        "dynamo": f"dynamo {versions.get('ai-dynamo-runtime') or '?'}",
    }
    titles = {
        "unary": f"unary echo ({len(UNARY_TEXT)} B), concurrency {settings['concurrency']}",
        "stream": (
            f"streams of {settings['stream_items']} x {settings['stream_item_size']} B items, "
            f"concurrency {settings['stream_concurrency']}"
        ),
    }
    loads = report.get("round_load_averages") or []
    lines = [
        f"median (and interquartile range) of {settings['rounds']} alternating rounds x {settings['seconds']} s per "
        f"scenario and worker; pinning: {report['pinning']}; nice {settings['nice']}; generators: "
        f"{report['generators']} x {report['generator_processes']} process(es); load average before "
        f"{_loads(report['load_average_before'])}, after {_loads(report['load_average_after'])}, at the rounds "
        f"{_loads(loads)}",
        "a ratio reads 'noise' when the medians differ by less than the larger spread",
    ]
    columns = (
        "req/s",
        "(IQR)",
        "items/s",
        "p50 ms",
        "p99 ms",
        "worker us/req",
        "(IQR)",
        "worker CPU %",
        "gen CPU %",
        "errors",
    )
    header = f"{'':22}" + "".join(f"{c:>14}" for c in columns)
    warnings = []
    for scenario, by_impl in report["results"].items():
        plane, _, workload = scenario.partition(" ")
        lines += ["", f"{plane.upper()}: {titles.get(workload, workload)}", header]
        for impl in impls:
            m = by_impl[impl]
            values = (
                f"{m['requests_per_s']:.0f}",
                f"{m['spread']['requests_per_s']:.0f}",
                f"{m['items_per_s']:.0f}",
                f"{m['p50_ms']:.3f}",
                f"{m['p99_ms']:.3f}",
                f"{m['worker_cpu_us_per_request']:.0f}",
                f"{m['spread']['worker_cpu_us_per_request']:.0f}",
                f"{m['worker_cpu_percent']:.0f}",
                f"{m['generator_cpu_percent']:.0f}",
                f"{m['errors']}",
            )
            lines.append(f"{labels.get(impl, impl):22}" + "".join(f"{v:>14}" for v in values))
            if m["generator_cpu_percent"] > GENERATOR_CPU_LIMIT:
                warnings.append(
                    f"WARNING: {scenario} {impl}: generator at {m['generator_cpu_percent']:.0f}% of its core "
                    f"(> {GENERATOR_CPU_LIMIT:.0f}%): the generator may be the limit, not the worker"
                )
        # Every implementation against the last one named (Dynamo by default).
        for impl in impls[:-1]:
            a, b = by_impl[impl], by_impl[impls[-1]]
            ratios = (
                compare(a, b, "requests_per_s"),
                "",
                compare(a, b, "items_per_s"),
                _ratio(a["p50_ms"], b["p50_ms"]),
                _ratio(a["p99_ms"], b["p99_ms"]),
                compare(a, b, "worker_cpu_us_per_request"),
            )
            lines.append(f"{f'ratio {impl}/{impls[-1]}':22}" + "".join(f"{r:>14}" for r in ratios))
            lines.append(
                f"{'':22}{impl} ahead in {rounds_ahead(a, b, 'items_per_s')} rounds on items/s, "
                f"{rounds_ahead(a, b, 'worker_cpu_us_per_request', higher_is_better=False)} on worker CPU per request"
            )
    return "\n".join(lines + (["", *warnings] if warnings else []))


def _loads(loads: list[float]) -> str:
    return "/".join(f"{value:.2f}" for value in loads)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--impls",
        default="reference,dynamo",
        help="comma-separated adapters (reference-uvloop: the reference on uvloop); ratios are against the last",
    )
    parser.add_argument("--planes", default="tcp", help="comma-separated request planes (tcp, nats, http)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per scenario, worker and round")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each measurement")
    parser.add_argument(
        "--rounds",
        type=int,
        default=MIN_ROUNDS,
        help=f"alternating rounds, >= {MIN_ROUNDS} (medians)",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight, unary scenario")
    parser.add_argument("--stream-concurrency", type=int, default=4, help="calls in flight, stream scenario")
    parser.add_argument("--stream-items", type=int, default=1000)
    parser.add_argument("--stream-item-size", type=int, default=32)
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin generator and workers to cores")
    parser.add_argument(
        "--nice", type=int, default=0, help="niceness for generator and workers (e.g. -5: less skew from other work)"
    )
    parser.add_argument(
        "--generator",
        choices=("wire", "caller"),
        default="wire",
        help="load generator on TCP and NATS: the lean wire-level one (default) or the reference Caller",
    )
    parser.add_argument(
        "--generators",
        type=int,
        default=None,
        help="wire generator processes (default: one per core not given to the workers, at least 1)",
    )
    parser.add_argument("--codec-frames", type=int, default=200_000, help="frames per codec measurement")
    parser.add_argument(
        "--reference-loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop of the reference worker (RP_EVENT_LOOP; uvloop needs the 'uvloop' extra)",
    )
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}: medians and spreads need them")
    if args.generators is not None and args.generators < 1:
        parser.error("--generators must be at least 1")
    report = asyncio.run(run(args))
    print()
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
