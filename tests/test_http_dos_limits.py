"""The HTTP plane's denial-of-service limits, driven without sockets.

The budgets and deadlines (``reference_impl.transport.http.budgets``) with a
fake clock; the connection drivers fed bytes through a recording transport
(``tests.fuzz.http_targets``), their answers parsed back: h2 windows withheld
beyond the connection's budget and reopened as bodies go, REFUSED_STREAM past
MAX_CONCURRENT_STREAMS, GOAWAY ENHANCE_YOUR_CALM for reset and PING floods,
deadlines as the server's sweep sees them, and HTTP/1.1's framing checks.
"""

from __future__ import annotations

import asyncio
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hpack
import pytest
from hyperframe.frame import GoAwayFrame, HeadersFrame, RstStreamFrame, WindowUpdateFrame

from reference_impl.config import ConfigError
from reference_impl.transport.http import http2_server
from reference_impl.transport.http import server as server_module
from reference_impl.transport.http.budgets import ByteBudget, Deadline, DeadlineTimer, RateBudget
from reference_impl.transport.http.http1_server import Http1ServerSession
from reference_impl.transport.http.http2_server import PREFACE, Http2ServerSession
from reference_impl.transport.http.http2_slices import FrameCounter
from reference_impl.transport.http.limits import HttpGuards
from reference_impl.transport.http.plane import HTTP
from reference_impl.transport.http.server import HttpRequestServer, _HttpConnection
from reference_impl.worker import WorkerConfig
from tests.fuzz.http_targets import RecordingSink, RecordingTransport, h2_frames

ENHANCE_YOUR_CALM = int(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- budgets -------------------------------------------------------------------------------------


def test_byte_budget_counts_and_refuses_beyond_its_limit() -> None:
    budget = ByteBudget(10)
    assert budget.fits(10) and not budget.fits(11)
    budget.take(8)
    assert not budget.fits(3) and not budget.exhausted
    budget.take(2)
    assert budget.exhausted
    budget.release(10)
    assert budget.used == 0
    with pytest.raises(AssertionError):
        budget.release(1)
    unlimited = ByteBudget(None)
    unlimited.take(1 << 40)
    assert unlimited.fits(1 << 40) and not unlimited.exhausted


def test_rate_budget_allows_a_burst_then_its_rate() -> None:
    clock = FakeClock()
    budget = RateBudget(burst=5, rate=2.0, clock=clock)
    assert all(budget.spend() for _ in range(5))
    assert not budget.spend()
    clock.now += 1.0  # two more tokens
    assert budget.spend() and budget.spend() and not budget.spend()
    clock.now += 100.0  # never more than the burst
    assert budget.spend(5) and not budget.spend()
    assert not RateBudget(burst=3, rate=0.0, clock=clock).spend(4)


def test_deadline_arms_clears_and_expires() -> None:
    deadline = Deadline()
    assert not deadline.expired(1e9)
    deadline.arm(10.0, 5.0)
    assert not deadline.expired(14.9) and deadline.expired(15.0)
    deadline.arm(10.0, None)  # the setting is off
    assert not deadline.expired(1e9)


class Owner:
    """Records when the timer told it to look at its deadlines."""

    def __init__(self) -> None:
        self.checked: list[float] = []

    def check_deadlines(self, now: float) -> None:
        self.checked.append(now)


def test_deadline_timer_fires_each_owner_once_when_its_deadlines_pass() -> None:
    timer = DeadlineTimer(clock=FakeClock())
    first, second = Owner(), Owner()
    deadlines = [Deadline() for _ in range(3)]
    for deadline in deadlines:
        deadline.arm(100.0, 5.0)
        timer.watch(deadline, first)
    late = Deadline()
    late.arm(100.0, 7.0)
    timer.watch(late, second)
    timer.fire(104.99)
    assert first.checked == [] and second.checked == []
    timer.fire(105.01)  # deadlines are rounded up to the 10 ms tick: three due at once, one check
    assert first.checked == [105.01] and second.checked == []
    timer.fire(107.01)
    assert second.checked == [107.01] and len(timer) == 0


def test_deadline_timer_follows_a_deadline_moved_later_and_forgets_a_cleared_one() -> None:
    timer = DeadlineTimer(clock=FakeClock())
    owner = Owner()
    moved, cleared = Deadline(), Deadline()
    moved.arm(100.0, 1.0)
    timer.watch(moved, owner)
    moved.arm(100.5, 1.0)  # re-armed later (more DATA came): the queued entry is not duplicated
    timer.watch(moved, owner)
    cleared.arm(100.0, 1.0)
    timer.watch(cleared, owner)
    cleared.clear()
    assert len(timer) == 1 + 1
    timer.fire(101.2)  # moved: queued again for 101.5, nobody told; cleared: dropped
    assert owner.checked == [] and len(timer) == 1
    timer.fire(101.5)
    assert owner.checked == [101.5] and len(timer) == 0


def test_deadline_timer_never_queues_a_deadline_before_it_passes() -> None:
    """Float rounding to the tick must not leave an entry due before its deadline (it would be re-queued forever)."""
    timer = DeadlineTimer(clock=FakeClock())
    owner = Owner()
    for hundredths in range(10_000, 10_300):
        deadline = Deadline()
        deadline.at = hundredths * 0.01 + 1e-12
        timer.watch(deadline, owner)
        assert deadline.queued_at is not None and deadline.queued_at >= deadline.at
    timer.fire(1e9)
    assert owner.checked == [1e9] and len(timer) == 0


def test_deadline_timer_leaves_far_deadlines_to_the_sweep_and_holds_owners_weakly() -> None:
    timer = DeadlineTimer(clock=FakeClock(), horizon=30.0)
    owner = Owner()
    far = Deadline()
    far.arm(100.0, 120.0)  # an idle timeout: the sweep's business
    timer.watch(far, owner)
    assert len(timer) == 0 and far.queued_at is None
    gone, near = Owner(), Deadline()
    near.arm(100.0, 1.0)
    timer.watch(near, gone)
    del gone  # its connection closed: the timer does not keep it, nor call it
    timer.fire(102.0)
    assert len(timer) == 0 and owner.checked == []


async def test_deadline_timer_closes_a_silent_connection_on_time_without_the_sweep() -> None:
    guards = HttpGuards(header_timeout=0.2, idle_timeout=60.0)  # the sweep would run every 1 s at most...
    server = HttpRequestServer(RecordingSink(None), guards=guards)
    await server.start()
    assert server._sweeper is not None
    server._sweeper.cancel()  # ...and here not at all: only the timer can close it
    try:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"POST /v1/rpc/echo HTTP/1.1\r\n")  # a head never finished
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 2.0) is not None  # EOF (or the 408) once closed
        assert 0.15 <= time.monotonic() - started < 0.6
        writer.close()
    finally:
        await server.close()


def test_guards_refuse_nonsense_and_workerconfig_reads_the_variables() -> None:
    with pytest.raises(ValueError, match="header_timeout"):
        HttpGuards(header_timeout=0)
    with pytest.raises(ValueError, match="h2_reset_burst"):
        HttpGuards(h2_reset_burst=0)
    config = WorkerConfig.from_env(
        {"RP_HTTP_HEADER_TIMEOUT": "0", "RP_HTTP_BODY_BUDGET": "0", "RP_HTTP_H2_RESET_BURST": "7"}
    )
    assert config.of(HTTP).header_timeout is None and config.of(HTTP).body_budget is None
    assert config.of(HTTP).h2_reset_burst == 7
    assert WorkerConfig().of(HTTP).send_timeout == 5.0


def test_parked_stream_and_linger_settings_are_read_and_checked() -> None:
    config = WorkerConfig.from_env(
        {
            "RP_HTTP_H2_MAX_PARKED_STREAMS": "7",
            "RP_HTTP_LINGER_TIME": "0",
            "RP_HTTP_LINGER_TIMEOUT": "0.25",
            "RP_HTTP_LINGER_BYTES": "4096",
            "RP_HTTP_MAX_LINGERING": "3",
        }
    )
    guards = config.of(HTTP).guards
    assert (guards.h2_max_parked_streams, guards.linger_time, guards.linger_timeout) == (7, None, 0.25)
    assert (guards.linger_bytes, guards.max_lingering) == (4096, 3)
    defaults = WorkerConfig().of(HTTP).guards
    assert (defaults.h2_max_parked_streams, defaults.linger_time, defaults.linger_bytes) == (100, 2.0, 1024 * 1024)
    for variable, value in (
        ("RP_HTTP_H2_MAX_PARKED_STREAMS", "0"),
        ("RP_HTTP_LINGER_TIMEOUT", "0"),
        ("RP_HTTP_LINGER_BYTES", "-1"),
        ("RP_HTTP_MAX_LINGERING", "many"),
    ):
        with pytest.raises(ConfigError, match=variable):
            WorkerConfig.from_env({variable: value})
    with pytest.raises(ValueError, match="max_lingering"):
        HttpGuards(max_lingering=0)


def test_h2_feed_frames_setting_is_read_and_checked() -> None:
    assert WorkerConfig.from_env({"RP_HTTP_H2_FEED_FRAMES": "4"}).of(HTTP).guards.h2_feed_frames == 4
    assert WorkerConfig().of(HTTP).guards.h2_feed_frames == 16
    with pytest.raises(ConfigError, match="RP_HTTP_H2_FEED_FRAMES"):
        WorkerConfig.from_env({"RP_HTTP_H2_FEED_FRAMES": "0"})
    with pytest.raises(ValueError, match="h2_feed_frames"):
        HttpGuards(h2_feed_frames=0)


# --- drivers ---------------------------------------------------------------------------------------


class Driven:
    """One server connection fed by hand."""

    def __init__(self, guards: HttpGuards | None = None, **options: int) -> None:
        self.sink = RecordingSink(None)
        self.server = HttpRequestServer(self.sink, guards=guards, **options)  # type: ignore[arg-type]
        self.server.endpoints.add("echo")
        self.transport = RecordingTransport()
        self.connection = _HttpConnection(self.server)
        self.connection.connection_made(self.transport)

    def feed(self, data: bytes) -> None:
        """Hand over a read and run the loop pass that works on it (under a running loop it is deferred)."""
        self.connection.data_received(data)
        pending = self.connection._continuation
        if pending is not None:
            pending.cancel()
            self.connection._work()

    def sweep(self, after: float) -> None:
        self.connection.check_deadlines(time.monotonic() + after)


def client(**settings: int) -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    if settings:
        conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes[k]: v for k, v in settings.items()}
        )
    conn.initiate_connection()
    return conn


def request(conn: h2.connection.H2Connection, path: str = "/v1/rpc/echo", *, end: bool = False) -> int:
    stream_id = conn.get_next_available_stream_id()
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", path.encode())]
    conn.send_headers(stream_id, fields, end_stream=end)
    return stream_id


def handshake(driven: Driven, conn: h2.connection.H2Connection) -> None:
    """Preface, then the server's SETTINGS acknowledged, so its windows are in force."""
    driven.feed(conn.data_to_send())
    conn.receive_data(bytes(driven.transport.output))
    driven.feed(conn.data_to_send())
    driven.transport.output.clear()


def test_h2_window_reopens_only_within_the_connection_budget_and_as_bodies_go() -> None:
    # h2 sends a WINDOW_UPDATE once half the 65,535-byte window has been acknowledged.
    driven = Driven(HttpGuards(h2_connection_body_budget=40_000), h2_window_size=65_535)
    conn = client()
    handshake(driven, conn)
    first, second = request(conn), request(conn)
    for _ in range(3):  # 48 KiB on the first stream: the third frame takes the connection past its budget
        conn.send_data(first, b"a" * 16_384)
        driven.feed(conn.data_to_send())
    session = driven.connection.session
    assert isinstance(session, Http2ServerSession)
    assert session.connection_budget.used == 3 * 16_384
    assert _window_credit(bytes(driven.transport.output)) == 2 * 16_384, "credit for bytes held beyond the budget"
    driven.transport.output.clear()
    conn.end_stream(first)  # consumed: its withheld 16 KiB are acknowledged now...
    driven.feed(conn.data_to_send())
    conn.send_data(second, b"b" * 16_383, end_stream=True)  # ...so these make half a window (32,767) again
    driven.feed(conn.data_to_send())
    assert [len(body) for _, body in driven.sink.offers] == [3 * 16_384, 16_383]
    assert session.connection_budget.used == 0 and driven.server.body_budget.used == 0
    assert _window_credit(bytes(driven.transport.output)) == 32_767, "consumed bodies did not reopen the window"


def _window_credit(output: bytes) -> int:
    return sum(f.window_increment for f in h2_frames(output) if isinstance(f, WindowUpdateFrame) and not f.stream_id)


def test_h2_server_wide_body_budget_refuses_a_stream_with_503() -> None:
    driven = Driven(HttpGuards(body_budget=1000))
    conn = client()
    handshake(driven, conn)
    stream_id = request(conn)
    conn.send_data(stream_id, b"x" * 1500)
    driven.feed(conn.data_to_send())
    events = conn.receive_data(bytes(driven.transport.output))
    statuses = [dict(e.headers)[b":status"] for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert statuses == [b"503"] and driven.server.body_budget.used == 0


def test_h2_a_stream_past_max_concurrent_streams_is_refused_alone() -> None:
    driven = Driven(h2_max_concurrent_streams=2)
    conn = client()  # never reads the server's SETTINGS, so it does not know the limit
    driven.feed(conn.data_to_send())
    driven.transport.output.clear()
    ids = [request(conn) for _ in range(3)]
    driven.feed(conn.data_to_send())
    frames = h2_frames(bytes(driven.transport.output))
    resets = [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)]
    assert resets == [(ids[2], int(h2.errors.ErrorCodes.REFUSED_STREAM))]
    assert not any(isinstance(f, GoAwayFrame) for f in frames) and not driven.transport.closed


def _ended(transport: RecordingTransport) -> bool:
    """Closed, or closing after an error answer: its write side shut (FIN), lingering over what still comes."""
    return transport.closed or transport.eof_written


def _calmed(driven: Driven) -> bool:
    frames = h2_frames(bytes(driven.transport.output))
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    return _ended(driven.transport) and [g.error_code for g in goaways] == [ENHANCE_YOUR_CALM]


def test_h2_rapid_reset_spends_the_reset_budget_then_gets_enhance_your_calm() -> None:
    driven = Driven(HttpGuards(h2_reset_burst=10, h2_reset_rate=0.0))
    conn = client()
    handshake(driven, conn)
    for _ in range(10):
        conn.reset_stream(request(conn, end=True))
    driven.feed(conn.data_to_send())
    assert not driven.transport.closed, "the budget's burst was not allowed"
    conn.reset_stream(request(conn, end=True))
    driven.feed(conn.data_to_send())
    assert _calmed(driven)
    assert "too many streams reset" in driven.server.wire_errors[-1]


def test_h2_ping_flood_gets_enhance_your_calm_and_its_acks_are_dropped() -> None:
    driven = Driven(HttpGuards(h2_control_burst=50, h2_control_rate=0.0))
    conn = client()
    handshake(driven, conn)
    for n in range(2000):
        conn.ping(n.to_bytes(8, "big"))
    driven.feed(conn.data_to_send())
    assert _calmed(driven)
    assert len(driven.transport.output) < 50 * 17 + 1024, "PING acks kept for a peer that is being cut off"


def _continuations(stream_id: int, frames: int, size: int, *, last_ends: bool = False) -> bytes:
    """HEADERS without END_HEADERS opening a request, then ``frames`` CONTINUATION frames of ``size`` bytes."""
    fields = b"\x00\x05x-pad\x7f\x01" + b"a" * 128
    pad = (fields * (size // len(fields) + 1))[:size]
    head = hpack_request()
    out = len(head).to_bytes(3, "big") + bytes((0x1, 0x0)) + stream_id.to_bytes(4, "big") + head
    for n in range(frames):
        flags = 0x4 if last_ends and n == frames - 1 else 0x0
        out += size.to_bytes(3, "big") + bytes((0x9, flags)) + stream_id.to_bytes(4, "big") + pad
    return out


def hpack_request() -> bytes:
    block: bytes = hpack.Encoder().encode(
        [(":method", "POST"), (":scheme", "http"), (":authority", "x"), (":path", "/v1/rpc/echo")]
    )
    return block


def test_h2_a_header_block_past_its_limit_gets_enhance_your_calm() -> None:
    driven = Driven(HttpGuards(h2_max_header_block=8192))
    handshake(driven, client())
    driven.feed(_continuations(1, 3, 137 * 14, last_ends=True))  # ~5.6 KiB of whole fields, ended: served
    assert not driven.transport.closed and driven.sink.offers == []  # (no END_STREAM: its body is awaited)
    driven.feed(_continuations(3, 10, 2048))  # never ended: cut off past 8 KiB, not at h2's 64 frames
    assert _ended(driven.transport)
    goaways = [f for f in h2_frames(bytes(driven.transport.output)) if isinstance(f, GoAwayFrame)]
    assert goaways and goaways[-1].error_code == ENHANCE_YOUR_CALM
    assert b"RP_HTTP_H2_MAX_HEADER_BLOCK" in goaways[-1].additional_data


def test_h2_a_header_block_left_open_is_closed_at_the_header_timeout() -> None:
    driven = Driven(HttpGuards(header_timeout=1.0, idle_timeout=60.0))
    handshake(driven, client())
    driven.feed(_continuations(1, 2, 100))  # small, but never ended
    driven.sweep(after=0.5)
    assert not _ended(driven.transport)
    driven.sweep(after=1.5)
    assert _ended(driven.transport)
    goaways = [f for f in h2_frames(bytes(driven.transport.output)) if isinstance(f, GoAwayFrame)]
    assert goaways and b"header block" in goaways[-1].additional_data


def test_h2_deadlines_end_a_stalled_body_and_a_parked_answer() -> None:
    driven = Driven(HttpGuards(body_timeout=1.0, send_timeout=1.0))
    conn = client(INITIAL_WINDOW_SIZE=0)
    handshake(driven, conn)
    stalled = request(conn)  # a body that never comes
    parked = request(conn, "/v1/rpc/unknown", end=True)  # a 404 with a body, behind a zero window
    driven.feed(conn.data_to_send())
    driven.transport.output.clear()
    driven.sweep(after=0.5)
    assert not h2_frames(bytes(driven.transport.output))
    driven.sweep(after=1.5)
    frames = h2_frames(bytes(driven.transport.output))
    assert [f.stream_id for f in frames if isinstance(f, HeadersFrame)] == [stalled]  # its 408
    assert (parked, int(h2.errors.ErrorCodes.CANCEL)) in [
        (f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)
    ]
    session = driven.connection.session
    assert isinstance(session, Http2ServerSession)
    assert session.streams.keys() <= {stalled}  # the 408's own body may wait for window too


def _parked(driven: Driven, conn: h2.connection.H2Connection, count: int) -> list[int]:
    """``count`` requests whose answers (404s, with a body) park behind the zero window ``conn`` advertised."""
    ids = [request(conn, "/v1/rpc/unknown", end=True) for _ in range(count)]
    driven.feed(conn.data_to_send())
    return ids


def test_h2_answers_parked_past_the_cap_end_the_connection_with_enhance_your_calm() -> None:
    driven = Driven(HttpGuards(h2_max_parked_streams=3))
    conn = client(INITIAL_WINDOW_SIZE=0)
    handshake(driven, conn)
    _parked(driven, conn, 3)
    session = driven.connection.session
    assert isinstance(session, Http2ServerSession)
    assert session.parked_streams == 3 and not _ended(driven.transport)
    _parked(driven, conn, 1)  # a fourth answer left unread: the peer holds answers, it does not read them
    assert _calmed(driven)
    goaway = next(f for f in h2_frames(bytes(driven.transport.output)) if isinstance(f, GoAwayFrame))
    assert b"RP_HTTP_H2_MAX_PARKED_STREAMS" in goaway.additional_data
    assert session.parked_streams == 0 and not session.streams


def test_h2_a_connection_whose_every_answer_is_overdue_is_given_up_with_one_goaway() -> None:
    driven = Driven(HttpGuards(send_timeout=1.0))
    conn = client(INITIAL_WINDOW_SIZE=0)
    handshake(driven, conn)
    _parked(driven, conn, 40)
    driven.transport.output.clear()
    driven.sweep(after=0.5)
    assert not h2_frames(bytes(driven.transport.output))
    driven.sweep(after=1.5)
    frames = h2_frames(bytes(driven.transport.output))
    assert not [f for f in frames if isinstance(f, RstStreamFrame)], "one reset per stream instead of one GOAWAY"
    assert _calmed(driven)


def test_h2_overdue_answers_are_reset_a_slice_per_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection also sending a body: its overdue answers are reset, at most a slice per check, the rest next."""
    monkeypatch.setattr(http2_server, "GIVE_UP_SLICE", 10)
    driven = Driven(HttpGuards(send_timeout=1.0, body_timeout=60.0))
    conn = client(INITIAL_WINDOW_SIZE=0)
    handshake(driven, conn)
    request(conn)  # a body under way: this peer is not given up as a whole
    parked = _parked(driven, conn, 25)
    driven.transport.output.clear()
    resets: list[int] = []
    for _ in range(3):
        driven.sweep(after=1.5)
        frames = h2_frames(bytes(driven.transport.output))
        driven.transport.output.clear()
        now = [f.stream_id for f in frames if isinstance(f, RstStreamFrame)]
        assert len(now) <= 10
        resets += now
    assert sorted(resets) == parked and not _ended(driven.transport)


def test_deadline_timer_checks_owners_in_turns_under_a_loop() -> None:
    """Owners due together are checked a turn's worth per loop pass; other callbacks run in between."""

    async def scenario() -> None:
        timer = DeadlineTimer(clock=FakeClock(), turn=0.0)  # one owner per pass
        owners = [Owner() for _ in range(3)]
        deadlines = [Deadline() for _ in owners]
        for owner, deadline in zip(owners, deadlines, strict=True):
            deadline.arm(100.0, 1.0)
            timer.watch(deadline, owner)
        between: list[int] = []
        asyncio.get_running_loop().call_soon(lambda: between.append(sum(bool(o.checked) for o in owners)))
        timer.fire(101.0)
        assert [bool(o.checked) for o in owners] == [True, False, False] and timer.pending == 2
        for _ in range(3):
            await asyncio.sleep(0)
        assert all(o.checked for o in owners) and timer.pending == 0
        assert between == [1], "the loop's other callbacks waited for every owner"
        timer.cancel()

    asyncio.run(scenario())


def test_a_long_read_driven_without_a_loop_is_worked_on_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its turn, a read handed over without a running loop goes on (no loop to yield to, no RuntimeError)."""
    monkeypatch.setattr(server_module, "FEED_TURN_S", 0.0)  # every slice would end a turn
    driven = Driven()
    requests = b"".join(b"POST /v1/rpc/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n" for _ in range(300))
    assert len(requests) > 2 * server_module.FEED_SLICE
    driven.connection.data_received(requests)
    assert len(driven.sink.offers) == 300


async def test_h1_content_length_with_transfer_encoding_is_400_and_close() -> (
    None
):  # its lingering close needs a running loop
    driven = Driven()
    head = b"POST /v1/rpc/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
    driven.feed(head + b"3\r\nabc\r\n0\r\n\r\n" + b"POST /v1/rpc/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
    output = bytes(driven.transport.output)
    assert output.startswith(b"HTTP/1.1 400 ") and output.count(b"HTTP/1.1 ") == 1
    assert b"connection: close" in output and not driven.sink.offers


async def test_h1_bare_lf_in_a_head_is_400_but_a_body_may_hold_any_byte() -> (
    None
):  # its lingering close needs a running loop
    driven = Driven()
    driven.feed(b"POST /v1/rpc/echo HTTP/1.1\nhost: x\ncontent-length: 0\n\n")
    assert bytes(driven.transport.output).startswith(b"HTTP/1.1 400 ") and not driven.sink.offers
    driven = Driven()
    body = b"\n\r\n\n"
    driven.feed(b"POST /v1/rpc/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\n" + body)
    driven.feed(b"POST /v1/rpc/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
    assert [payload for _, payload in driven.sink.offers] == [body, b""]


async def test_h1_too_many_chunks_is_refused_and_bodies_leave_the_budget() -> (
    None
):  # its lingering close needs a running loop
    driven = Driven(HttpGuards(max_body_chunks=10))
    head = b"POST /v1/rpc/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
    driven.feed(head + b"1\r\nx\r\n" * 10 + b"0\r\n\r\n")
    assert [payload for _, payload in driven.sink.offers] == [b"x" * 10]
    driven.feed(head + b"1\r\nx\r\n" * 11)
    assert bytes(driven.transport.output).count(b"HTTP/1.1 413 ") == 1
    assert driven.server.body_budget.used == 0


async def test_h1_deadlines_head_then_idle() -> None:  # its lingering close needs a running loop
    driven = Driven(HttpGuards(header_timeout=2.0, idle_timeout=5.0))
    driven.feed(b"POST /v1/rpc/echo HTTP/1.1\r\nhost: x\r\n")  # a head that never completes
    driven.sweep(after=1.0)
    assert not driven.transport.output
    driven.sweep(after=2.5)
    assert bytes(driven.transport.output).startswith(b"HTTP/1.1 408 ")
    idle = Driven(HttpGuards(header_timeout=2.0, idle_timeout=5.0))
    idle.feed(b"POST /v1/rpc/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
    idle.sweep(after=3.0)  # between requests the idle timeout applies, not the head's
    assert not idle.transport.closed
    idle.sweep(after=5.5)
    assert idle.transport.closed
    session = idle.connection.session
    assert isinstance(session, Http1ServerSession)


def test_a_silent_connection_is_closed_at_the_header_timeout() -> None:
    driven = Driven(HttpGuards(header_timeout=1.0))
    driven.sweep(after=0.5)
    assert not driven.transport.closed
    driven.sweep(after=1.5)
    assert driven.transport.closed


def test_h2_preface_then_nothing_is_still_served_until_idle() -> None:
    driven = Driven(HttpGuards(idle_timeout=3.0))
    driven.feed(PREFACE + client().data_to_send()[len(PREFACE) :])
    driven.sweep(after=1.0)  # arms the idle deadline (no streams)
    assert not driven.transport.closed
    session = driven.connection.session
    assert isinstance(session, Http2ServerSession)
    session.idle_deadline.at = time.monotonic() - 1  # as if the idle time had passed
    driven.sweep(after=0.0)
    assert driven.transport.closed


def test_h2_preface_without_settings_is_closed_at_the_header_timeout() -> None:
    driven = Driven(HttpGuards(header_timeout=1.0))
    driven.feed(PREFACE)  # and never the SETTINGS frame that must follow
    driven.sweep(after=0.5)
    assert not _ended(driven.transport)
    driven.sweep(after=1.5)
    assert _ended(driven.transport)
    goaways = [f for f in h2_frames(bytes(driven.transport.output)) if isinstance(f, GoAwayFrame)]
    assert goaways and b"SETTINGS" in goaways[-1].additional_data


class PausingTransport(RecordingTransport):
    def __init__(self) -> None:
        super().__init__()
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


async def test_a_long_read_is_worked_on_in_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its turn, a connection's read waits (socket not read) while the loop runs others."""
    monkeypatch.setattr(server_module, "FEED_TURN_S", 0.0)  # every slice ends a turn
    driven = Driven()
    transport = PausingTransport()
    driven.transport = transport
    driven.connection = _HttpConnection(driven.server)
    driven.connection.connection_made(transport)
    requests = b"".join(
        b"POST /v1/rpc/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n" + bytes([65 + n % 26]) for n in range(400)
    )
    assert len(requests) > 4 * server_module.FEED_SLICE
    driven.feed(requests)
    first_turn = len(driven.sink.offers)
    assert 0 < first_turn < 400 and not transport.reading
    for _ in range(100):
        if len(driven.sink.offers) == 400:
            break
        await asyncio.sleep(0)
    assert len(driven.sink.offers) == 400 and transport.reading
    assert bytes(transport.output).count(b"HTTP/1.1 202 ") == 400


async def test_a_small_read_is_worked_on_before_the_backlogs_of_floods(monkeypatch: pytest.MonkeyPatch) -> None:
    """A feed pass takes the smallest backlog first: one request is not queued behind every flooding connection."""
    monkeypatch.setattr(server_module, "FEED_TURN_S", 0.0)  # one slice per pass
    sink = RecordingSink(None)
    # No deadlines: on a starved machine the passes can outlast the 5 s header deadline, which is not under test.
    server = HttpRequestServer(sink, guards=HttpGuards(header_timeout=None, body_timeout=None))
    server.endpoints.add("echo")
    one = b"POST /v1/rpc/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n"
    floods = []
    for _ in range(5):
        connection = _HttpConnection(server)
        connection.connection_made(PausingTransport())
        connection.data_received((one + b"f") * 400)  # ~24 KiB each: six slices
        floods.append(connection)
    caller = _HttpConnection(server)
    caller_transport = PausingTransport()
    caller.connection_made(caller_transport)
    caller.data_received(one + b"c")  # arrives last
    await asyncio.sleep(0)  # one pass
    assert bytes(caller_transport.output).startswith(b"HTTP/1.1 202 "), "the caller waited behind the floods"
    untouched = len((one + b"f") * 400)
    assert [c.backlog_left for c in floods] == [untouched] * 5, "one pass worked on more than one turn in all"
    for _ in range(100):
        if not any(c.backlog_left for c in floods):
            break
        await asyncio.sleep(0)
    assert not any(c.backlog_left for c in floods) and len(sink.offers) == 5 * 400 + 1


def test_frame_counter_cuts_only_at_frame_starts_across_split_reads() -> None:
    """Whatever the reads, a cut lands on a frame's first byte and holds at most the frames asked for."""
    conn = client()
    for _ in range(40):
        request(conn, end=True)
    stream = conn.data_to_send()
    starts, position = set(), len(PREFACE)
    while position < len(stream):
        starts.add(position)
        position += 9 + int.from_bytes(stream[position : position + 3], "big")
    counter = FrameCounter(preface_length=len(PREFACE))
    offset = 0
    for read in (stream[:20], stream[20:31], stream[31:400], stream[400:403], stream[403:]):  # split mid-header too
        start = 0
        while start < len(read):
            taken = counter.cut(read, start, 4096, 3)
            assert taken > 0
            end = offset + start + taken
            begun = [s for s in starts if offset + start <= s < end]
            assert len(begun) <= 3 and (end == offset + len(read) or end in starts), f"cut at {end}"
            counter.advance(read[start : start + taken])
            start += taken
        offset += len(read)
    assert counter.cut(b"x" * 100, 0, 10, 1) == 10, "a frame longer than a slice goes over in several"


async def test_an_h2_read_of_many_frames_is_handed_over_a_few_frames_a_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """200 HEADERS in one 3 KB read (one byte slice) go to h2 ``h2_feed_frames`` at a time, not in one call.

    h2 cannot be stopped mid-call: handed the whole read, it would answer all
    200 requests in one loop turn.  A caller on another connection is served
    between the slices, while the flood's read is still being worked on.
    """
    monkeypatch.setattr(server_module, "FEED_TURN_S", 0.0)  # one slice per connection per pass
    sink = RecordingSink(None)
    server = HttpRequestServer(sink, guards=HttpGuards(h2_feed_frames=8))
    server.endpoints.add("echo")
    flood_transport = PausingTransport()
    flood = _HttpConnection(server)
    flood.connection_made(flood_transport)
    conn = client()
    for _ in range(200):
        request(conn, end=True)
    burst = conn.data_to_send()
    assert len(burst) < server_module.FEED_SLICE, "one byte slice: only the frame bound cuts it"
    flood.data_received(burst)
    await asyncio.sleep(0)  # one pass: the preface, SETTINGS and 7 HEADERS
    assert len(sink.offers) == 7 and flood.backlog_left > 0 and not flood_transport.reading
    caller_transport = PausingTransport()
    caller = _HttpConnection(server)
    caller.connection_made(caller_transport)
    caller.data_received(b"POST /v1/rpc/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nc")
    await asyncio.sleep(0)
    assert bytes(caller_transport.output).startswith(b"HTTP/1.1 202 "), "the caller waited for the whole read"
    assert flood.backlog_left > 0 and 7 < len(sink.offers) < 201
    for _ in range(100):
        if not flood.backlog_left:
            break
        await asyncio.sleep(0)
    assert len(sink.offers) == 201 and flood_transport.reading
    events = conn.receive_data(bytes(flood_transport.output))
    assert sum(isinstance(e, h2.events.ResponseReceived) for e in events) == 200
