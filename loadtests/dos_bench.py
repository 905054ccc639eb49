"""Issue 13's figures for the reference worker: each TCP-plane attack with its limits on and off, side by side.

``python -m loadtests.dos_bench`` starts a reference worker (its adapter, a
process of its own) once per scenario and column, runs the attack from
``fixtures.dos.attacks`` with a legitimate ``echo`` caller alongside, and
prints per scenario: peak RSS over the baseline, RSS over the baseline 10 s
after the attacker left (the issue asks for <= 64 MiB), the legitimate
requests' p50/p99/max and failures, and what the attack left open.

Columns: ``limits on`` is the reference's defaults, except the deadlines a
bench cannot wait out (frame read, idle and call-home write deadlines: 2 s,
stated in the output); ``limits off`` turns every DoS limit off through the
same settings (budgets and caps huge, deadlines 0), which is what the
reference did before them.  Loopback only; each attack is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fixtures.adapter_process import AdapterProcess, AdapterSpec
from fixtures.dos import attacks
from fixtures.dos.budget import MIB, LegitLatencies, PeakRss, echo_call, legit_during, settle, tree_rss_bytes
from fixtures.judge.codecs import PayloadCodec
from fixtures.judge.discovery import FileDiscovery, InstanceRecord
from fixtures.judge.routing import EndpointId
from fixtures.plugin import BASE_ADAPTER_ENV, BUILTIN_ADAPTERS
from fixtures.probes.callhome_recorder import CallHomeRecorder
from fixtures.probes.wire_client import RawRequestConnection, WireClient

SHORT_DEADLINE_S = 2.0
AFTER_S = 10.0  # the issue: back under baseline + 64 MiB within 10 s after the attack
HUGE = str(1 << 40)

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
}
ADMISSION_ENV = {"DYN_TCP_WORKER_POOL_SIZE": "8", "DYN_TCP_WORK_QUEUE_SIZE": "32"}


@dataclass
class Figures:
    peak_mib: float
    after_mib: float
    legit: LegitLatencies
    left_open: str

    def cells(self) -> list[str]:
        failed = f", {len(self.legit.failures)} failed" if self.legit.failures else ""
        return [
            f"+{self.peak_mib:.0f} MiB",
            f"+{self.after_mib:.0f} MiB",
            f"{self.legit.p50 * 1000:.0f}/{self.legit.p99 * 1000:.0f}/{self.legit.worst * 1000:.0f} ms{failed}",
            self.left_open,
        ]


class Worker:
    """A reference worker serving echo, stream and slow over TCP, in its own process."""

    def __init__(self, env: dict[str, str], root: Path) -> None:
        self.discovery = FileDiscovery(root / "kv")
        full_env = {**BASE_ADAPTER_ENV, **env, "DYN_FILE_KV": str(root / "kv"), "DYN_REQUEST_PLANE": "tcp"}
        spec = AdapterSpec("reference", [sys.executable, "-m", BUILTIN_ADAPTERS["reference"]])
        self.adapter = AdapterProcess(spec, full_env, root / "adapter.log")

    async def start(self) -> None:
        await self.adapter.start()
        await self.adapter.request(
            "serve", plane="tcp", namespace="dos", component="bench", endpoints=["echo", "stream", "slow"]
        )

    def record(self, endpoint: str) -> InstanceRecord:
        (record,) = self.discovery.records(EndpointId("dos", "bench", endpoint))
        return record

    @property
    def pid(self) -> int:
        assert self.adapter.pid is not None
        return self.adapter.pid


Scenario = Callable[[Worker, WireClient], Awaitable[tuple[attacks.Attack | None, str]]]


async def partial_frames(worker: Worker, client: WireClient) -> tuple[attacks.Attack | None, str]:
    held = await attacks.partial_frames(worker.record("echo"), connections=16, send=24 * MIB, declared=32 * MIB - 1024)
    open_ = 0
    for connection in held.connections:
        open_ += not await connection.wait_closed_by_peer(0.01)
    return held, f"{open_}/16 attackers open"


async def trickled_frames(worker: Worker, client: WireClient) -> tuple[attacks.Attack | None, str]:
    record = worker.record("echo")
    probe = client.prepare(record, {"slow": "loris"})
    probe.session.cancel()
    frame = WireClient.tcp_frame(record, probe)
    connections = [await RawRequestConnection.to(record) for _ in range(50)]
    closed = await asyncio.gather(*(attacks.trickled_frame(c, frame, 0.1, SHORT_DEADLINE_S + 2.0) for c in connections))
    done = sorted(t for t in closed if t is not None)
    slowest = f", all closed by {done[-1]:.1f} s" if len(done) == len(closed) else ""
    return attacks.Attack(
        connections=connections
    ), f"{len(closed) - len(done)}/50 open at {SHORT_DEADLINE_S + 2:.0f} s{slowest}"


async def decode_bombs(worker: Worker, client: WireClient) -> tuple[attacks.Attack | None, str]:
    record = worker.record("echo")
    body = attacks.nil_bomb(PayloadCodec.parse(record.request_plane_codec), 31 * MIB)
    held = await attacks.decode_bombs(client, record, body, count=4, hold=1.5)
    return held, f"{len(held.sessions)} call-homes held"


async def stalled_streams(worker: Worker, client: WireClient) -> tuple[attacks.Attack | None, str]:
    held, probes = await attacks.stalled_streams(client, worker.record("stream"), streams=4, count=40_000, size=1000)
    await asyncio.sleep(SHORT_DEADLINE_S + 2.0)
    outcomes = await attacks.stream_ends(held, probes, 3.0)
    going = sum(1 for sentinel, ended, _ in outcomes if sentinel or ended == "timeout")
    return held, f"{going}/4 streams still going at {SHORT_DEADLINE_S + 2:.0f} s"


async def admission_hog(worker: Worker, client: WireClient) -> tuple[attacks.Attack | None, str]:
    held = await attacks.admission_hog(
        client, worker.record("slow"), requests=60, stream={"interval": 0.25, "count": 40}
    )
    await asyncio.sleep(2.0)
    return held, f"hog admitted {held.acks.count(b'')}/60"


SCENARIOS: dict[str, tuple[Scenario, dict[str, str]]] = {
    "16 x partial 32 MiB frames": (partial_frames, {}),
    "50 x frame trickled 1 B/100 ms": (trickled_frames, {}),
    "4 x 31 MiB msgpack nil array": (decode_bombs, {}),
    "4 x 40 MB stream, never read": (stalled_streams, {}),
    "1 conn x 60 slow requests": (admission_hog, ADMISSION_ENV),
}


async def measure(scenario: Scenario, env: dict[str, str]) -> Figures:
    with tempfile.TemporaryDirectory(prefix="dos-bench-") as tmp:
        worker = Worker(env, Path(tmp))
        recorder = CallHomeRecorder()
        await recorder.start()
        client = WireClient(recorder)
        await worker.start()
        try:
            await asyncio.sleep(0.5)
            baseline = tree_rss_bytes(worker.pid)
            held: attacks.Attack | None = None
            with PeakRss(worker.pid) as peak:
                (held, left_open), seen = await legit_during(
                    scenario(worker, client), echo_call(client, worker.record("echo"), timeout=5.0)
                )
            if held is not None:
                await held.close()
            started = time.monotonic()
            after = await settle(lambda: tree_rss_bytes(worker.pid), baseline + 64 * MIB, AFTER_S, interval=0.5)
            if after > baseline + 64 * MIB:
                await asyncio.sleep(max(AFTER_S - (time.monotonic() - started), 0))
                after = tree_rss_bytes(worker.pid)
            return Figures((peak.peak - baseline) / MIB, (after - baseline) / MIB, seen, left_open)
        finally:
            await worker.adapter.stop()
            await client.close()
            await recorder.close()


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


async def main(selected: list[str]) -> None:
    rows = [["scenario", "limits", "peak RSS", f"RSS {AFTER_S:.0f} s after", "legit p50/p99/max", "left open"]]
    for name in selected:
        scenario, env = SCENARIOS[name]
        for label, limits in (("on", LIMITS_ON), ("off", LIMITS_OFF)):
            figures = await measure(scenario, {**env, **limits})
            rows.append([name, label, *figures.cells()])
            print(f"{name} [{label}]: {' | '.join(figures.cells())}", file=sys.stderr, flush=True)
    print(
        f"deadlines handed to the worker with limits on: {SHORT_DEADLINE_S:.0f} s (frame read, idle, call-home write)"
    )
    print(_table(rows))


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.dos_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="run only these (repeatable)")
    args = parser.parse_args(argv)
    asyncio.run(main(args.scenario or list(SCENARIOS)))


if __name__ == "__main__":
    cli()
