"""The reference's own name parsing and defaults that no conformance test can reach (found by the mutation run).

The suite always hands an implementation its discovery directory and never gives it a malformed endpoint
name, so these are the project's own checks: bad input gets a clear error, and the default matches Dynamo's.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from reference_impl.admission import Admission
from reference_impl.discovery.file_store import default_root
from reference_impl.errors import MalformedMessage
from reference_impl.protocol.envelope import build_envelope, parse_envelope
from reference_impl.protocol.messages import ConnectionInfo, RequestControlMessage, TcpStreamConnectionInfo
from reference_impl.routing import EndpointId, parse_socket_address


@pytest.mark.parametrize("name", ["ns.component", "ns", "a.b.c.d", "ns..endpoint", "dyn://ns.c"])
def test_an_endpoint_name_without_three_parts_is_refused_clearly(name: str):
    with pytest.raises(ValueError, match=re.escape("endpoint must be 'namespace.component.endpoint'")):
        EndpointId.parse(name)


def test_an_endpoint_name_parses_with_or_without_the_scheme():
    assert EndpointId.parse("dyn://ns.backend.generate") == EndpointId("ns", "backend", "generate")
    assert EndpointId.parse("ns.backend.generate") == EndpointId("ns", "backend", "generate")


@pytest.mark.parametrize(
    "text", ["::1:8000", "10.0.0.1", "[::1]8000", "host:8000", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:70000"]
)
def test_socket_addresses_that_are_not_an_ip_literal_and_a_port_are_refused(text: str):
    with pytest.raises(ValueError):
        parse_socket_address(text)


def test_socket_addresses_parse():
    assert parse_socket_address("[::1]:8000") == ("::1", 8000)
    assert parse_socket_address("127.0.0.1:65535") == ("127.0.0.1", 65535)


def test_the_discovery_root_defaults_to_dynamos(monkeypatch: pytest.MonkeyPatch):
    """Dynamo's file backend: ``$DYN_FILE_KV``, else ``$TMPDIR/dynamo_store_kv``."""
    monkeypatch.delenv("DYN_FILE_KV", raising=False)
    assert default_root() == Path(tempfile.gettempdir()) / "dynamo_store_kv"
    monkeypatch.setenv("DYN_FILE_KV", "/srv/kv")
    assert default_root() == Path("/srv/kv")


@pytest.mark.parametrize(("concurrency", "queue"), [(0, 10), (4, -1), (0, -1)])
def test_an_admission_pool_without_a_slot_or_with_a_negative_queue_is_refused(concurrency: int, queue: int):
    with pytest.raises(ValueError, match="max_concurrency must be >= 1 and queue_size >= 0"):
        Admission(concurrency, queue)


def test_a_request_payload_of_two_frames_is_malformed():
    """The envelope is exactly one header-and-data frame: a second one is not silently dropped."""
    control = RequestControlMessage(
        id="r1", connection_info=ConnectionInfo.for_tcp(TcpStreamConnectionInfo("127.0.0.1:9", "s1", "r1"))
    )
    one = build_envelope(control, {"n": 1})
    with pytest.raises(MalformedMessage, match="exactly one two-part frame, found 2"):
        parse_envelope(one + one)
    assert parse_envelope(one).control.id == "r1"
