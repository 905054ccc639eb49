"""What the DoS scenarios wait on instead of fixed windows, and the processes they start, on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, cast

import pytest

from fixtures.dos import attacks, http_attacks
from fixtures.dos.fresh_workers import FreshWorkers
from fixtures.probes.callhome_recorder import CallHomeSession
from fixtures.roles import WorkerUnderTest


@dataclass
class _Session:
    """The two things ``_ended_by_worker`` reads of a call-home session."""

    writer: asyncio.StreamWriter
    ended_by: str = "open"


async def _stalled_pair(close_after_filling: bool) -> tuple[asyncio.Server, asyncio.StreamWriter, asyncio.Event]:
    """A server that writes to a client who reads nothing until its buffers are full, then (maybe) closes."""
    filled = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = bytes(1 << 20)
        with contextlib.suppress(TimeoutError, ConnectionError):
            while True:
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), 0.5)
        filled.set()
        if close_after_filling:
            writer.transport.abort()  # closed at once, the unsent rest still queued: the FIN waits behind it

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
    return server, writer, filled


@pytest.mark.parametrize("closes", [True, False], ids=["worker-closes", "worker-keeps-writing"])
async def test_a_stalled_stream_is_seen_ended_when_the_worker_closes_its_end_without_reading_it(closes: bool):
    server, writer, filled = await _stalled_pair(close_after_filling=closes)
    try:
        await asyncio.wait_for(filled.wait(), 10.0)
        held = attacks.Attack(sessions=[cast(CallHomeSession, _Session(writer))])
        assert await attacks.streams_ended_by_worker(held, 2.0) is closes
        assert attacks.streams_seen_still_open(held) is not closes
    finally:
        writer.close()
        server.close()


class _FakeAdapter:
    def __init__(self) -> None:
        self.process: Any = type("P", (), {"returncode": None})()
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True

    async def discard(self) -> None:  # how the pool ends a worker nobody took (AdapterProcess.discard)
        self.stopped = True


async def test_fresh_workers_start_two_while_more_are_wanted_and_hand_out_the_idle_spare():
    started: list[_FakeAdapter] = []

    async def start() -> WorkerUnderTest:
        adapter = _FakeAdapter()
        started.append(adapter)
        return cast(WorkerUnderTest, type("W", (), {"adapter": adapter})())

    pool = FreshWorkers(start)
    first = await pool.take(more_wanted=True)
    assert len(started) == 2
    second = await pool.take(more_wanted=True)
    assert len(started) == 2 and second is not first  # the spare, nothing started
    third = await pool.take(more_wanted=False)
    assert len(started) == 3 and third.adapter is started[2]
    await pool.take(more_wanted=True)
    started[4].process.returncode = 1  # the spare died while idle: not handed out
    fifth = await pool.take(more_wanted=False)
    assert started[4].stopped and fifth.adapter is started[5]
    await pool.close()
    assert not started[5].stopped  # taken workers are their test's to stop


async def test_the_attacker_process_runs_attacks_in_forked_children_and_reports_their_errors():
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\n\n")
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/rpc/x"
    attacker = http_attacks.Attacker()
    try:
        outcome = await attacker.run("h1-bare-lf", url, {"wait": 3.0}, 3.0)
        assert outcome.statuses == [400] and outcome.closed_at
        with pytest.raises(RuntimeError, match="KeyError"):
            await attacker.run("no-such-attack", url, {}, 1.0)
        again = await attacker.run("h1-bare-lf", url, {"wait": 3.0}, 3.0)  # the same process, still serving
        assert again.statuses == [400]
    finally:
        await attacker.close()
        server.close()


async def _endless_attack(ended: asyncio.Event) -> None:
    """An attack that would run 10 s, and says when it ended (cancelled, here)."""
    try:
        await asyncio.sleep(10)
    finally:
        ended.set()


async def test_an_attack_ends_as_soon_as_its_verdict_is_decided():
    flags = {"decided": False}
    ended = asyncio.Event()

    async def decide_soon() -> None:
        await asyncio.sleep(0.1)
        flags["decided"] = True

    deciding = asyncio.ensure_future(decide_soon())
    started = asyncio.get_running_loop().time()
    await attacks._until_done_or_decided(
        asyncio.ensure_future(_endless_attack(ended)), lambda: flags["decided"], poll=0.01
    )
    await deciding
    assert ended.is_set() and asyncio.get_running_loop().time() - started < 1.0


async def test_an_attack_not_decided_runs_to_its_end_and_its_failure_propagates():
    async def attack() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("attack broke")

    with pytest.raises(RuntimeError, match="attack broke"):
        await attacks._until_done_or_decided(asyncio.ensure_future(attack()), lambda: False, poll=0.01)


async def test_an_attack_whose_wait_is_cancelled_is_cancelled_too():
    ended = asyncio.Event()
    attack = asyncio.ensure_future(_endless_attack(ended))
    waiting = asyncio.ensure_future(attacks._until_done_or_decided(attack, None, poll=0.01))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert ended.is_set()
