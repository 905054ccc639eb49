"""The probes route leniently and judge strictly: a malformed-but-routable message still reaches its test,
which then fails on the requirement about that message instead of timing out."""

from __future__ import annotations

import pytest

from fixtures.judge import two_part
from fixtures.judge.codecs import PayloadCodec
from fixtures.judge.control import ConnectionInfo, RequestControlMessage, TcpStreamConnectionInfo
from fixtures.judge.envelope import parse_envelope
from fixtures.judge.errors import WireError
from fixtures.probes.callhome_recorder import routing_subject
from fixtures.probes.probe_worker import CallHomeTarget, _as_a_lenient_worker_reads_it


def test_the_recorder_routes_on_the_subject_alone():
    assert routing_subject(b'{"stream_type":"response","subject":"s1"}') == "s1"
    assert routing_subject(b'{"subject":"s1","stream_type":"response","extra":1}') == "s1"
    assert routing_subject(b'{"subject":7}') is None
    assert routing_subject(b"garbage") is None


def _envelope(control_json: bytes, body: bytes = b'{"x":1}') -> bytes:
    return two_part.encode(control_json, body)


def test_the_probe_worker_answers_where_dynamo_would():
    info = TcpStreamConnectionInfo("127.0.0.1:9", "s1", "r1")
    good = RequestControlMessage("r1", ConnectionInfo.for_tcp(info)).to_json_bytes()
    reordered = good.replace(b'"id":"r1","request_type":"single_in"', b'"request_type":"single_in","id":"r1"')
    with pytest.raises(WireError, match="order"):
        parse_envelope(_envelope(reordered))
    assert _as_a_lenient_worker_reads_it(_envelope(reordered)) == (
        CallHomeTarget("127.0.0.1:9", "s1", PayloadCodec.JSON),
        {"x": 1},
    )
    mismatched = RequestControlMessage("r2", ConnectionInfo.for_tcp(info)).to_json_bytes()
    assert _as_a_lenient_worker_reads_it(_envelope(mismatched)) is None, "context != id: Dynamo does not call home"
    assert _as_a_lenient_worker_reads_it(_envelope(good, b"")) is None, "header-only: no body, no answer"
