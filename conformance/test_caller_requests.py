"""The implementation as a caller: the requests it sends, as a strict worker records them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from fixtures.failures import PROMPT_DEADLINE_S, assert_prompt_failure, before
from fixtures.judge.codecs import PayloadCodec
from fixtures.judge.discovery import InstanceRecord
from fixtures.judge.routing import parse_tcp_transport
from fixtures.judge.two_part import PRELUDE, xxh3_64
from fixtures.probes.probe_worker import ProbeWorker
from fixtures.roles import CallerUnderTest
from fixtures.timeouts import TimeoutInForce

REJECTION_KINDS = {"unavailable", "overloaded", "rejected"}
# The error kind a caller reports for each rejection prefix (Dynamo: ErrorType::WorkerUnavailable, WorkerOverloaded).
REJECTION_KIND_OF = {"reject_unavailable": "unavailable", "reject_overloaded": "overloaded"}


def expected_route(record: InstanceRecord) -> str:
    """Where a caller must send a request for ``record``: the TCP path, the URL's path or the NATS subject."""
    if record.plane == "tcp":
        return parse_tcp_transport(record.transport_address).path
    if record.plane == "http":
        return urlsplit(record.transport_address).path
    return record.transport_address


@pytest.mark.req("TCP-CALLER-FRAME", "ENV-CONTROL", "DISC-CALLER-FINDS", "TP-LAYOUT")
async def test_request_and_envelope_are_well_formed(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    await _well_formed_request(impl_caller, probe_worker)


@pytest.mark.req("TCP-CALLER-FRAME-NO-HEADERS", "ENV-CONTROL", "DISC-CALLER-FINDS", "TP-LAYOUT")
async def test_request_without_headers_and_envelope_are_well_formed(
    impl_caller: CallerUnderTest, probe_worker: ProbeWorker
):
    """Revision 0.7: the probe worker reads frames without a headers block (its layout), so none can be there."""
    await _well_formed_request(impl_caller, probe_worker)


async def _well_formed_request(impl_caller: CallerUnderTest, probe_worker: ProbeWorker) -> None:
    request = {"text": "hello", "n": 2}
    answer = await impl_caller.call(probe_worker.endpoint("echo"), request)
    assert answer["outcome"] == "complete", answer
    assert answer["items"] == [request]
    (received,) = await probe_worker.wait_for_requests(1)
    assert received.frame.path.decode() == expected_route(probe_worker.record("echo"))
    assert received.headers is not None, f"headers are not a string map: {received.frame.headers_raw[:200]!r}"
    assert received.envelope is not None, f"payload is not a request envelope: {received.envelope_error}"
    header_len, body_len, _ = PRELUDE.unpack_from(received.frame.payload)
    assert header_len > 0 and body_len > 0, "the envelope must be a header-and-data frame"
    assert len(received.frame.payload) == 24 + header_len + body_len, "trailing bytes after the envelope"
    control = received.envelope.control
    assert control.request_type == "single_in" and control.response_type == "many_out"
    assert control.connection_info.transport == "tcp_server"
    raw_control = json.loads(received.frame.payload[24 : 24 + header_len])
    assert isinstance(raw_control["connection_info"]["info"], str), "info must be a JSON string (double-encoded)"
    info = control.connection_info.tcp()
    assert info.context == control.id and info.stream_type == "response" and info.subject
    assert received.body == request


@pytest.mark.req("CALLER-HEADERS")
async def test_request_headers_carry_id_and_send_time(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    before_ns = time.time_ns()
    answer = await impl_caller.call(probe_worker.endpoint("echo"), {"h": 1})
    assert answer["outcome"] == "complete", answer
    (received,) = await probe_worker.wait_for_requests(1)
    assert received.headers is not None and received.envelope is not None
    assert received.headers.get("request-id") == received.envelope.control.id
    if impl_caller.plane == "tcp":
        assert received.headers.get("x-endpoint-path") == received.frame.path.decode()
    sent_ns = int(received.headers.get("x-frontend-send-ts-ns", "-1"))
    assert abs(sent_ns - before_ns) < 60 * 10**9, f"x-frontend-send-ts-ns {sent_ns} is not a wall-clock time in ns"


@pytest.mark.req("TP-CHECKSUM-SEND")
async def test_request_envelope_checksum_is_zero_or_xxh3(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    answer = await impl_caller.call(probe_worker.endpoint("echo"), {"c": 1})
    assert answer["outcome"] == "complete", answer
    (received,) = await probe_worker.wait_for_requests(1)
    header_len, body_len, checksum = PRELUDE.unpack_from(received.frame.payload)
    header = received.frame.payload[24 : 24 + header_len]
    body = received.frame.payload[24 + header_len : 24 + header_len + body_len]
    assert checksum in (0, xxh3_64(header, body))


@pytest.mark.req("CODEC-NEGOTIATION")
@pytest.mark.parametrize(
    ("codec", "advertise", "expected"),
    [(PayloadCodec.MSGPACK, True, "msgpack"), (PayloadCodec.JSON, True, "json"), (PayloadCodec.JSON, False, "json")],
    ids=["advertises-msgpack", "advertises-json", "advertises-nothing"],
)
async def test_body_uses_the_codec_the_worker_advertises(
    impl_caller: CallerUnderTest,
    make_probe_worker: Callable[..., ProbeWorker],
    codec: PayloadCodec,
    advertise: bool,
    expected: str,
):
    worker = make_probe_worker(impl_caller.discovery, codec=codec, advertise_codec=advertise)
    await worker.start()
    try:
        answer = await impl_caller.call(worker.endpoint("echo"), {"codec": expected})
        (received,) = await worker.wait_for_requests(1)
    finally:
        await worker.close()
    assert received.envelope is not None, received.envelope_error
    assert (received.envelope.control.payload_codec or "json") == expected
    assert received.body_error is None, f"body is not {expected}: {received.body_error}"
    assert received.body == {"codec": expected}
    assert answer["outcome"] == "complete" and answer["items"] == [{"codec": expected}], answer


@pytest.mark.req("DISC-CALLER-FINDS")
async def test_records_with_unknown_fields_are_still_used(
    impl_caller: CallerUnderTest, make_probe_worker: Callable[..., ProbeWorker]
):
    worker = make_probe_worker(
        impl_caller.discovery, extra_record_fields={"x_future_field": {"nested": [1, 2]}, "zz": "unknown"}
    )
    await worker.start()
    try:
        answer = await impl_caller.call(worker.endpoint("stream"), {"count": 2})
    finally:
        await worker.close()
    assert answer["outcome"] == "complete" and [i["seq"] for i in answer["items"]] == [0, 1], answer


@pytest.mark.robustness
@pytest.mark.req("CALLER-UNREACHABLE")
async def test_an_unreachable_worker_fails_the_call_promptly(
    impl_caller: CallerUnderTest, probe_worker: ProbeWorker, timeouts: Callable[[str], TimeoutInForce]
):
    """The record exists but nothing serves it: closed port (TCP), no responders (NATS)."""
    answer = await impl_caller.call(probe_worker.endpoint("absent"), {"n": 1}, deadline=timeouts("ack").bound("ack"))
    assert answer["outcome"] == "error", f"a call to nobody did not fail: {answer}"
    # Refused at once (closed port, no responders): nothing to wait for, so no ACK timeout may stand in.
    assert_prompt_failure(answer, "a call to an unreachable worker", within=before(timeouts("ack")))


@pytest.mark.req("TCP-CALLER-REJECT")
@pytest.mark.planes("tcp")
@pytest.mark.parametrize("behaviour", ["reject_unavailable", "reject_overloaded"])
async def test_rejection_acks_fail_the_call_at_once(
    impl_caller: CallerUnderTest, probe_worker: ProbeWorker, behaviour: str
):
    answer = await impl_caller.call(probe_worker.endpoint(behaviour), {"n": 1}, deadline=PROMPT_DEADLINE_S)
    assert answer["outcome"] == "error", f"a rejected call must fail: {answer}"
    # The prefix is the reason: unavailable (go elsewhere) and overloaded (busy) are not one error.
    assert answer["error"]["kind"] == REJECTION_KIND_OF[behaviour], f"not reported as {behaviour}: {answer['error']}"
    assert_prompt_failure(answer, f"a {behaviour} ACK")


@pytest.mark.req("TCP-CALLER-REJECT-OTHER")
@pytest.mark.planes("tcp")
async def test_other_non_empty_acks_fail_the_call(impl_caller: CallerUnderTest, probe_worker: ProbeWorker):
    answer = await impl_caller.call(probe_worker.endpoint("reject_other"), {"n": 1}, deadline=PROMPT_DEADLINE_S)
    assert answer["outcome"] == "error", f"a non-empty ACK was taken as success: {answer}"
    # Failing later by the call-home timeout is taking the ACK as success: the reason must be the ACK.
    assert answer["error"]["kind"] in REJECTION_KINDS, f"failed, but not as a rejection: {answer['error']}"
    assert_prompt_failure(answer, "an unknown non-empty ACK")
