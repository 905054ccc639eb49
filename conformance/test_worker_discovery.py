"""The implementation as a worker: what it publishes in discovery."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable

import pytest

from fixtures.judge.discovery import encode_key
from fixtures.judge.routing import EndpointId, instance_path, parse_tcp_transport, slugify
from fixtures.roles import WorkerUnderTest

U64_MAX = (1 << 64) - 1


def _record_files(worker: WorkerUnderTest) -> dict[str, dict[str, object]]:
    bucket = worker.discovery.bucket
    return {path.name: json.loads(path.read_bytes()) for path in bucket.iterdir() if not path.name.startswith(".tmp_")}


@pytest.mark.req("DISC-RECORD")
async def test_records_have_the_endpoint_record_shape(impl_worker: WorkerUnderTest):
    documents = list(_record_files(impl_worker).values())
    assert documents, "no record files"
    for document in documents:
        assert document["type"] == "Endpoint"
        assert document["namespace"] == impl_worker.namespace and document["component"] == impl_worker.component
        assert isinstance(document["endpoint"], str)
        instance_id = document["instance_id"]
        assert isinstance(instance_id, int) and not isinstance(instance_id, bool) and 0 <= instance_id <= U64_MAX
        transport = document["transport"]
        assert isinstance(transport, dict) and len(transport) == 1, transport
        assert next(iter(transport)) in ("tcp", "nats_tcp", "http")
        codec = document.get("request_plane_codec")
        assert codec in (None, "json", "msgpack"), codec
    assert len({d["instance_id"] for d in documents}) == 1, "one process publishes one instance id"


@pytest.mark.req("DISC-FILE-NAME")
async def test_record_files_are_named_by_the_escaped_key(impl_worker: WorkerUnderTest):
    for name, document in _record_files(impl_worker).items():
        key = f"{document['namespace']}/{document['component']}/{document['endpoint']}/{document['instance_id']:x}"
        assert name == encode_key(key), f"{name!r} is not the NON_ALPHANUMERIC escape of {key!r}"
        assert re.fullmatch(r"[A-Za-z0-9%]+", name)


@pytest.mark.req("DISC-FILE-NAME-FLAT")
async def test_record_files_are_named_by_the_flat_key(impl_worker: WorkerUnderTest):
    for name, document in _record_files(impl_worker).items():
        key = f"{document['namespace']}_{document['component']}_{document['endpoint']}"
        expected = f"{slugify(key)}_{document['instance_id']:x}"
        assert name == expected, f"{name!r} is not the flat key of {key!r} and instance {document['instance_id']:x}"


def _endpoint_only_path(endpoint: EndpointId, instance_id: int) -> str:
    """Revision 0.7: ``{endpoint}``, no instance id."""
    return endpoint.endpoint


def _legacy_instance_path(endpoint: EndpointId, instance_id: int) -> str:
    """Revisions before 1.6: ``{instance_id:x}/{endpoint}``."""
    return f"{instance_id:x}/{endpoint.endpoint}"


@pytest.mark.planes("tcp")
@pytest.mark.parametrize(
    "expected_path",
    [
        pytest.param(instance_path, marks=pytest.mark.req("DISC-TCP-ADDRESS"), id="rev1.6"),
        pytest.param(_legacy_instance_path, marks=pytest.mark.req("DISC-TCP-ADDRESS-LEGACY"), id="rev0.8"),
        pytest.param(_endpoint_only_path, marks=pytest.mark.req("DISC-TCP-ADDRESS-ENDPOINT"), id="rev0.7"),
    ],
)
async def test_tcp_address_names_the_instance_path(
    impl_worker: WorkerUnderTest, expected_path: Callable[[EndpointId, int], str]
):
    for document in _record_files(impl_worker).values():
        address = document["transport"]["tcp"]  # type: ignore[index]
        target = parse_tcp_transport(address)
        endpoint = EndpointId(document["namespace"], document["component"], document["endpoint"])  # type: ignore[arg-type]
        assert target.path == expected_path(endpoint, document["instance_id"])  # type: ignore[arg-type]
        assert target.host == "127.0.0.1", "the suite asked for loopback (DYN_TCP_RPC_HOST)"
        _, writer = await asyncio.wait_for(asyncio.open_connection(target.host, target.port), 5.0)
        writer.close()


# DISC-LIVENESS: a change of a record's mtime at least this long after ``serve`` returned is a refresh; one sooner
# could still be the publication itself (a record written twice as it is registered).
REFRESH_AFTER_PUBLICATION_S = 0.25
REFRESH_POLL_S = 0.05


@pytest.mark.req("DISC-LIVENESS")
async def test_records_are_refreshed_inside_the_ttl(impl_worker: WorkerUnderTest):
    """Refreshed since the worker published it: at once if the (shared) worker has been up a while, else within 7 s."""
    path = next(p for p in impl_worker.discovery.bucket.iterdir() if not p.name.startswith(".tmp_"))
    published = impl_worker.published_mtimes.get(path.name, path.stat().st_mtime)
    deadline = time.monotonic() + 7.0
    while time.monotonic() < deadline:
        if path.stat().st_mtime >= published + REFRESH_AFTER_PUBLICATION_S:
            return
        await asyncio.sleep(REFRESH_POLL_S)
    pytest.fail(f"{path.name} was not refreshed within 7 s (Dynamo peers delete records older than 10 s)")
