"""The HTTP request plane in both roles, judged from the bytes exchanged.

Worker role: the suite's raw HTTP/1.1 writer and frame-level h2c peer
(``fixtures.probes.http_wire``) send requests, right and wrong, to the
implementation's advertised URL and read the status lines, frames and the
call-home.  Caller role: the implementation calls the probe worker's HTTP
front (``fixtures.probes.http_front``), which parses strictly (a window
overrun is an h2 connection error there) and records every exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import h2.exceptions
import pytest

from fixtures.failures import PROMPT_DEADLINE_S, assert_prompt_failure
from fixtures.judge.discovery import InstanceRecord
from fixtures.probes.http_front import BODY_LIMIT, GATHER_COUNT, HttpExchange, HttpFront
from fixtures.probes.http_wire import H2Wire, Http1Wire
from fixtures.probes.probe_worker import ProbeWorker
from fixtures.probes.wire_client import ProbeRequest, ProbeResult, WireClient, read_until_sentinel_then_close
from fixtures.roles import CallerUnderTest, WorkerUnderTest
from fixtures.timeouts import NOT_RUN_WINDOW_S

pytestmark = pytest.mark.planes("http")

ENVELOPE_HEADERS = {"content-type": "application/octet-stream", "accept": "*/*"}
COMPLETE_TAIL = ["FinalReceived", "SentinelReceived", "closed_complete"]
REJECTION_KINDS = {"unavailable", "overloaded", "rejected"}
WAIT = 10.0


def _path(record: InstanceRecord) -> str:
    return urlsplit(record.transport_address).path


def _headers(probe: ProbeRequest) -> dict[str, str]:
    return {**ENVELOPE_HEADERS, **probe.headers}


async def _events(probe: ProbeRequest, timeout: float = WAIT) -> list[str]:
    """The call-home of an acknowledged request, read like a well-behaved caller."""
    session = await asyncio.wait_for(probe.session, timeout)
    transcript = await read_until_sentinel_then_close(session, timeout)
    return transcript.event_names(probe.codec)


async def _values(probe: ProbeRequest, timeout: float = WAIT) -> list[Any]:
    """Handler values of an acknowledged request's stream."""
    session = await asyncio.wait_for(probe.session, timeout)
    transcript = await read_until_sentinel_then_close(session, timeout)
    return ProbeResult(b"", transcript, probe.codec).values()


async def _never_calls_home(probe: ProbeRequest, wait: float = NOT_RUN_WINDOW_S) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(probe.session), wait)
    except TimeoutError:
        probe.session.cancel()
        return True
    return False


def _thirds(data: bytes) -> list[bytes]:
    cut = len(data) // 3
    return [data[:cut], data[cut : 2 * cut], data[2 * cut :]]


def _sized(wire_client: WireClient, record: InstanceRecord, size: int) -> tuple[ProbeRequest, int]:
    """A ``sink`` request whose envelope is exactly ``size`` bytes, and the blob length in it."""
    blob = max(size - 1024, 0)
    for _ in range(4):
        probe = wire_client.prepare(record, {"blob": "b" * blob})
        probe.session.cancel()
        if len(probe.payload) == size:
            return wire_client.prepare(record, {"blob": "b" * blob}), blob
        blob += size - len(probe.payload)
    raise AssertionError(f"could not size an envelope to {size} bytes")


# --- worker role --------------------------------------------------------------------------


@pytest.mark.req("HTTP-URL")
async def test_worker_advertises_its_rpc_url(impl_worker: WorkerUnderTest, wire_client: WireClient):
    ports = set()
    for name in ("echo", "stream"):
        record = impl_worker.record(name)
        assert record.transport_kind == "http", record
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/v1/rpc/" + name, record.transport_address)
        assert match, f"advertised {record.transport_address!r}, not http://127.0.0.1:<port>/v1/rpc/{name}"
        ports.add(match.group(1))
    assert len(ports) == 1, f"one HTTP listener serves every endpoint of a process, got ports {ports}"
    assert (await wire_client.call(impl_worker.record("echo"), {"over": "http"})).values() == [{"over": "http"}]


@pytest.mark.parametrize(
    "version",
    [
        pytest.param("http/1.1", marks=pytest.mark.req("HTTP-ACK-202", "HTTP-HTTP1")),
        pytest.param("h2", marks=pytest.mark.req("HTTP-H2C")),
    ],
)
async def test_accepted_request_gets_202_then_its_stream(
    impl_worker: WorkerUnderTest, wire_client: WireClient, version: str
):
    record = impl_worker.record("stream")
    probe = wire_client.prepare(record, {"count": 3})
    answer = await wire_client.deliver_http(record.transport_address, probe.headers, probe.payload, WAIT, version)
    assert answer.status == 202, f"{answer.status} {answer.body[:200]!r}"
    assert answer.body == b"", f"the ACK has a body: {answer.body[:200]!r}"
    events = await _events(probe)
    assert events.count("ItemReceived") == 3 and events[-3:] == COMPLETE_TAIL, events


@pytest.mark.req("HTTP-HTTP1")
async def test_http1_keep_alive_serves_requests_in_turn(impl_worker: WorkerUnderTest, wire_client: WireClient):
    record = impl_worker.record("echo")
    connection = await Http1Wire.open(record.transport_address)
    try:
        for turn in range(3):
            probe = wire_client.prepare(record, {"turn": turn})
            answer = await connection.request("POST", _path(record), probe.payload, _headers(probe))
            assert (answer.version, answer.status) == ("HTTP/1.1", 202), answer
            assert (await _events(probe))[-3:] == COMPLETE_TAIL
    finally:
        connection.close()


@pytest.mark.req("HTTP-UPGRADE")
async def test_an_h2c_upgrade_request_is_answered_over_http1(impl_worker: WorkerUnderTest, wire_client: WireClient):
    record = impl_worker.record("echo")
    probe = wire_client.prepare(record, {"upgrade": "ignored"})
    upgrade = {"connection": "Upgrade, HTTP2-Settings", "upgrade": "h2c", "http2-settings": "AAMAAABkAAQAoAAAAAIAAAAA"}
    connection = await Http1Wire.open(record.transport_address)
    try:
        answer = await connection.request("POST", _path(record), probe.payload, {**_headers(probe), **upgrade})
    finally:
        connection.close()
    assert (answer.version, answer.status) == ("HTTP/1.1", 202), f"{answer.version} {answer.status} {answer.headers}"
    assert (await _events(probe))[-3:] == COMPLETE_TAIL


@pytest.mark.req("HTTP-ACK-BEFORE-DECODE")
@pytest.mark.robustness
async def test_a_body_that_is_no_envelope_is_still_acknowledged(impl_worker: WorkerUnderTest, wire_client: WireClient):
    record = impl_worker.record("echo")
    connection = await Http1Wire.open(record.transport_address)
    try:
        answer = await connection.request("POST", _path(record), b"\x00not a two-part frame", ENVELOPE_HEADERS)
        assert answer.status == 202, f"{answer.status} {answer.body[:200]!r}"
    finally:
        connection.close()
    assert (await wire_client.call(record, {"still": "serving"})).values() == [{"still": "serving"}]


@pytest.mark.req("HTTP-UNKNOWN-ENDPOINT")
@pytest.mark.robustness
async def test_unknown_endpoints_and_foreign_paths_get_404(impl_worker: WorkerUnderTest, wire_client: WireClient):
    record = impl_worker.record("echo")
    root = _path(record).rsplit("/", 1)[0]
    connection = await Http1Wire.open(record.transport_address)
    watches: dict[str, asyncio.Future[bool]] = {}
    try:
        for path in (f"{root}/no-such-endpoint", "/elsewhere/echo"):
            probe = wire_client.prepare(record, {"lost": path})
            answer = await connection.request("POST", path, probe.payload, _headers(probe))
            watches[path] = asyncio.ensure_future(_never_calls_home(probe))  # each window from its 404 on
            assert answer.status == 404, f"POST {path}: {answer.status} {answer.body[:200]!r}"
        probe = wire_client.prepare(record, {"after": "404"})
        answer = await connection.request("POST", _path(record), probe.payload, _headers(probe))
        assert answer.status == 202, f"the connection is unusable after a 404: {answer.status}"
        assert (await _events(probe))[-3:] == COMPLETE_TAIL
        # Neither 404 may have run its request.
        never = await asyncio.gather(*watches.values())
        assert all(never), f"run although answered 404: {[p for p, n in zip(watches, never, strict=True) if not n]}"
    finally:
        connection.close()
        for watch in watches.values():
            watch.cancel()


@pytest.mark.req("HTTP-METHOD")
@pytest.mark.robustness
async def test_methods_other_than_post_get_405(impl_worker: WorkerUnderTest, wire_client: WireClient):
    """GET and PUT, each on its own connection; both are watched for a call-home over one window."""
    record = impl_worker.record("echo")
    watches: dict[str, asyncio.Future[bool]] = {}
    try:
        for method in ("GET", "PUT"):
            probe = wire_client.prepare(record, {"method": method})
            connection = await Http1Wire.open(record.transport_address)
            try:
                answer = await connection.request(method, _path(record), probe.payload, _headers(probe))
            finally:
                connection.close()
            watches[method] = asyncio.ensure_future(_never_calls_home(probe))
            assert answer.status == 405, f"{method}: {answer.status} {answer.body[:200]!r}"
            assert "POST" in (answer.header("allow") or ""), answer.headers
        never = dict(zip(watches, await asyncio.gather(*watches.values()), strict=True))
    finally:
        for watch in watches.values():
            watch.cancel()
    assert all(never.values()), f"ran the endpoint although answered 405: {[m for m, n in never.items() if not n]}"


BODY_VARIANTS = ("h1-content-length", "h1-chunked", "h2-content-length", "h2-no-content-length")


async def _post_variant(variant: str, record: InstanceRecord, probe: ProbeRequest) -> int:
    """POST ``probe`` the way ``variant`` says and return the status: the limit must not depend on it."""
    headers = _headers(probe)
    if variant.startswith("h1"):
        connection = await Http1Wire.open(record.transport_address)
        try:
            head = f"POST {_path(record)} HTTP/1.1\r\nhost: {connection.authority}\r\n"
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            if variant == "h1-chunked":
                step = 256 * 1024
                chunks = [probe.payload[i : i + step] for i in range(0, len(probe.payload), step)]
                body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
                connection.writer.write(f"{head}transfer-encoding: chunked\r\n\r\n".encode() + body)
            else:
                connection.writer.write(f"{head}content-length: {len(probe.payload)}\r\n\r\n".encode() + probe.payload)
            return (await connection.read_answer(WAIT)).status
        finally:
            connection.close()
    wire = await H2Wire.open(record.transport_address)
    try:
        if variant == "h2-content-length":
            headers = {**headers, "content-length": str(len(probe.payload))}
        stream = wire.open_stream("POST", _path(record), headers)
        with contextlib.suppress(h2.exceptions.StreamClosedError):  # refused before the end of the body
            await wire.send_body(stream, probe.payload, timeout=WAIT)
        status = (await wire.answer(stream, WAIT)).status
        assert status is not None, f"{variant}: no answer"
        return status
    finally:
        wire.close()


@pytest.mark.req("HTTP-BODY-LIMIT")
@pytest.mark.robustness
async def test_two_mib_is_accepted_and_one_byte_more_is_413(impl_worker: WorkerUnderTest, wire_client: WireClient):
    """Every way of sending a body: HTTP/1.1 with content-length or chunked, h2c with or without it.

    The four ways run at once, each on connections of its own; each oversized request is watched for a call-home
    from its 413 on, the four windows overlapping."""
    record = impl_worker.record("sink")
    watches: dict[str, asyncio.Future[bool]] = {}

    async def at_and_over_the_limit(variant: str) -> None:
        at_limit, blob = _sized(wire_client, record, BODY_LIMIT)
        status = await _post_variant(variant, record, at_limit)
        assert status == 202, f"{variant}, {BODY_LIMIT} bytes: {status}"
        assert [v.get("size") for v in await _values(at_limit)] == [blob], f"{variant}: at the limit, not served"
        over, _ = _sized(wire_client, record, BODY_LIMIT + 1)
        status = await _post_variant(variant, record, over)
        watches[variant] = asyncio.ensure_future(_never_calls_home(over))
        assert status == 413, f"{variant}, {BODY_LIMIT + 1} bytes: {status}"

    try:
        await asyncio.gather(*(at_and_over_the_limit(variant) for variant in BODY_VARIANTS))
        never = dict(zip(watches, await asyncio.gather(*watches.values()), strict=True))
    finally:
        for watch in watches.values():
            watch.cancel()
    assert all(never.values()), f"the oversized request was run: {[v for v, n in never.items() if not n]}"
    assert (await wire_client.call(impl_worker.record("echo"), {"after": 413})).values() == [{"after": 413}]


@pytest.mark.req("HTTP-H2C")
async def test_h2c_on_the_same_port_gives_the_same_answers(impl_worker: WorkerUnderTest, wire_client: WireClient):
    record = impl_worker.record("echo")
    root = _path(record).rsplit("/", 1)[0]
    wire = await H2Wire.open(record.transport_address)
    try:
        good = wire_client.prepare(record, {"h2": True})
        accepted = await wire.post(_path(record), good.payload, _headers(good))
        unknown = await wire.post(f"{root}/no-such-endpoint", good.payload, ENVELOPE_HEADERS)
        get = wire.open_stream("GET", _path(record), end_stream=True)
        statuses = [(await wire.answer(stream, WAIT)).status for stream in (accepted, unknown, get)]
        assert statuses == [202, 404, 405], statuses
        assert (await wire.answer(accepted)).body == b""
        assert (await _events(good))[-3:] == COMPLETE_TAIL
        assert wire.protocol_error is None, wire.protocol_error
    finally:
        wire.close()


@pytest.mark.req("HTTP-HEADERS-ACCEPTED")
@pytest.mark.parametrize(
    "variant",
    ["none", "tracing", "request-id-not-a-uuid"],
)
async def test_tracing_headers_are_optional_and_never_break_a_request(
    impl_worker: WorkerUnderTest, wire_client: WireClient, variant: str
):
    record = impl_worker.record("whoami")
    probe = wire_client.prepare(record, {})
    headers = {
        "none": {},
        "tracing": {
            **probe.headers,
            "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
            "tracestate": "vendor=value",
            "x-request-id": "suite-trace-1",
        },
        "request-id-not-a-uuid": {**probe.headers, "request-id": "not-a-uuid"},
    }[variant]
    answer = await wire_client.deliver_http(record.transport_address, headers, probe.payload, WAIT)
    assert answer.status == 202, f"{variant}: {answer.status} {answer.body[:200]!r}"
    values = await _values(probe)
    assert values == [{"request_id": probe.request_id}], values


@pytest.mark.req("HTTP-H2-CONCURRENT")
async def test_concurrent_h2_streams_are_served_independently(impl_worker: WorkerUnderTest, wire_client: WireClient):
    record = impl_worker.record("stream")
    wire = await H2Wire.open(record.transport_address)
    try:
        probes = [wire_client.prepare(record, {"count": 1 + i % 3}) for i in range(8)]
        streams = [wire.open_stream("POST", _path(record), _headers(p)) for p in probes]
        thirds = [_thirds(p.payload) for p in probes]
        for part in range(3):  # interleave: every stream's first third, then every second third, ...
            for stream, chunks in zip(streams, thirds, strict=True):
                await wire.send_body(stream, chunks[part], end_stream=part == 2)
        answers = [await wire.answer(stream, WAIT) for stream in streams]
        assert [a.status for a in answers] == [202] * len(streams)
        for i, probe in enumerate(probes):
            events = await _events(probe)
            assert events.count("ItemReceived") == 1 + i % 3 and events[-3:] == COMPLETE_TAIL, (i, events)
        assert wire.protocol_error is None, wire.protocol_error
    finally:
        wire.close()


@pytest.mark.req("HTTP-H2-FLOW")
async def test_a_large_body_in_many_data_frames_arrives_whole(impl_worker: WorkerUnderTest, wire_client: WireClient):
    record = impl_worker.record("sink")
    blob = ("0123456789abcdef" * (BODY_LIMIT // 16))[: BODY_LIMIT - 64 * 1024]
    probe = wire_client.prepare(record, {"blob": blob})
    wire = await H2Wire.open(record.transport_address)
    try:
        stream = await wire.post(_path(record), probe.payload, _headers(probe), timeout=20.0)
        answer = await wire.answer(stream, WAIT)
        sent_frames = wire.streams[stream].data_frames_sent
    finally:
        wire.close()
    assert answer.status == 202, answer
    assert sent_frames > 4 * 65_535 // 16_384, f"only {sent_frames} DATA frames"
    values = await _values(probe)
    assert values == [{"size": len(blob), "sha256": hashlib.sha256(blob.encode()).hexdigest()}], values


@pytest.mark.req("HTTP-H2-RST")
@pytest.mark.robustness
async def test_a_reset_stream_leaves_the_others_intact(impl_worker: WorkerUnderTest, wire_client: WireClient):
    record = impl_worker.record("echo")
    wire = await H2Wire.open(record.transport_address)
    try:
        doomed, kept = wire_client.prepare(record, {"doomed": True}), wire_client.prepare(record, {"kept": True})
        doomed_stream = wire.open_stream("POST", _path(record), _headers(doomed))
        await wire.send_body(doomed_stream, doomed.payload[: len(doomed.payload) // 2], end_stream=False)
        kept_stream = wire.open_stream("POST", _path(record), _headers(kept))
        await wire.send_body(kept_stream, kept.payload[:10], end_stream=False)
        wire.reset(doomed_stream)
        doomed_watch = asyncio.ensure_future(_never_calls_home(doomed))  # the window starts at the reset
        await wire.send_body(kept_stream, kept.payload[10:])
        assert (await wire.answer(kept_stream, WAIT)).status == 202
        assert (await _events(kept))[-3:] == COMPLETE_TAIL
        assert await doomed_watch, "the reset request was run"
        later = wire_client.prepare(record, {"later": True})
        later_stream = await wire.post(_path(record), later.payload, _headers(later))
        assert (await wire.answer(later_stream, WAIT)).status == 202, "the connection stopped serving after a reset"
        assert (await _events(later))[-3:] == COMPLETE_TAIL
        assert wire.protocol_error is None, wire.protocol_error
    finally:
        wire.close()


@pytest.mark.req("HTTP-H2-GOAWAY")
async def test_a_stream_in_flight_finishes_after_the_callers_goaway(
    impl_worker: WorkerUnderTest, wire_client: WireClient
):
    record = impl_worker.record("echo")
    probe = wire_client.prepare(record, {"goaway": "in flight"})
    wire = await H2Wire.open(record.transport_address)
    try:
        stream = wire.open_stream("POST", _path(record), _headers(probe))
        await wire.send_body(stream, probe.payload[:16], end_stream=False)
        wire.send_goaway()
        await asyncio.sleep(0.1)
        await wire.send_body(stream, probe.payload[16:])
        answer = await wire.answer(stream, WAIT)
    finally:
        wire.close()
    assert answer.status == 202, f"status {answer.status}, reset {answer.reset_code}"
    assert (await _events(probe))[-3:] == COMPLETE_TAIL


# --- caller role --------------------------------------------------------------------------


def _front(probe_worker: ProbeWorker) -> HttpFront:
    assert isinstance(probe_worker.front, HttpFront)
    return probe_worker.front


def _exchanges(probe_worker: ProbeWorker, behaviour: str) -> list[HttpExchange]:
    path = _path(probe_worker.record(behaviour))
    return [e for e in _front(probe_worker).exchanges if e.target.partition("?")[0] == path]


@pytest.mark.req("HTTP-CALLER-REQUEST")
async def test_caller_posts_the_envelope_to_the_advertised_url(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    answer = await impl_caller.call(probe_worker.endpoint("echo"), {"post": 1})
    assert answer["outcome"] == "complete" and answer["items"] == [{"post": 1}], answer
    (exchange,) = _exchanges(probe_worker, "echo")
    (received,) = await probe_worker.wait_for_requests(1)
    record = probe_worker.record("echo")
    assert exchange.method == "POST" and exchange.version in ("HTTP/1.1", "HTTP/2"), exchange
    assert exchange.authority == urlsplit(record.transport_address).netloc, exchange
    assert exchange.body_size == len(received.frame.payload) and received.envelope is not None
    length = exchange.header("content-length")
    assert length is None or int(length) == exchange.body_size, f"content-length {length}, body {exchange.body_size}"
    assert not probe_worker.wire_errors, probe_worker.wire_errors


@pytest.mark.req("HTTP-CALLER-HEADERS")
async def test_caller_sends_request_id_and_send_time(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    before_ns = time.time_ns()
    answer = await impl_caller.call(probe_worker.endpoint("echo"), {"h": 1})
    assert answer["outcome"] == "complete", answer
    (received,) = await probe_worker.wait_for_requests(1)
    (exchange,) = _exchanges(probe_worker, "echo")
    assert received.envelope is not None
    assert exchange.header("request-id") == received.envelope.control.id, exchange.headers
    sent = exchange.header("x-frontend-send-ts-ns") or ""
    assert sent.isdigit() and abs(int(sent) - before_ns) < 60 * 10**9, f"x-frontend-send-ts-ns {sent!r}"


@pytest.mark.req("HTTP-CALLER-STATUS")
@pytest.mark.robustness
@pytest.mark.parametrize("behaviour", ["not_found", "reject_other", "reject_unavailable"])
async def test_a_non_2xx_answer_fails_the_call_at_once(
    impl_caller: CallerUnderTest, probe_worker: ProbeWorker, behaviour: str
):
    answer = await impl_caller.call(probe_worker.endpoint(behaviour), {"status": behaviour}, deadline=PROMPT_DEADLINE_S)
    assert_prompt_failure(answer, f"HTTP answer {behaviour}")
    statuses = [e.status for e in _exchanges(probe_worker, behaviour)]
    assert statuses and statuses[0] in (404, 500, 503), statuses


@pytest.mark.req("HTTP-CALLER-413")
@pytest.mark.robustness
async def test_an_oversized_request_fails_and_the_next_call_works(
    impl_caller: CallerUnderTest, probe_worker: ProbeWorker
):
    big = {"blob": "o" * (BODY_LIMIT + 64 * 1024)}
    answer = await impl_caller.call(probe_worker.endpoint("echo"), big, deadline=PROMPT_DEADLINE_S)
    assert_prompt_failure(answer, "a 413 answer")
    statuses = [e.status for e in _exchanges(probe_worker, "echo")]
    assert statuses == [413], statuses
    after = await impl_caller.call(probe_worker.endpoint("echo"), {"after": 413})
    assert after["outcome"] == "complete" and after["items"] == [{"after": 413}], after


@pytest.mark.req("HTTP-CALLER-LARGE")
async def test_a_large_request_arrives_whole(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    request = {"blob": "L" * (BODY_LIMIT - 64 * 1024)}
    answer = await impl_caller.call(probe_worker.endpoint("echo"), request, deadline=30.0)
    assert answer["outcome"] == "complete" and answer["items"] == [request], {**answer, "items": len(answer["items"])}
    (received,) = await probe_worker.wait_for_requests(1)
    (exchange,) = _exchanges(probe_worker, "echo")
    assert exchange.body_size == len(received.frame.payload)
    if exchange.version == "HTTP/2":
        assert exchange.data_frames >= exchange.body_size // 16_384, exchange
    assert not probe_worker.wire_errors, probe_worker.wire_errors


@pytest.mark.req("HTTP-CALLER-H2-MULTIPLEX")
async def test_an_h2_caller_multiplexes_concurrent_requests(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    endpoint = probe_worker.endpoint("gather")
    answers = await asyncio.gather(*(impl_caller.call(endpoint, {"count": 2}) for _ in range(GATHER_COUNT)))
    assert all(a["outcome"] == "complete" for a in answers), answers
    exchanges = _exchanges(probe_worker, "gather")
    assert len(exchanges) == GATHER_COUNT, exchanges
    if {e.version for e in exchanges} == {"HTTP/1.1"}:
        pytest.skip("not applicable: the caller speaks HTTP/1.1, so there is nothing to multiplex")
    assert {e.version for e in exchanges} == {"HTTP/2"}, exchanges
    assert len({e.connection for e in exchanges}) == 1, f"connections {[e.connection for e in exchanges]}"
    assert len({e.stream_id for e in exchanges}) == GATHER_COUNT


@pytest.mark.req("HTTP-CALLER-RST")
@pytest.mark.robustness
async def test_a_reset_request_fails_alone(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    calls: list[Any] = [
        impl_caller.call(probe_worker.endpoint("reset_stream"), {"reset": True}, deadline=PROMPT_DEADLINE_S),
        impl_caller.call(probe_worker.endpoint("stream"), {"count": 3}),
        impl_caller.call(probe_worker.endpoint("slow"), {"count": 5, "interval": 0.05}),
    ]
    reset, streamed, slow = await asyncio.gather(*calls)
    assert_prompt_failure(reset, "a stream reset by the worker")
    assert streamed["outcome"] == "complete" and len(streamed["items"]) == 3, streamed
    assert slow["outcome"] == "complete" and len(slow["items"]) == 5, slow


@pytest.mark.req("HTTP-CALLER-GOAWAY")
async def test_a_graceful_shutdown_lets_the_call_finish_and_the_next_use_a_new_connection(
    impl_caller: CallerUnderTest, probe_worker: ProbeWorker
):
    first = await impl_caller.call(probe_worker.endpoint("goaway"), {"count": 3})
    assert first["outcome"] == "complete" and len(first["items"]) == 3, first
    second = await impl_caller.call(probe_worker.endpoint("echo"), {"after": "goaway"})
    assert second["outcome"] == "complete" and second["items"] == [{"after": "goaway"}], second
    (shut,) = _exchanges(probe_worker, "goaway")
    (after,) = _exchanges(probe_worker, "echo")
    assert after.connection != shut.connection, "the next request went over the connection that was shut down"
