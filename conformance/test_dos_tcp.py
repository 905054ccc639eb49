"""Denial-of-service scenarios against a worker: the TCP request plane, the call-home stream, body decoding.

Each scenario is an attack bounded in time and bytes, on loopback, with a
legitimate caller alongside; the verdict comes from measurements
(``fixtures.dos.budget``): the worker's resident memory, how long the
legitimate requests took, whether the attacking connection was closed, and
whether descriptors came back.  Each bound is a named constant with its
reason.  Attacks are scaled so that a worker without the protection is
clearly over the bound (a 32 MiB partial frame held per connection, a
12-fold decoded body held while the caller does not read) and a protected
one clearly under it.

Deadlines the suite cannot wait out at their defaults are handed to the
implementation as settings (``CONFORMANCE_*`` deadlines in ``fixtures/adapters/protocol.py``);
an implementation without such a setting fails those requirements (SHOULD).

The four scenarios that sit out a deadline or a window (the pipeline, the trickled frame, the idle connections, the
admission hog: ``AT_ONCE``) are made at once by the first of their tests to run, each on a worker of its own
(``fixtures.dos.at_once``); each test judges only its own scenario's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import pytest

from fixtures.adapters.protocol import DEADLINE_ENV
from fixtures.dos import attacks, bombs
from fixtures.dos.at_once import Scenario, ScenariosAtOnce
from fixtures.dos.budget import (
    MIB,
    LegitLatencies,
    PeakRss,
    echo_call,
    legit_calls_for,
    legit_during,
    settle,
    tree_open_fds,
)
from fixtures.dos.limits import LimitInForce, PartialFrameAttack
from fixtures.judge.codecs import PayloadCodec
from fixtures.probes.wire_client import RawRequestConnection, WireClient
from fixtures.roles import WorkerOnEveryPlane, WorkerUnderTest

pytestmark = [pytest.mark.robustness, pytest.mark.timeout(60)]

WorkerFactory = Callable[..., Awaitable[WorkerUnderTest]]

# A legitimate request's latency while an attack runs. The target is a p99 of 500 ms on a quiet
# machine; the suite runs on shared 2-core machines next to the attacker itself, so it allows twice that.
LEGIT_P99_BOUND_S = 1.0
# Descriptors the worker may still hold once the attackers are gone (logs, timers, a pooled connection).
FD_SLACK = 8
# How long the worker gets to give descriptors back after the attackers leave.
FD_SETTLE_S = 5.0
# How late after its deadline a request connection may be closed: the check runs on a timer, on a loaded machine.
# Measured (the reference, 2-core machine, a CPU hog on one core, load 5-11, 2026-11-27, eight runs): a trickled frame
# closed at most 75 ms after its deadline, an idle connection 26 ms; a second is over ten times the latest (it was 2 s,
# which every worker without these deadlines made the suite sit out).
CLOSE_SLACK_S = 1.0
# ... and a stalled call-home, seen ended through /proc (polled every 50 ms) while the worker still runs the other
# streams and the legitimate calls: at most 1.1 s after its write deadline in the same runs (0.1-0.7 s in most).
# Twice that: past this bound a stream /proc still shows established is the verdict.
CALLHOME_CLOSE_SLACK_S = 2.0

# Deadlines handed to the implementation, short so that the scenarios stay fast.  The frame read deadline is the
# longest of them: the pipeline scenario must tell a deadline per frame (each frame here is whole within a fifth
# of it) from one run from the first frame (cut halfway through the pipeline), on the suite's own timers.
FRAME_READ_TIMEOUT_S = 0.5
# The idle and call-home write deadlines have no legitimate traffic to outlast on their workers (each scenario starts
# its own; a legitimate call's request is one write, its echo stream fits the socket buffers): a quarter second,
# far above the milliseconds a legitimate request or echo takes, and the suite's clock granularity.
IDLE_TIMEOUT_S = 0.25
CALLHOME_WRITE_TIMEOUT_S = 0.25
# The trickled frame and the pipeline each run on a worker of their own with the frame read deadline, at once (AT_ONCE).
FRAME_DEADLINE_ENV = {DEADLINE_ENV["tcp_frame_read"]: str(FRAME_READ_TIMEOUT_S)}

# Partial frames: each attacker announces a frame as large as one connection may hold and sends three quarters of
# it, then idles, on enough connections to offer 2.25 x the server-wide budget for incomplete frames; the bound is
# 1.5 x that budget (fixtures.dos.limits.PartialFrameAttack). The budgets are handed to the worker (32 MiB, 16 MiB
# a connection: 6 x 12 MiB offered, bound 48 MiB); at the reference's defaults, the target: 12 x 24 MiB,
# bound 192 MiB, below 256 MiB over the baseline.

# Decode amplification: msgpack array32 of nil, one byte per element, each a Python reference of 8 bytes
# (8-12x with the list's own overhead). Sent one after another to an echo whose caller never reads. TCP
# only: NATS carries 1 MiB by default, whose echo the socket buffers absorb, so nothing stays held.
DECODE_REQUESTS = 3
# The bomb's size: what decides the verdict is the ratio of what a worker holds to the bytes it received (the
# bound below is a multiple of them), not the absolute size, so the body is only as large as the bound needs
# to stand clear of a Python worker's memory noise (a few MiB: the allocator, the legitimate calls' buffers).
# 31 MiB bodies (the 32 MiB frame limit) cost an unbounded worker 7-14 s of decoding each, and 6 s of the suite's
# own CPU to build and send; 8 MiB decode to ~70 MiB each.
DECODE_BODY_BYTES = 8 * MIB
# Received bytes need holding only while a request is received and parsed (a frame buffer, its payload, the
# body: a few copies of one body at once; the reference peaks at 8-14 MiB for these bodies): bound at 8 bodies of
# 8 MiB. A worker that decodes 8 MiB of nil into a list holds about 70 MiB per request, and three at once here
# (measured: the reference with its decode guard off grows 265 MiB).
DECODE_RSS_BOUND = 64 * MIB
# After the last request, memory is sampled until every call-home has sent its prologue (the body is decoded by
# then and its cost held while the caller stalls; attacks.decode_bombs), at most this long.
DECODE_HOLD_S = 1.5
# The other amplifying shapes (fixtures.dos.bombs): sized so that a worker decoding one whole holds about 100 MiB
# of Python objects (a 64-byte empty dict per byte of msgpack, a 184-byte one-key dict per 4 or 8 bytes, a dict
# per 3 bytes of JSON); a bounded worker holds a few copies of their bytes (1.5-4 MiB each).
AMPLIFY_SIZES = {
    "msgpack-empty-maps": 3 * MIB // 2,
    "msgpack-one-key-maps": 2 * MIB,
    "json-empty-objects": 4 * MIB,
    "json-one-key-objects": 4 * MIB,
}
AMPLIFY_REQUESTS = 2
# Measured: the reference grows 0-16 MiB; with its decode guard off, 107-116 MiB (two bodies sent, one held at a
# time): the bound, 12 x the largest body, stands 30 MiB clear of the first and 59 MiB of the second.
AMPLIFY_RSS_BOUND = 48 * MIB
# Deep and declared bodies are a few hundred KiB at most: what they threaten is the worker's life (a stack
# overflow, an allocation of gigabytes), so each is followed by a legitimate call that must be answered. They
# need no worker of their own (the shared ``impl_worker``): nothing a passing test leaves in a worker can keep it
# alive through a bomb that kills it, nor hide gigabytes, and one that does not pass retires the worker it used.
BOMB_CALL_TIMEOUT_S = 5.0
# Memory while they are sent: what threatens is an allocation of gigabytes, whatever the bodies' few hundred KiB.
SURVIVAL_RSS_BOUND = 160 * MIB
# ... and answered within this of the bomb's sending, whichever is later: a worker's time on a bomb (its ACK, its
# call-home, the stream) and the legitimate call's. The bomb's answer is waited for only as long as it can still come
# (attacks.bomb_answer: a call-home not there by NOT_RUN_WINDOW_S never comes), so the legitimate call keeps what that
# no longer waits: a worker that takes the same time on a bomb as when the suite sat out 5 s is judged the same.
BOMB_SERVED_WITHIN_S = attacks.BOMB_ANSWER_WAIT_S + BOMB_CALL_TIMEOUT_S

# Admission: a pool of 8 running slots and a queue of 32 (Dynamo's own settings); one connection pipelines
# more slow requests than both hold together.
POOL, QUEUE = 8, 32
HOG_REQUESTS = 60
HOG_STREAM = {"interval": 0.25, "count": 40}  # 10 s per request: longer than the scenario
# How long legitimate calls are made while the hog's requests hold what they were admitted to: those run 10 s,
# so every call in the window meets the same admission state; the window is for a few calls' latencies (at
# least three are made however long they take; some eight in half a second).
FAIR_PROBE_S = 0.5
# A legitimate call in that window slower than LEGIT_P99_BOUND_S fails the verdict however long it then takes (the
# window makes far fewer than 100 calls, so the p99 is the slowest): it is given up at the bound, not after the 5 s
# of the other scenarios (a worker whose slots the hog holds ACKs it and never answers), and the window ends there
# (legit_calls_for: the first failure decides).
FAIR_CALL_TIMEOUT_S = LEGIT_P99_BOUND_S

# One connection pipelines this many small requests, each write ending halfway through the next frame, one
# write per interval: the connection is mid-frame for 1 s, twice the frame read deadline (a deadline run from the
# first frame cuts it at 0.5 s, with half a second to spare for a timer on a loaded machine), each frame complete
# within two intervals of its first byte, 5 x within its own deadline.
PIPELINED_FRAMES = 20
PIPELINE_INTERVAL_S = FRAME_READ_TIMEOUT_S / 10

TRICKLERS = 20  # connections trickling a frame ...
TRICKLE_INTERVAL_S = 0.1  # ... one byte per 100 ms: never idle, never done
IDLERS = 50  # connections that send nothing
# Items per stalled stream, of STALLED_ITEM_BYTES each: 40 MB, far more than the socket buffers hold. 10 kB items
# rather than 1 kB: the same bytes in a tenth of the frames, each of which costs the worker's handler and the suite's
# reader (reading what a worker still feeds for STALLED_READ_S) a Python object or two.
STALLED_ITEMS = 4_000
STALLED_ITEM_BYTES = 10_000
# Reading a stalled stream again, once the worker ended it or the bound passed: what the kernel holds (a few MB)
# comes at once, then the end; a stream the worker still feeds is read this long, and then counted as going on.
# Streams the worker was seen ending (attacks.streams_ended_by_worker) end the read at their end, so it costs nothing
# to allow them much (measured: the reference's four are read and judged in 0.1-1.6 s, load 5-11, a CPU hog on one
# core: the reading is CPU, a few MB of frames parsed in Python, not waiting).
STALLED_READ_S = 3.0
# Once the bound passed with a stream whose two ends /proc shows still established (the worker has not ended it: the
# verdict), the read only gathers the figures of the message (items so far): a quarter second.  Sitting out
# STALLED_READ_S there was the cost of every worker without the deadline.  Where /proc shows neither answer (a socket
# it does not list), the read decides, and is given STALLED_READ_S.
STILL_FED_READ_S = 0.25


def _probe_calls(wire_client: WireClient, worker: WorkerUnderTest) -> Callable[[], Awaitable[None]]:
    return echo_call(wire_client, worker.record("echo"), timeout=5.0)


def _figures(scenario: str, **figures: object) -> None:
    """The scenario's measurements, on stdout (``pytest -s``): the verdict's numbers, whichever way it went."""
    print(f"[{scenario}] " + ", ".join(f"{name}={value}" for name, value in figures.items()))


def _assert_served(seen: LegitLatencies, during: str) -> None:
    assert not seen.failures, f"legitimate requests failed during {during}: {seen.summary()}"
    assert seen.p99 <= LEGIT_P99_BOUND_S, f"legitimate requests too slow during {during}: {seen.summary()}"


async def _fds_back(pid: int, baseline: int) -> None:
    after = await settle(lambda: tree_open_fds(pid), baseline + FD_SLACK, FD_SETTLE_S)
    assert after <= baseline + FD_SLACK, f"descriptors left behind: {after} open, {baseline} before the attack"


# --- incomplete frames ---------------------------------------------------------------------------


@pytest.mark.req("ROB-DOS-TCP-PARTIAL-FRAME")
@pytest.mark.planes("tcp")
async def test_partial_frames_do_not_take_the_workers_memory(
    fresh_worker: WorkerUnderTest, wire_client: WireClient, dos_limits: Callable[[str], LimitInForce]
):
    worker = fresh_worker
    pid = worker.adapter.pid
    assert pid is not None
    record = worker.record("echo")
    fds_before = tree_open_fds(pid)
    budget, per_connection = dos_limits("tcp_buffer_budget"), dos_limits("tcp_connection_buffer_limit")
    sized = PartialFrameAttack.sized(budget, per_connection)
    held = attacks.Attack()
    try:
        with PeakRss(pid) as memory:
            over = memory.over(sized.rss_bound)  # the verdict, once decided: the attack and the calls end there
            attack = attacks.partial_frames(
                record,
                connections=sized.connections,
                send=sized.send,
                declared=sized.declared,
                layout=wire_client.layout,
                decided=over,
            )
            held, seen = await legit_during(attack, _probe_calls(wire_client, worker), decided=over)
    finally:
        await held.close()
    in_force = f"{budget.describe()}; {per_connection.describe()}"
    _figures(
        "partial-frame",
        rss_growth_mib=memory.growth // MIB,
        sent_mib=held.sent // MIB,
        legit=seen.summary(),
        limits=in_force,
    )
    assert memory.growth <= sized.rss_bound, (
        f"worker memory grew by {memory.growth / MIB:.0f} MiB (bound {sized.rss_bound / MIB:.0f}) "
        f"with {sized.connections} connections holding {held.sent / MIB:.0f} MiB of incomplete frames ({in_force})"
    )
    _assert_served(seen, "the partial-frame attack")
    await _fds_back(pid, fds_before)


@pytest.mark.req("ROB-DOS-TCP-FRAME-DEADLINE-EACH")
@pytest.mark.planes("tcp")
async def test_a_pipeline_of_frames_each_within_its_deadline_is_not_cut(dos_scenarios_at_once: ScenariosAtOnce):
    """A busy pooled connection is never idle between frames: its reads keep ending inside the next frame.

    A deadline that runs from the first frame of such a run, not from each frame's own first byte, cuts a
    healthy caller's connection as if it were trickling a single frame."""
    await dos_scenarios_at_once(AT_ONCE)


async def _pipeline(worker: WorkerUnderTest, wire_client: WireClient) -> None:
    record = worker.record("echo")
    requests = [{"pipelined": seq} for seq in range(PIPELINED_FRAMES)]
    probes = [wire_client.prepare(record, request) for request in requests]
    frames = [WireClient.tcp_frame(record, probe) for probe in probes]
    connection = await RawRequestConnection.to(record)
    held = attacks.Attack(probes=probes)
    try:
        cut_after = await attacks.pipelined_frames(connection, frames, PIPELINE_INTERVAL_S)
        acks = [await connection.read_ack(5.0) for _ in frames]
        transcripts = await asyncio.gather(
            *(attacks.echoed(probe, timeout=10.0) for probe, ack in zip(probes, acks, strict=True) if ack == b"")
        )
    finally:
        connection.close()
        await held.close()
    served = [values for values in transcripts if values is not None]
    _figures("frame-deadline-each", cut_after_s=cut_after, acks=len([a for a in acks if a == b""]), served=len(served))
    assert cut_after is None and not connection.closed_by_peer, (
        f"the worker closed a connection {cut_after or 0:.1f}s into a pipeline of {PIPELINED_FRAMES} frames, each "
        f"complete within {PIPELINE_INTERVAL_S * 2:.1f}s of its first byte (asked deadline {FRAME_READ_TIMEOUT_S}s); "
        f"ACKs: {[a[:80] if a else a for a in acks if a != b''][:3]}"
    )
    assert acks == [b""] * len(frames), f"not every pipelined request was acknowledged empty: {acks}"
    assert sorted(served, key=str) == sorted(([r] for r in requests), key=str), (
        f"{len(served)} of {len(requests)} pipelined requests were echoed back"
    )


@pytest.mark.req("ROB-DOS-TCP-FRAME-DEADLINE")
@pytest.mark.planes("tcp")
async def test_a_frame_trickled_byte_by_byte_is_cut_at_its_deadline(dos_scenarios_at_once: ScenariosAtOnce):
    await dos_scenarios_at_once(AT_ONCE)


async def _trickle(worker: WorkerUnderTest, wire_client: WireClient) -> None:
    pid = worker.adapter.pid
    assert pid is not None
    record = worker.record("echo")
    fds_before = tree_open_fds(pid)
    probe = wire_client.prepare(record, {"slow": "loris"})
    probe.session.cancel()  # the frame is never finished: no call-home
    frame = WireClient.tcp_frame(record, probe)
    give_up = FRAME_READ_TIMEOUT_S + CLOSE_SLACK_S
    trickling = [await RawRequestConnection.to(record) for _ in range(TRICKLERS)]
    try:
        closed_after, seen = await legit_during(
            asyncio.gather(*(attacks.trickled_frame(c, frame, TRICKLE_INTERVAL_S, give_up) for c in trickling)),
            _probe_calls(wire_client, worker),
        )
    finally:
        for connection in trickling:
            connection.close()
    still_open = sum(1 for t in closed_after if t is None)
    closes = [t for t in closed_after if t is not None]
    _figures(
        "frame-deadline",
        still_open=still_open,
        closed_after_s=f"{min(closes, default=0):.3f}-{max(closes, default=0):.3f}",
        legit=seen.summary(),
    )
    assert still_open == 0, (
        f"{still_open} of {len(trickling)} connections trickling one byte per {TRICKLE_INTERVAL_S * 1000:.0f} ms "
        f"were still open {give_up:.1f}s after their frame began (frame read deadline handed to the worker: "
        f"asked deadline {FRAME_READ_TIMEOUT_S}s)"
    )
    _assert_served(seen, "the trickled frames")
    await _fds_back(pid, fds_before)


@pytest.mark.req("ROB-DOS-TCP-IDLE")
@pytest.mark.planes("tcp")
async def test_idle_request_connections_are_closed(dos_scenarios_at_once: ScenariosAtOnce):
    await dos_scenarios_at_once(AT_ONCE)


async def _idle(worker: WorkerUnderTest, wire_client: WireClient) -> None:
    pid = worker.adapter.pid
    assert pid is not None
    record = worker.record("echo")
    fds_before = tree_open_fds(pid)
    idle = [await RawRequestConnection.to(record) for _ in range(IDLERS)]
    waiting = time.monotonic()
    try:
        closed = await asyncio.gather(*(c.wait_closed_by_peer(IDLE_TIMEOUT_S + CLOSE_SLACK_S) for c in idle))
    finally:
        for connection in idle:
            connection.close()
    _figures("idle", still_open=closed.count(False), waited_s=round(time.monotonic() - waiting, 3))
    assert all(closed), (
        f"{closed.count(False)} of {len(idle)} silent connections still open "
        f"{IDLE_TIMEOUT_S + CLOSE_SLACK_S:.1f}s later (asked idle timeout {IDLE_TIMEOUT_S}s)"
    )
    assert (await wire_client.call(record, {"after": "idle"})).values() == [{"after": "idle"}]
    await _fds_back(pid, fds_before)


# --- decoding --------------------------------------------------------------------------------------


@pytest.mark.req("ROB-DOS-DECODE-AMPLIFY")
@pytest.mark.planes("tcp")
async def test_a_decode_bomb_does_not_take_the_workers_memory(
    fresh_worker: WorkerUnderTest, wire_client: WireClient, request_size_limit: int
):
    worker = fresh_worker
    pid = worker.adapter.pid
    assert pid is not None
    record = worker.record("echo")
    body_size = min(request_size_limit, DECODE_BODY_BYTES + 64 * 1024) - 64 * 1024  # room for the envelope, headers
    body = attacks.nil_bomb(PayloadCodec.parse(record.request_plane_codec), body_size)
    held = attacks.Attack()
    try:
        with PeakRss(pid) as memory:
            over = memory.over(DECODE_RSS_BOUND)  # the verdict, once decided: the attack and the calls end there
            held, seen = await legit_during(
                attacks.decode_bombs(
                    wire_client, record, body, count=DECODE_REQUESTS, hold=DECODE_HOLD_S, decided=over
                ),
                _probe_calls(wire_client, worker),
                decided=over,
            )
    finally:
        await held.close()
    _figures("decode", rss_growth_mib=memory.growth // MIB, legit=seen.summary())
    assert memory.growth <= DECODE_RSS_BOUND, (
        f"worker memory grew by {memory.growth / MIB:.0f} MiB (bound {DECODE_RSS_BOUND / MIB:.0f}) for "
        f"{DECODE_REQUESTS} bodies of {len(body) / MIB:.1f} MiB that decode to a list entry per byte"
    )
    _assert_served(seen, "the decode bombs")


@pytest.mark.req("ROB-DOS-DECODE-AMPLIFY")
@pytest.mark.planes("tcp")
@pytest.mark.parametrize("shape", bombs.AMPLIFYING)
async def test_decode_bombs_of_small_containers_do_not_take_the_workers_memory(
    fresh_worker: WorkerUnderTest, wire_client: WireClient, shape: str
):
    """The one-byte-element bomb above is one shape of the class: containers amplify further (empty maps, maps of
    one short key), in msgpack and in JSON, which every worker accepts (CODEC-JSON)."""
    worker = fresh_worker
    pid = worker.adapter.pid
    assert pid is not None
    record = worker.record("echo")
    bomb = bombs.amplifying(shape, AMPLIFY_SIZES[shape])
    _msgpack_advertised(record.request_plane_codec, bomb)
    held = attacks.Attack()
    try:
        with PeakRss(pid) as memory:
            over = memory.over(AMPLIFY_RSS_BOUND)  # the verdict, once decided: the attack and the calls end there
            held, seen = await legit_during(
                attacks.decode_bombs(
                    wire_client,
                    record,
                    bomb.body,
                    count=AMPLIFY_REQUESTS,
                    hold=DECODE_HOLD_S,
                    codec=bomb.codec,
                    decided=over,
                ),
                _probe_calls(wire_client, worker),
                decided=over,
            )
    finally:
        await held.close()
    _figures(f"decode-{shape}", rss_growth_mib=memory.growth // MIB, acks=held.acks, legit=seen.summary())
    assert memory.growth <= AMPLIFY_RSS_BOUND, (
        f"worker memory grew by {memory.growth / MIB:.0f} MiB (bound {AMPLIFY_RSS_BOUND / MIB:.0f}) for "
        f"{AMPLIFY_REQUESTS} {bomb.codec.value} bodies of {len(bomb.body) / MIB:.1f} MiB, each {bomb.naive_cost}"
    )
    _assert_served(seen, f"the {shape} decode bombs")


@pytest.mark.req("ROB-DOS-DECODE-DEPTH")
@pytest.mark.planes("tcp", "nats", "http")
async def test_deeply_nested_bodies_leave_the_worker_serving(impl_worker_on_every_plane: WorkerOnEveryPlane[None]):
    """Made on every plane at once, each on the plane's shared worker: a worker that acknowledges a bomb and drops it
    makes its answer sit out NOT_RUN_WINDOW_S a bomb, once a run, not once per plane."""

    async def deep(worker: WorkerUnderTest, wire_client: WireClient) -> None:
        await _each_bomb_leaves_the_worker_serving(worker, wire_client, bombs.deep())

    await impl_worker_on_every_plane(deep, None)


@pytest.mark.req("ROB-DOS-DECODE-DECLARED")
@pytest.mark.planes("tcp", "nats", "http")
async def test_lengths_declared_beyond_the_body_leave_the_worker_serving(
    impl_worker_on_every_plane: WorkerOnEveryPlane[None],
):
    """Made on every plane at once, as the deeply nested bodies."""

    async def declared(worker: WorkerUnderTest, wire_client: WireClient) -> None:
        await _each_bomb_leaves_the_worker_serving(worker, wire_client, bombs.declared())

    await impl_worker_on_every_plane(declared, None)


def _msgpack_advertised(codec: str | None, bomb: bombs.Bomb) -> None:
    """A msgpack body is only a bomb for a worker that decodes msgpack (one that advertises it, CODEC-MSGPACK)."""
    if bomb.codec is PayloadCodec.MSGPACK and codec != "msgpack":
        pytest.skip(f"not applicable: the worker advertises {codec or 'no'} codec, so it decodes no msgpack body")


async def _each_bomb_leaves_the_worker_serving(
    worker: WorkerUnderTest, wire_client: WireClient, sent: list[bombs.Bomb]
) -> None:
    """Each bomb in turn, then a legitimate call that must be answered; memory bounded throughout."""
    pid = worker.adapter.pid
    assert pid is not None
    record = worker.record("echo")
    applicable = [b for b in sent if b.codec is PayloadCodec.JSON or record.request_plane_codec == "msgpack"]
    if not applicable:
        _msgpack_advertised(record.request_plane_codec, sent[0])
    outcomes: dict[str, str] = {}
    with PeakRss(pid) as memory:
        for bomb in applicable:
            sent_at = time.monotonic()
            outcomes[bomb.name] = await attacks.bomb_answer(wire_client, record, bomb.body, bomb.codec)
            within = max(BOMB_CALL_TIMEOUT_S, sent_at + BOMB_SERVED_WITHIN_S - time.monotonic())
            try:
                await _answered_unless_gone(worker, echo_call(wire_client, record, timeout=within)(), within)
            except Exception as exc:  # whatever the failure, the worker no longer serves: that is the verdict
                pytest.fail(
                    f"after a {bomb.codec.value} body of {len(bomb.body):,} bytes ({bomb.name}: {bomb.naive_cost}; "
                    f"answered: {outcomes[bomb.name]}), a legitimate request failed: {type(exc).__name__}: {exc}"
                )
    _figures("decode-survival", outcomes=outcomes, rss_growth_mib=memory.growth // MIB)
    assert memory.growth <= SURVIVAL_RSS_BOUND, (
        f"worker memory grew by {memory.growth / MIB:.0f} MiB (bound {SURVIVAL_RSS_BOUND / MIB:.0f}) for bodies of at "
        f"most {max(len(b.body) for b in applicable):,} bytes: {outcomes}"
    )


async def _answered_unless_gone(worker: WorkerUnderTest, call: Awaitable[None], within: float) -> None:
    """``call`` within ``within``, unless every process of the worker's adapter exits first: then it fails at once.

    Why: a worker that dies of a bomb after acknowledging the next legitimate call (Dynamo 1.6.1 and the
    declared-length bomb, 3 runs in 5 after the deep bombs) leaves that call waiting for a call-home that cannot come,
    and over NATS a request its dead subscription took: both ran out the whole bound, 10 s a plane, to the verdict
    the exit had already decided (a dead worker serves nothing).  A worker alive keeps the whole bound."""
    answered = asyncio.ensure_future(asyncio.wait_for(call, within))
    gone = asyncio.ensure_future(worker.adapter.gone())
    try:
        await asyncio.wait({answered, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not answered.done():
            raise AssertionError(f"the worker {gone.result()} before answering")
        answered.result()
    finally:
        for task in (answered, gone):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


# --- the call-home stream ---------------------------------------------------------------------------


@pytest.mark.req("ROB-DOS-CALLHOME-STALL")
@pytest.mark.planes("tcp", "nats")
async def test_a_caller_that_never_reads_loses_its_stream(impl_worker_on_every_plane: WorkerOnEveryPlane[None]):
    """Made on every plane at once (each on a worker of its own): a worker without the write deadline sits out its
    bound once."""
    await impl_worker_on_every_plane(_never_read, {DEADLINE_ENV["callhome_write"]: str(CALLHOME_WRITE_TIMEOUT_S)})


async def _never_read(worker: WorkerUnderTest, wire_client: WireClient) -> None:
    pid = worker.adapter.pid
    assert pid is not None
    record = worker.record("stream")
    fds_before = tree_open_fds(pid)
    held, probes = await attacks.stalled_streams(
        wire_client, record, streams=4, count=STALLED_ITEMS, size=STALLED_ITEM_BYTES
    )
    try:
        wait = CALLHOME_WRITE_TIMEOUT_S + CALLHOME_CLOSE_SLACK_S
        # Until the worker has ended every stream (no need to sit out the bound then), or the bound.
        waiting = time.monotonic()

        async def ended_by_worker() -> tuple[bool, float]:
            return await attacks.streams_ended_by_worker(held, wait), time.monotonic() - waiting

        (ended, waited), seen = await legit_during(ended_by_worker(), _probe_calls(wire_client, worker))
        # Read what the kernel still holds, then the end; a stream still going ends the read at the timeout.
        reading = time.monotonic()
        still_fed = not ended and attacks.streams_seen_still_open(held)
        outcomes = await attacks.stream_ends(held, probes, STILL_FED_READ_S if still_fed else STALLED_READ_S)
        read = time.monotonic() - reading
    finally:
        await held.close()
    kept = [o for o in outcomes if o[0] or o[1] == "timeout"]
    _figures(
        f"callhome-stall {worker.plane}",
        outcomes=outcomes,
        waited_s=round(waited, 3),
        read_s=round(read, 3),
        legit=seen.summary(),
    )
    assert not kept, (
        f"{len(kept)} of {len(probes)} streams whose caller read nothing for {wait:.1f}s were still going "
        f"(asked write deadline {CALLHOME_WRITE_TIMEOUT_S}s): (sentinel, ended by, items) {kept}"
    )
    _assert_served(seen, "the stalled streams")
    await _fds_back(pid, fds_before)


# --- admission ----------------------------------------------------------------------------------------


@pytest.mark.req("ROB-DOS-ADMISSION-FAIR")
@pytest.mark.planes("tcp")
async def test_one_connection_cannot_take_every_admission_slot(dos_scenarios_at_once: ScenariosAtOnce):
    await dos_scenarios_at_once(AT_ONCE)


async def _admission(worker: WorkerUnderTest, wire_client: WireClient) -> None:
    held = await attacks.admission_hog(wire_client, worker.record("slow"), requests=HOG_REQUESTS, stream=HOG_STREAM)
    try:
        seen = await legit_calls_for(
            FAIR_PROBE_S,
            echo_call(wire_client, worker.record("echo"), timeout=FAIR_CALL_TIMEOUT_S),
            call_timeout=FAIR_CALL_TIMEOUT_S,
        )
    finally:
        await held.close()
    admitted = held.acks.count(b"")
    _figures("admission", hog_admitted=admitted, legit=seen.summary())
    _assert_served(seen, f"one connection's {HOG_REQUESTS} pipelined slow requests ({admitted} admitted)")


# The scenarios that sit out a deadline or a window on a worker of their own, made at once by the first of their tests
# to run, each on its own worker (fixtures.dos.at_once): one verdict per test, their waits sat out once a run.
AT_ONCE = {
    test_a_pipeline_of_frames_each_within_its_deadline_is_not_cut.__name__: Scenario(_pipeline, FRAME_DEADLINE_ENV),
    test_a_frame_trickled_byte_by_byte_is_cut_at_its_deadline.__name__: Scenario(_trickle, FRAME_DEADLINE_ENV),
    test_idle_request_connections_are_closed.__name__: Scenario(_idle, {DEADLINE_ENV["tcp_idle"]: str(IDLE_TIMEOUT_S)}),
    test_one_connection_cannot_take_every_admission_slot.__name__: Scenario(
        _admission,
        {"DYN_TCP_WORKER_POOL_SIZE": str(POOL), "DYN_TCP_WORK_QUEUE_SIZE": str(QUEUE)},
        endpoints=("echo", "slow"),
    ),
}
