"""Issue 13's figures for the reference worker: every attack, TCP and HTTP planes, limits on and off, side by side.

``python -m loadtests.dos_bench`` starts a reference worker (its adapter, a
process of its own) once per scenario and column, runs the attack with a
legitimate ``echo`` caller alongside (TCP attacks from ``fixtures.dos.attacks``
in this process; HTTP ones from ``fixtures.dos.http_attacks`` in their own, rows
in ``loadtests.dos_bench_http``), and prints per scenario: peak RSS over the
baseline, RSS over the baseline 10 s after the attacker left, the legitimate
requests' p50/p99/max and failures, descriptors and asyncio tasks left, what the attack left
open, and which of the issue's targets were missed.  Machine facts (cores, load
average before and after) come with the table, since the figures depend on them.

Columns: ``limits on`` is the reference's defaults, except the TCP deadlines a
bench cannot wait out (frame read, idle and call-home write: 2 s, stated in the
output; the HTTP ones are used at their defaults, 5 s); ``limits off`` turns
every DoS limit off through the same settings (budgets and caps huge, deadlines
0), which is what the reference did before them.  Loopback only; each attack is
bounded.  ``--scenarios`` and ``--planes`` select rows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from fixtures.adapter_process import AdapterProcess, AdapterSpec
from fixtures.dos import attacks, http_attacks
from fixtures.dos.budget import (
    MIB,
    LegitLatencies,
    PeakRss,
    echo_call,
    legit_during,
    settle,
    tree_open_fds,
    tree_rss_bytes,
)
from fixtures.judge.codecs import PayloadCodec
from fixtures.judge.discovery import FileDiscovery, InstanceRecord
from fixtures.judge.routing import EndpointId
from fixtures.plugin import BASE_ADAPTER_ENV, BUILTIN_ADAPTERS
from fixtures.probes.callhome_recorder import CallHomeRecorder
from fixtures.probes.wire_client import RawRequestConnection, WireClient
from loadtests import dos_bench_http
from loadtests.dos_bench_http import DEADLINE_SLACK_S, HttpRow

PLANES = ("tcp", "http")
SHORT_DEADLINE_S = 2.0
AFTER_S = 10.0
HUGE = str(1 << 40)
# Issue 13's targets (reference, default limits): peak RSS <= baseline + 256 MiB, back under baseline + 64 MiB
# within 10 s after, a legitimate request's p99 <= 500 ms, nothing left behind.
PEAK_TARGET = 256 * MIB
AFTER_TARGET = 64 * MIB
P99_TARGET_S = 0.5
FD_SLACK = 4  # descriptors a worker may still hold after settling: a call-home of the last legit call closing
FD_SETTLE_S = 3.0
TASK_SLACK = 0  # asyncio tasks the worker may still run after settling, over its count before the attack
LEGIT_TIMEOUT_S = 5.0  # a legitimate call slower than this is a failure

LIMITS_ON = {
    "RP_TCP_FRAME_READ_TIMEOUT": str(SHORT_DEADLINE_S),
    "RP_TCP_IDLE_TIMEOUT": str(SHORT_DEADLINE_S),
    "RP_CALLHOME_WRITE_TIMEOUT": str(SHORT_DEADLINE_S),
}
LIMITS_OFF = {
    "RP_TCP_BUFFER_BUDGET": HUGE,
    "RP_TCP_CONNECTION_BUFFER_LIMIT": HUGE,
    "RP_TCP_FRAME_READ_TIMEOUT": "0",
    "RP_TCP_IDLE_TIMEOUT": "0",
    "RP_TCP_ACK_WRITE_TIMEOUT": "0",
    "RP_TCP_MAX_INFLIGHT_PER_CONNECTION": HUGE,
    "RP_CALLHOME_WRITE_TIMEOUT": "0",
    "RP_DECODE_CHECKED_ABOVE": HUGE,
    **dos_bench_http.LIMITS_OFF,
}
ADMISSION_ENV = {"DYN_TCP_WORKER_POOL_SIZE": "8", "DYN_TCP_WORK_QUEUE_SIZE": "32"}


class Worker:
    """A reference worker serving echo, stream and slow on one plane, in its own process."""

    def __init__(self, plane: str, env: dict[str, str], root: Path) -> None:
        self.plane = plane
        self.discovery = FileDiscovery(root / "kv")
        full_env = {**BASE_ADAPTER_ENV, **env, "DYN_FILE_KV": str(root / "kv"), "DYN_REQUEST_PLANE": plane}
        spec = AdapterSpec("reference", [sys.executable, "-m", BUILTIN_ADAPTERS["reference"]])
        self.adapter = AdapterProcess(spec, full_env, root / "adapter.log")

    async def start(self) -> None:
        await self.adapter.start()
        await self.adapter.request(
            "serve", plane=self.plane, namespace="dos", component="bench", endpoints=["echo", "stream", "slow"]
        )

    def record(self, endpoint: str) -> InstanceRecord:
        (record,) = self.discovery.records(EndpointId("dos", "bench", endpoint))
        return record

    async def tasks(self) -> int:
        """asyncio tasks alive in the worker's process (the reference adapter's ``tasks`` op)."""
        return int((await self.adapter.request("tasks"))["tasks"])

    @property
    def pid(self) -> int:
        assert self.adapter.pid is not None
        return self.adapter.pid


@dataclass
class Seen:
    """What an attack saw: the "attacker" cell, the row's own target if it has one, what to close afterwards."""

    attacker: str
    check: bool | None = None
    held: attacks.Attack | None = None


@dataclass(frozen=True)
class Scenario:
    plane: str
    title: str
    run: Callable[[Worker, WireClient], Awaitable[Seen]]
    check: str = ""  # what Seen.check judges ("" if the row has no target of its own)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Figures:
    peak: int  # bytes over the baseline
    after: int
    legit: LegitLatencies
    fds_left: int
    seen: Seen
    tasks_left: int = 0  # asyncio tasks in the worker after settling, over its count before the attack

    @property
    def p99_counting_failures(self) -> float:
        """The legitimate p99 with every failed call counted as never answered."""
        return LegitLatencies(self.legit.latencies + [math.inf] * len(self.legit.failures)).p99

    def missed(self, check: str) -> list[str]:
        """The issue's targets this row missed (and the row's own, named ``check``)."""
        missed = [
            name
            for name, ok in (
                ("peak RSS", self.peak <= PEAK_TARGET),
                (f"RSS {AFTER_S:.0f} s after", self.after <= AFTER_TARGET),
                ("p99", self.p99_counting_failures <= P99_TARGET_S),
                ("fds", self.fds_left <= FD_SLACK),
                ("tasks", self.tasks_left <= TASK_SLACK),
            )
            if not ok
        ]
        return missed + ([check] if self.seen.check is False else [])

    def cells(self, check: str) -> list[str]:
        legit = self.legit
        if legit.latencies:
            latency = f"{legit.p50 * 1000:.0f}/{legit.p99 * 1000:.0f}/{legit.worst * 1000:.0f} ms"
            failed = f", {len(legit.failures)}/{legit.calls} failed" if legit.failures else ""
        else:
            latency, failed = f"all {legit.calls} failed", f" ({legit.failures[0][:40]})" if legit.failures else ""
        missed = self.missed(check)
        return [
            f"{self.peak / MIB:+.0f} MiB",
            f"{self.after / MIB:+.0f} MiB",
            latency + failed,
            f"{self.fds_left:+d}",
            f"{self.tasks_left:+d}",
            self.seen.attacker,
            "missed: " + ", ".join(missed) if missed else "met",
        ]


# --- TCP plane ---------------------------------------------------------------------------------------


async def partial_frames(worker: Worker, client: WireClient) -> Seen:
    held = await attacks.partial_frames(worker.record("echo"), connections=16, send=24 * MIB, declared=32 * MIB - 1024)
    due = time.monotonic() + SHORT_DEADLINE_S + DEADLINE_SLACK_S  # every frame started before this
    open_now = [c for c in held.connections if not await c.wait_closed_by_peer(0.01)]
    still = [c for c in open_now if not await c.wait_closed_by_peer(max(0.01, due - time.monotonic()))]
    at = SHORT_DEADLINE_S + DEADLINE_SLACK_S
    return Seen(f"{len(open_now)}/16 open after sending, {len(still)}/16 {at:.0f} s later", not still, held)


async def trickled_frames(worker: Worker, client: WireClient) -> Seen:
    record = worker.record("echo")
    probe = client.prepare(record, {"slow": "loris"})
    probe.session.cancel()
    frame = WireClient.tcp_frame(record, probe)
    connections = [await RawRequestConnection.to(record) for _ in range(50)]
    give_up = SHORT_DEADLINE_S + 2.0
    closed = await asyncio.gather(*(attacks.trickled_frame(c, frame, 0.1, give_up) for c in connections))
    done = sorted(t for t in closed if t is not None)
    held = attacks.Attack(connections=connections)
    if len(done) == len(closed):
        in_time = done[-1] <= SHORT_DEADLINE_S + DEADLINE_SLACK_S
        return Seen(f"all 50 closed, the last at {done[-1]:.1f} s", in_time, held)
    return Seen(f"{len(closed) - len(done)}/50 open at {give_up:.0f} s", False, held)


async def decode_bombs(worker: Worker, client: WireClient) -> Seen:
    record = worker.record("echo")
    body = attacks.nil_bomb(PayloadCodec.parse(record.request_plane_codec), 31 * MIB)
    held = await attacks.decode_bombs(client, record, body, count=4, hold=1.5)
    return Seen(f"{len(held.sessions)}/4 call-homes opened", None, held)


async def stalled_streams(worker: Worker, client: WireClient) -> Seen:
    held, probes = await attacks.stalled_streams(client, worker.record("stream"), streams=4, count=40_000, size=1000)
    await asyncio.sleep(SHORT_DEADLINE_S + 2.0)
    outcomes = await attacks.stream_ends(held, probes, 3.0)
    going = sum(1 for sentinel, ended, _ in outcomes if sentinel or ended == "timeout")
    return Seen(f"{going}/4 streams still going at {SHORT_DEADLINE_S + 2:.0f} s", going == 0, held)


async def admission_hog(worker: Worker, client: WireClient) -> Seen:
    held = await attacks.admission_hog(
        client, worker.record("slow"), requests=60, stream={"interval": 0.25, "count": 40}
    )
    await asyncio.sleep(2.0)
    return Seen(f"hog admitted {held.acks.count(b'')}/60", None, held)


DEADLINE_CHECK = f"closed by the {SHORT_DEADLINE_S:.0f} s deadline"
TCP_SCENARIOS = {
    "tcp-partial-frames": Scenario(
        "tcp", "16 conns x a 32 MiB frame, 24 MiB sent, then idle", partial_frames, DEADLINE_CHECK
    ),
    "tcp-trickled-frames": Scenario("tcp", "50 conns x a frame trickled 1 B / 100 ms", trickled_frames, DEADLINE_CHECK),
    "tcp-decode-bombs": Scenario("tcp", "4 x 31 MiB msgpack array of nil, call-home never read", decode_bombs),
    "tcp-stalled-streams": Scenario(
        "tcp", "4 x 40 MB streams, call-home never read", stalled_streams, "given up by the call-home deadline"
    ),
    "tcp-admission-hog": Scenario(
        "tcp", "1 conn x 60 pipelined slow requests (pool 8, queue 32)", admission_hog, env=ADMISSION_ENV
    ),
}


# --- HTTP plane --------------------------------------------------------------------------------------


def http_scenario(row: HttpRow) -> Scenario:
    """A row of ``dos_bench_http``: its attack in a process of its own at the worker's echo URL."""

    async def run(worker: Worker, client: WireClient) -> Seen:
        url = worker.record("echo").transport_address
        outcome = await http_attacks.run_in_process(row.attack, url, row.options, row.budget_s)
        return Seen(*row.judge(outcome, row.options))

    return Scenario("http", row.title, run, row.check)


SCENARIOS = {**TCP_SCENARIOS, **{row.attack: http_scenario(row) for row in dos_bench_http.ROWS}}


# --- measuring -----------------------------------------------------------------------------------------


async def measure(scenario: Scenario, env: dict[str, str]) -> Figures:
    with tempfile.TemporaryDirectory(prefix="dos-bench-") as tmp:
        worker = Worker(scenario.plane, env, Path(tmp))
        recorder = CallHomeRecorder()
        await recorder.start()
        client = WireClient(recorder)
        try:
            await worker.start()
            legit = echo_call(client, worker.record("echo"), timeout=LEGIT_TIMEOUT_S)
            await legit()  # warm: the legit caller's connection and first-call costs are not the attack's
            await asyncio.sleep(0.5)
            baseline, fds_before = tree_rss_bytes(worker.pid), tree_open_fds(worker.pid)
            tasks_before = await worker.tasks()
            with PeakRss(worker.pid) as peak:
                seen, latencies = await legit_during(scenario.run(worker, client), legit, call_timeout=LEGIT_TIMEOUT_S)
            if seen.held is not None:
                await seen.held.close()
            after = await rss_after(worker.pid, baseline)
            fds_after = await settle(lambda: tree_open_fds(worker.pid), fds_before, FD_SETTLE_S)
            tasks_after = await settle_tasks(worker, tasks_before + TASK_SLACK, FD_SETTLE_S)
            figures = Figures(peak.peak - baseline, after - baseline, latencies, fds_after - fds_before, seen)
            figures.tasks_left = tasks_after - tasks_before
            return figures
        finally:
            await worker.adapter.stop()
            await client.close()
            await recorder.close()


async def settle_tasks(worker: Worker, target: int, timeout: float) -> int:
    """The worker's asyncio task count once it is at most ``target``, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        count = await worker.tasks()
        if count <= target or time.monotonic() >= deadline:
            return count
        await asyncio.sleep(0.1)


async def rss_after(pid: int, baseline: int) -> int:
    """RSS once it is back under the target, or at ``AFTER_S`` after the attacker left if it is not by then."""
    started = time.monotonic()
    after = await settle(lambda: tree_rss_bytes(pid), baseline + AFTER_TARGET, AFTER_S, interval=0.5)
    if after > baseline + AFTER_TARGET:
        await asyncio.sleep(max(AFTER_S - (time.monotonic() - started), 0))
        after = tree_rss_bytes(pid)
    return after


def machine_facts() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    usable = len(os.sched_getaffinity(0))
    return (
        f"machine: {os.cpu_count()} cores ({usable} usable), {memory:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def moment() -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{now}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


async def main(selected: list[str]) -> None:
    print(machine_facts())
    print(f"started {moment()}", flush=True)
    rows = [
        [
            "scenario",
            "limits",
            "peak RSS",
            f"{AFTER_S:.0f} s after",
            "legit p50/p99/max",
            "fds",
            "tasks",
            "attacker",
            "targets",
        ]
    ]
    for name in selected:
        scenario = SCENARIOS[name]
        for label, limits in (("on", LIMITS_ON), ("off", LIMITS_OFF)):
            try:
                cells = (await measure(scenario, {**scenario.env, **limits})).cells(scenario.check)
            except Exception as exc:  # one broken row must not lose the others' figures
                cells = ["-", "-", "-", "-", "-", f"bench error: {type(exc).__name__}: {exc}"[:120], "not measured"]
            rows.append([name, label, *cells])
            print(f"{name} [{label}]: {' | '.join(cells)}", file=sys.stderr, flush=True)
    print(f"finished {moment()}")
    print()
    print("scenarios:")
    for name in selected:
        scenario = SCENARIOS[name]
        own = f" (own target: {scenario.check})" if scenario.check else ""
        print(f"  {name}: {scenario.title}{own}")
    print(
        f"limits on: the reference's defaults, but {SHORT_DEADLINE_S:.0f} s for the TCP frame read, TCP idle and "
        "call-home write deadlines; limits off: every DoS limit off through the same settings"
    )
    print(
        f"targets (issue 13): peak RSS <= baseline + {PEAK_TARGET // MIB} MiB; <= baseline + {AFTER_TARGET // MIB} "
        f"MiB within {AFTER_S:.0f} s after; legit p99 <= {P99_TARGET_S * 1000:.0f} ms (a failed call counts as "
        f"unanswered); fds left <= {FD_SLACK}; tasks left <= {TASK_SLACK}; "
        f"deadlines met within {DEADLINE_SLACK_S:.0f} s of slack"
    )
    print()
    print(table(rows))


def _choice(known: tuple[str, ...] | list[str], what: str) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated subset of ``known``, anything else a clear error."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}; known: {', '.join(known)}"
            )
        return names

    return parse


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.dos_bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenarios", type=_choice(list(SCENARIOS), "scenario"), help=f"comma-separated: {', '.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--planes", type=_choice(PLANES, "plane"), default=list(PLANES), help="comma-separated: tcp,http"
    )
    args = parser.parse_args(argv)
    wanted = args.scenarios or list(SCENARIOS)
    selected = [name for name in SCENARIOS if name in wanted and SCENARIOS[name].plane in args.planes]
    if not selected:
        parser.error(f"no scenario of {', '.join(wanted)} is on plane(s) {', '.join(args.planes)}")
    asyncio.run(main(selected))


if __name__ == "__main__":
    cli()
