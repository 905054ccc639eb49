"""The DoS measurements (fixtures/dos/budget.py) measure what they claim, on real processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator

import msgpack
import pytest

from fixtures.dos import attacks, budget
from fixtures.dos.budget import (
    MIB,
    Footprint,
    LegitLatencies,
    PeakRss,
    echo_call,
    legit_calls_for,
    legit_during,
    peak_rss_during,
    settle,
    tree_open_fds,
    tree_pids,
    tree_rss_bytes,
)
from fixtures.judge.codecs import PayloadCodec
from fixtures.judge.discovery import InstanceRecord
from fixtures.judge.wire_revision import LATEST, REVISION_0_7
from fixtures.probes.wire_client import WireClient
from fixtures.roles import WorkerUnderTest

# A child that runs a script, says "ready", then does what each line on stdin asks.
CHILD = """
import os, sys, time
held = []
print("ready", flush=True)
for line in sys.stdin:
    word, _, arg = line.strip().partition(" ")
    if word == "alloc":
        block = bytearray(int(arg) * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])
        held.append(block)
        del block
    elif word == "free":
        held.clear()
    elif word == "fds":
        held.extend(os.open("/dev/null", os.O_RDONLY) for _ in range(int(arg)))
    elif word == "fork":
        held.append(__import__("subprocess").Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
    print("done", flush=True)
"""


class Child:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None and self.process.stdout.readline() == "ready\n"

    @property
    def pid(self) -> int:
        return self.process.pid

    def do(self, command: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline() == "done\n"

    def stop(self) -> None:
        for pid in reversed(tree_pids(self.pid)[1:]):
            subprocess.run(["kill", str(pid)], check=False)
        self.process.kill()
        self.process.wait(5)


@pytest.fixture
def child() -> Iterator[Child]:
    running = Child()
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("children_listed", [True, False], ids=["children-files", "scan-of-proc"])
def test_the_tree_covers_forked_children(child: Child, children_listed: bool, monkeypatch: pytest.MonkeyPatch):
    if children_listed:
        assert budget.CHILDREN_LISTED, "this Linux lists each thread's children (CONFIG_PROC_CHILDREN), as CI's does"
    monkeypatch.setattr(budget, "CHILDREN_LISTED", children_listed)
    assert tree_pids(child.pid) == [child.pid]
    child.do("fork")
    assert len(tree_pids(child.pid)) == 2


def test_rss_follows_what_the_process_holds(child: Child):
    before = tree_rss_bytes(child.pid)
    child.do("alloc 64")
    assert tree_rss_bytes(child.pid) - before >= 56 * MIB
    child.do("free")
    assert tree_rss_bytes(child.pid) - before < 16 * MIB


def test_fds_counts_every_open_descriptor(child: Child):
    before = tree_open_fds(child.pid)
    child.do("fds 40")
    assert tree_open_fds(child.pid) == before + 40
    assert Footprint.of(child.pid).fds == before + 40


def test_a_gone_process_measures_zero():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(10)
    assert tree_rss_bytes(process.pid) == 0 and tree_open_fds(process.pid) == 0


async def test_the_peak_sampler_sees_a_transient_allocation(child: Child):
    async def spike() -> str:
        await asyncio.to_thread(child.do, "alloc 96")
        await asyncio.sleep(0.3)
        await asyncio.to_thread(child.do, "free")
        return "attacked"

    result, sampler = await peak_rss_during(child.pid, spike(), interval=0.02)
    assert result == "attacked"
    assert sampler.growth >= 80 * MIB, f"missed a 96 MiB peak: {sampler.growth / MIB:.1f} MiB"
    assert tree_rss_bytes(child.pid) - sampler.baseline < 16 * MIB
    assert sampler.samples > 3


def test_the_peak_sampler_as_a_context_manager(child: Child):
    with PeakRss(child.pid, interval=0.02) as sampler:
        child.do("alloc 32")
    assert sampler.peak >= sampler.baseline + 24 * MIB


async def test_settle_waits_for_a_figure_to_come_down():
    figures = iter([10, 8, 5, 3, 3])
    assert await settle(lambda: next(figures), 4, timeout=5.0, interval=0.01) == 3
    assert await settle(lambda: 9, 4, timeout=0.1, interval=0.01) == 9  # never comes down: the last figure


def test_percentiles_are_nearest_rank():
    seen = LegitLatencies([float(n) for n in range(1, 101)])
    assert (seen.p50, seen.p99, seen.worst, seen.percentile(100)) == (50.0, 99.0, 100.0, 100.0)
    assert LegitLatencies().p99 == float("inf")


async def test_legit_calls_run_while_the_attack_lasts():
    async def call() -> None:
        await asyncio.sleep(0.01)

    result, seen = await legit_during(asyncio.sleep(0.4, "done"), call, interval=0.01)
    assert result == "done"
    assert seen.calls >= 8 and not seen.failures
    assert all(0.005 < latency < 0.4 for latency in seen.latencies)


async def test_failing_and_slow_legit_calls_are_failures():
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionResetError("reset")
        await asyncio.sleep(1.0)

    _, seen = await legit_during(asyncio.sleep(0), call, call_timeout=0.05, min_calls=3)
    assert seen.failures[0] == "ConnectionResetError: reset"
    assert seen.failures[1:] == ["no answer within 0.05s"] * 2
    assert seen.latencies == [] and "3 failed" in seen.summary()


async def test_the_attacks_exception_propagates():
    async def attack() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("attack broke")

    async def call() -> None:
        pass

    with pytest.raises(RuntimeError, match="attack broke"):
        await legit_during(attack(), call, interval=0.01)


@pytest.mark.planes("tcp")
async def test_echo_call_against_a_real_worker(impl_worker: WorkerUnderTest, wire_client: WireClient):
    _, seen = await legit_during(asyncio.sleep(0.2), echo_call(wire_client, impl_worker.record("echo")))
    assert not seen.failures and seen.calls >= 3, seen.summary()
    _, wrong = await legit_during(asyncio.sleep(0), echo_call(wire_client, impl_worker.record("whoami")))
    assert len(wrong.failures) == 3 and "echo answered" in wrong.failures[0], wrong.summary()


def test_the_attack_bodies_are_what_they_claim():
    msgpack_bomb = attacks.nil_bomb(PayloadCodec.MSGPACK, 1000)
    assert len(msgpack_bomb) == 1000 and msgpack.unpackb(msgpack_bomb) == [None] * 995
    json_bomb = attacks.nil_bomb(PayloadCodec.JSON, 1000)
    assert len(json_bomb) == 999 and json.loads(json_bomb) == [0] * 499


def test_a_frame_prelude_announces_the_declared_payload():
    record = InstanceRecord(
        namespace="ns", component="c", endpoint="e", instance_id=1,
        transport_kind="tcp", transport_address="127.0.0.1:9/1/ns/c/e", request_plane_codec="msgpack",
    )  # fmt: skip
    prelude = attacks.frame_prelude(record, 5000)
    path = b"1/ns/c/e"
    assert prelude == len(path).to_bytes(2, "big") + path + b"\x00\x00" + (5000).to_bytes(4, "big")


def test_a_partial_frame_prelude_follows_the_revisions_frame_layout() -> None:
    record = InstanceRecord("ns", "comp", "echo", 1, "tcp", "127.0.0.1:1/echo")
    # 0.7.1 as captured: u16 path_len | path | u32 payload_len (no headers block)
    assert attacks.frame_prelude(record, 357, REVISION_0_7) == b"\x00\x04echo\x00\x00\x01\x65"
    assert attacks.frame_prelude(record, 357, LATEST) == b"\x00\x04echo\x00\x00\x00\x00\x01\x65"


async def test_legit_calls_for_a_window_stop_at_the_first_failure():
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionResetError("reset")

    seen = await legit_calls_for(5.0, call, interval=0.01)
    assert calls == 2 and seen.failures == ["ConnectionResetError: reset"] and len(seen.latencies) == 1


async def test_legit_calls_for_a_window_last_the_window_and_make_at_least_the_minimum():
    async def call() -> None:
        await asyncio.sleep(0.01)

    started = asyncio.get_running_loop().time()
    seen = await legit_calls_for(0.2, call, interval=0.01)
    assert asyncio.get_running_loop().time() - started >= 0.2 and seen.calls >= 5 and not seen.failures
    slow = await legit_calls_for(0.0, call, interval=0.0, min_calls=3)
    assert slow.calls == 3 and not slow.failures


def test_over_a_bound_is_decided_once_the_peak_passes_it():
    sampler = PeakRss(1)  # never entered: nothing is sampled
    over = sampler.over(10 * MIB)
    sampler.baseline, sampler.peak = 100 * MIB, 105 * MIB
    assert not over()
    sampler.peak = 111 * MIB
    assert over()
