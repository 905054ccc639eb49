"""Denial of service on the HTTP request plane (HTTP/1.1 and h2c), against any worker.

Each scenario runs one attack from a process of its own (``fixtures.dos.http_attacks``,
forked for it by the module's attacker process) at the worker's advertised URL
while a legitimate caller makes small ``echo`` calls, one after another, from
the suite's own loop.  The verdict rests on
measurements: the worker's resident memory (its adapter's process tree,
sampled from a thread), the legitimate calls' latencies and failures, what the
worker did to the attacking connection (closed it, reset its streams, sent
GOAWAY), and the descriptors left once the attack is over.  Attacks are
bounded in time and bytes, stay on loopback, and are sized so that a worker
without the defence clearly fails (the figures are in the README).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from fixtures.adapters.protocol import DEADLINE_ENV
from fixtures.dos import http_attacks
from fixtures.dos.budget import LegitLatencies, PeakRss, echo_call, legit_during, settle, tree_open_fds
from fixtures.dos.limits import LimitInForce, h2_body_rss_bound
from fixtures.probes.http_wire import Http1Wire
from fixtures.probes.wire_client import WireClient
from fixtures.roles import WorkerUnderTest

StartWorker = Callable[..., Awaitable[WorkerUnderTest]]

pytestmark = [pytest.mark.planes("http"), pytest.mark.robustness]

MIB = 1024 * 1024
# Issue 13's targets for every scenario: a legitimate request's p99 within 500 ms, worker memory within
# baseline + 256 MiB.  The legitimate calls here are full echo round trips (POST, 202, call-home stream).
LEGIT_P99_BOUND_S = 0.5
LEGIT_CALL_TIMEOUT_S = 3.0  # a call slower than this is counted as a failure, not a latency
# Bodies that never end: a worker that bounds what it buffers (per connection and in total, reopening windows
# only within that) holds its budget at most; one that does not holds whatever the attacker pushes in 4 s, which
# for a Python worker without a budget is 80-400 MiB (a faster one reads, and holds, more). The bound is twice the
# server-wide body budget in force (fixtures.dos.limits.h2_body_rss_bound): handed 16 MiB (2 MiB a connection),
# 32 MiB; at the reference's 64 MiB default, 128 MiB, half issue 13's 256 MiB.
# A connection given no send window for this long is held back by the worker, and its attack ends there instead of
# lasting its 4 s (http_attacks.h2_open_bodies ``held_quiet``): a worker that takes a connection's DATA grants its
# window back (WINDOW_UPDATE) within milliseconds; one that granted none for half a second, with every body
# incomplete, holds the connection back (the reference: at its per-connection budget in ~0.3 s). An unbounded worker
# keeps reopening windows and is attacked for the whole 4 s: measured on Dynamo 0.7.1-1.2.1 (load 8-10), 245-444 MiB
# taken, memory +250-452 MiB, with one or two of its four connections held back for a second at some point; the
# verdict (bound 32 MiB) stands far from what a shorter attack would change.  It was a second, sat out by every
# worker that keeps its budget.
H2_BODY_HELD_QUIET_S = 0.5
# One request of 1.9 MB in tiny chunks: its body is < 2 MiB; 16 times that is per-chunk overhead (a list or
# queue entry per chunk costs tens of bytes each: 1.9 million of them, 60-300 MB).
CHUNKS_RSS_GROWTH_BOUND = 32 * MIB
CHUNKS_ANSWER_BOUND_S = 4.0  # the chunked request is answered (any status) or its connection closed by then
# Deadlines a worker should enforce: a head must not take longer than this, nor a parked answer wait longer.
SLOWLORIS_CLOSE_BOUND_S = 6.0
ZERO_WINDOW_RESET_BOUND_S = 6.0
# ... and the deadlines handed to the worker of those two scenarios (CONFORMANCE_HTTP_*, fixtures/adapters/protocol.py),
# so that a worker with such a setting ends the attack in a quarter second instead of at its default; one without it
# is judged at its own deadline, against the same bounds.  A quarter second is far above what a legitimate call on
# their shared worker needs (its head is one write right after the connect, its answer fits an open window).
HTTP_HEADER_TIMEOUT_S = 0.25
HTTP_SEND_TIMEOUT_S = 0.25
# Both scenarios share one worker handed both deadlines (shared_worker_with_settings): neither deadline can end the
# other's attack (a slowloris connection has no answer to park, a parked answer's request head is whole), and
# neither leaves anything behind that the other's verdict could rest on (their connections are closed).
DEADLINES_ENV = {
    DEADLINE_ENV["http_header"]: str(HTTP_HEADER_TIMEOUT_S),
    DEADLINE_ENV["http_send"]: str(HTTP_SEND_TIMEOUT_S),
}
# Rapid reset and control floods: the worker must end the attacking connection while the attack goes on (for
# control frames, stopping reading a peer that does not read its acks is an answer too: hyper's).
FLOOD_SECONDS = 3.0
FLOOD_STALLED_S = 1.0  # "stopped reading": no burst of the flood taken during the attack's last second
FLOOD_RSS_GROWTH_BOUND = 64 * MIB  # acks owed to a peer that does not read are bounded, not queued
# CONTINUATION flood: one 16 KiB frame every 50 ms (so the worker reads each as it comes, and what was sent when it
# closed is what it took, give or take the frames of its reaction time: 12 frames, 600 ms, between a 64 KiB limit
# and the bound), for up to 3 s; the block must be cut off by 256 KiB.  hyper-h2's own cap (64 frames) comes later.
CONTINUATION_BLOCK_BOUND = 256 * 1024
CONTINUATION_OPTIONS = {"frame_bytes": 16_384, "interval": 0.05, "max_bytes": 2 * MIB, "duration": 3.0}
FD_SLACK = 8  # descriptors the worker may legitimately still hold (its own listeners, a closing call-home)
LEFTOVER_WAIT_S = 3.0  # how long "nothing left behind" may take after the attacker is gone


@dataclass
class Attacked:
    outcome: dict[str, Any]
    legit: LegitLatencies
    rss: PeakRss
    fds_before: int
    fds_after: int

    def describe(self) -> str:
        out = self.outcome
        return (
            f"{out['attack']}: {out['connections']} connections, {out['streams_opened']} streams, "
            f"{out['sent_bytes'] / MIB:.1f} MiB sent in {out['duration']:.1f} s; "
            f"worker RSS +{self.rss.growth / MIB:.0f} MiB (peak {self.rss.peak / MIB:.0f} MiB); "
            f"legit: {self.legit.summary()}; GOAWAY codes "
            f"{sorted(set(out['goaway_codes']))}, {len(out['closed_at'])} closes, {out['resets_received']} resets, "
            f"last burst taken at {out['last_accepted_at']:.1f} s; "
            f"header block taken {out['taken_bytes'] / 1024:.0f} KiB; held back {out.get('held_back', 0)}; "
            f"fds {self.fds_before} -> {self.fds_after}; notes {out['notes'][:3]}"
        )

    def assert_service_kept(self) -> None:
        assert not self.legit.failures, f"legitimate calls failed during the attack: {self.describe()}"
        assert self.legit.p99 <= LEGIT_P99_BOUND_S, f"legitimate p99 over {LEGIT_P99_BOUND_S}s: {self.describe()}"

    def assert_nothing_left(self) -> None:
        assert self.fds_after <= self.fds_before + FD_SLACK, f"descriptors left behind: {self.describe()}"


# Attacks judged on memory take a ``fresh_worker`` (``fixtures.dos.fresh_workers``).  Those judged on what the worker
# did to the attacker alone (rapid reset, CONTINUATION flood, framing) use the shared ``impl_worker``: a worker that
# does not pass retires it, and the descriptors they count are counted from the attack's start.


@pytest_asyncio.fixture(scope="module")
async def attacker() -> AsyncIterator[http_attacks.Attacker]:
    """One attacker process for the module, forking a child per attack (``http_attacks.Attacker``): each attack
    runs in a process of its own without starting an interpreter and importing hyper-h2 for it."""
    process = http_attacks.Attacker()
    yield process
    await process.close()


async def _run_attack(
    attacker: http_attacks.Attacker, name: str, url: str, options: dict[str, Any], budget_s: float
) -> dict[str, Any]:
    """One attack in a process of its own (bounded); its outcome as the checks read it."""
    try:
        return asdict(await attacker.run(name, url, options, budget_s))
    except RuntimeError as exc:  # the attacker failed or overran: the scenario was not run as stated
        raise AssertionError(str(exc)) from None


async def _attack(
    worker: WorkerUnderTest,
    wire_client: WireClient,
    attacker: http_attacks.Attacker,
    name: str,
    options: dict[str, Any],
    *,
    url: str | None = None,
) -> Attacked:
    record = worker.record("echo")
    pid = worker.adapter.pid
    assert pid is not None
    try:  # warm: the first call sets up what later ones reuse
        await echo_call(wire_client, record, LEGIT_CALL_TIMEOUT_S)()
    except Exception as exc:
        raise AssertionError(f"the worker did not serve a plain call before the attack: {exc!r}") from exc
    fds_before = tree_open_fds(pid)
    attack = _run_attack(attacker, name, url or record.transport_address, options, float(options.get("duration", 5.0)))
    with PeakRss(pid) as rss:
        outcome, legit = await legit_during(
            attack, echo_call(wire_client, record, LEGIT_CALL_TIMEOUT_S), call_timeout=LEGIT_CALL_TIMEOUT_S
        )
    fds_after = await settle(lambda: tree_open_fds(pid), fds_before + FD_SLACK, LEFTOVER_WAIT_S)
    attacked = Attacked(outcome, legit, rss, fds_before, fds_after)
    print(attacked.describe())  # the figures behind the verdict, shown with -s or on failure
    return attacked


# --- h2 -----------------------------------------------------------------------------------------------


@pytest.mark.req("ROB-DOS-H2-BODY-BUDGET")
async def test_h2_bodies_that_never_end_do_not_exhaust_memory(
    fresh_worker: WorkerUnderTest,
    wire_client: WireClient,
    attacker: http_attacks.Attacker,
    dos_limits: Callable[[str], LimitInForce],
):
    # 4 connections x 250 streams x 1.9 MB offered (1.9 GB), for 4 s: an unbounded worker buffers what it can read.
    options = {
        "connections": 4,
        "streams": 250,
        "body_bytes": 1_900_000,
        "duration": 4.0,
        "held_quiet": H2_BODY_HELD_QUIET_S,
    }
    result = await _attack(fresh_worker, wire_client, attacker, "h2-open-bodies", options)
    outcome = result.outcome
    budget = dos_limits("http_body_budget")
    bound = h2_body_rss_bound(budget)
    # No pass without the attack delivered: either the worker held every connection back (no window, or closed),
    # or more than the bound went in; an attacker too slow to do either (a loaded machine) judges nothing.
    assert outcome["held_back"] == outcome["connections"] or outcome["sent_bytes"] > bound, (
        f"attack not delivered: {outcome['held_back']} of {outcome['connections']} connections held back by the "
        f"worker and {outcome['sent_bytes'] / MIB:.0f} MiB sent, under the bound: {result.describe()}"
    )
    assert result.rss.growth <= bound, (
        f"worker memory over +{bound // MIB} MiB ({budget.describe()}): {result.describe()}"
    )
    result.assert_service_kept()
    result.assert_nothing_left()


@pytest.mark.req("ROB-DOS-H2-RAPID-RESET")
async def test_h2_rapid_reset_is_cut_short(
    impl_worker: WorkerUnderTest, wire_client: WireClient, attacker: http_attacks.Attacker
):
    result = await _attack(impl_worker, wire_client, attacker, "h2-rapid-reset", {"duration": FLOOD_SECONDS})
    outcome = result.outcome
    assert outcome["closed_at"] and min(outcome["closed_at"]) < FLOOD_SECONDS, (
        f"the worker let a connection reset streams for {FLOOD_SECONDS}s: {result.describe()}"
    )
    result.assert_service_kept()
    result.assert_nothing_left()


@pytest.mark.req("ROB-DOS-H2-CONTROL-FLOOD")
async def test_h2_ping_and_settings_floods_are_cut_short(
    fresh_worker: WorkerUnderTest, wire_client: WireClient, attacker: http_attacks.Attacker
):
    options = {"connections": 2, "duration": FLOOD_SECONDS}
    result = await _attack(fresh_worker, wire_client, attacker, "h2-control-flood", options)
    outcome = result.outcome
    stalled = outcome["last_accepted_at"] <= FLOOD_SECONDS - FLOOD_STALLED_S
    assert len(outcome["closed_at"]) == options["connections"] or stalled, (
        f"flooding connections neither closed nor throttled: {result.describe()}"
    )
    assert result.rss.growth <= FLOOD_RSS_GROWTH_BOUND, (
        f"worker memory over +{FLOOD_RSS_GROWTH_BOUND // MIB} MiB (acks queued for a peer that does not read): "
        f"{result.describe()}"
    )
    result.assert_service_kept()
    result.assert_nothing_left()


@pytest.mark.req("ROB-DOS-H2-CONTINUATION")
async def test_h2_a_header_block_that_never_ends_is_cut_off(
    impl_worker: WorkerUnderTest, wire_client: WireClient, attacker: http_attacks.Attacker
):
    result = await _attack(impl_worker, wire_client, attacker, "h2-continuation-flood", dict(CONTINUATION_OPTIONS))
    outcome = result.outcome
    taken = outcome["taken_bytes"]
    assert outcome["closed_at"] and taken <= CONTINUATION_BLOCK_BOUND, (
        f"a header block without END_HEADERS was taken up to {taken} bytes "
        f"({'then the connection was closed' if outcome['closed_at'] else 'and the connection kept'}), "
        f"bound {CONTINUATION_BLOCK_BOUND}: {result.describe()}"
    )
    result.assert_service_kept()
    result.assert_nothing_left()


@pytest.mark.req("ROB-DOS-H2-ZERO-WINDOW")
async def test_h2_answers_parked_behind_a_zero_window_are_given_up(
    shared_worker_with_settings: StartWorker, wire_client: WireClient, attacker: http_attacks.Attacker
):
    worker = await shared_worker_with_settings(env=DEADLINES_ENV)
    options = {"connections": 10, "streams": 100, "duration": ZERO_WINDOW_RESET_BOUND_S}
    result = await _attack(worker, wire_client, attacker, "h2-zero-window", options)
    outcome = result.outcome
    given_up = outcome["resets_received"] + 100 * len(outcome["closed_at"])  # a closed connection ends its streams
    assert given_up >= outcome["streams_opened"] > 0, (
        f"answers still parked after {ZERO_WINDOW_RESET_BOUND_S}s: {result.describe()}"
    )
    result.assert_service_kept()
    result.assert_nothing_left()


# --- HTTP/1.1 -----------------------------------------------------------------------------------------


@pytest.mark.req("ROB-DOS-H1-SLOWLORIS")
async def test_h1_slowloris_connections_are_closed(
    shared_worker_with_settings: StartWorker, wire_client: WireClient, attacker: http_attacks.Attacker
):
    worker = await shared_worker_with_settings(env=DEADLINES_ENV)
    options = {"connections": 300, "interval": 0.5, "duration": SLOWLORIS_CLOSE_BOUND_S}
    result = await _attack(worker, wire_client, attacker, "h1-slowloris", options)
    outcome = result.outcome
    assert outcome["connections"] == options["connections"], f"could not open every connection: {result.describe()}"
    assert len(outcome["closed_at"]) == outcome["connections"], (
        f"heads dribbled for {SLOWLORIS_CLOSE_BOUND_S}s and connections still open: {result.describe()}"
    )
    result.assert_service_kept()
    result.assert_nothing_left()


@pytest.mark.req("ROB-DOS-H1-CHUNKS")
async def test_h1_a_body_of_tiny_chunks_costs_no_more_than_its_bytes(
    fresh_worker: WorkerUnderTest, wire_client: WireClient, attacker: http_attacks.Attacker
):
    options = {"chunks": 1_900_000, "wait": CHUNKS_ANSWER_BOUND_S, "duration": CHUNKS_ANSWER_BOUND_S}
    result = await _attack(fresh_worker, wire_client, attacker, "h1-tiny-chunks", options)
    assert result.rss.growth <= CHUNKS_RSS_GROWTH_BOUND, (
        f"worker memory over +{CHUNKS_RSS_GROWTH_BOUND // MIB} MiB for one 1.9 MB body: {result.describe()}"
    )
    assert result.outcome["statuses"] or result.outcome["notes"], f"no answer, no close: {result.describe()}"
    result.assert_service_kept()
    result.assert_nothing_left()


def _raw(path: str, authority: str, lines: list[str], body: bytes, newline: bytes = b"\r\n") -> bytes:
    head = [f"POST {path} HTTP/1.1", f"host: {authority}", *lines]
    return newline.join(line.encode() for line in head) + newline + newline + body


async def _answers_until_close(connection: Http1Wire, timeout: float) -> tuple[list[int], bool]:
    """Statuses read until the worker closes (True) or ``timeout`` passes (False)."""
    statuses: list[int] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while True:
                try:
                    statuses.append((await connection.read_answer(timeout)).status)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return statuses, True
    return statuses, False


@pytest.mark.req("ROB-DOS-H1-CL-TE")
async def test_h1_content_length_with_transfer_encoding_ends_the_connection(
    impl_worker: WorkerUnderTest, wire_client: WireClient
):
    record = impl_worker.record("echo")
    path = urlsplit(record.transport_address).path
    connection = await Http1Wire.open(record.transport_address)
    try:
        smuggled = _raw(path, connection.authority, ["content-length: 0"], b"")  # what a TE-reading hop would see
        chunked = b"%x\r\n" % len(smuggled) + smuggled + b"\r\n0\r\n\r\n"
        both = _raw(path, connection.authority, ["content-length: 5", "transfer-encoding: chunked"], chunked)
        await connection.send(both + _raw(path, connection.authority, ["content-length: 0"], b""))
        statuses, closed = await _answers_until_close(connection, 3.0)
    finally:
        connection.close()
    assert closed, f"the connection stayed open after a request with both framings (answers {statuses})"
    assert len(statuses) <= 1, f"a request pipelined after one with both framings was served: {statuses}"
    assert all(status >= 400 for status in statuses), f"a request with both framings was accepted: {statuses}"


@pytest.mark.req("ROB-DOS-H1-BARE-LF")
async def test_h1_bare_lf_line_endings_are_refused(impl_worker: WorkerUnderTest, wire_client: WireClient):
    record = impl_worker.record("echo")
    path = urlsplit(record.transport_address).path
    connection = await Http1Wire.open(record.transport_address)
    try:
        await connection.send(_raw(path, connection.authority, ["content-length: 0"], b"", newline=b"\n"))
        statuses, closed = await _answers_until_close(connection, 3.0)
    finally:
        connection.close()
    assert closed, f"the connection stayed open after a head with bare LF line endings (answers {statuses})"
    assert all(status >= 400 for status in statuses), f"a head with bare LF line endings was accepted: {statuses}"
