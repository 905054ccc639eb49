"""The reference implementation against itself, across processes, on every plane.

Its caller library calls the worker its adapter serves, and its worker
library answers the caller its adapter runs.  This imports
``reference_impl`` and so judges nothing but the reference: it lives with
the reference's own tests, not in the suite (``conformance/``), whose
verdicts come only from ``fixtures.judge``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fixtures.adapters import standard_endpoints
from fixtures.roles import CallerUnderTest, WorkerUnderTest, nats_url_for
from reference_impl.caller import Caller, CallerConfig, HandlerError
from reference_impl.discovery.file_store import FileDiscovery
from reference_impl.transport.nats.config import NatsCallerConfig, NatsWorkerConfig
from reference_impl.worker import Worker, WorkerConfig

ENDPOINT = "conformance.worker.{}"


@pytest.fixture
async def reference_caller(impl_worker: WorkerUnderTest, request: pytest.FixtureRequest) -> AsyncIterator[Caller]:
    nats_url = nats_url_for(request, impl_worker.plane)
    config = CallerConfig(planes={"nats": NatsCallerConfig(url=nats_url)}) if nats_url else CallerConfig()
    async with Caller(FileDiscovery(impl_worker.discovery.root), config) as caller:
        yield caller


async def test_reference_caller_streams_from_the_worker(impl_worker: WorkerUnderTest, reference_caller: Caller):
    stream = await reference_caller.generate(ENDPOINT.format("stream"), {"count": 50, "size": 3})
    assert [item["seq"] for item in await stream.collect()] == list(range(50))
    echo = await reference_caller.call(ENDPOINT.format("echo"), {"deep": {"list": [1, 2, {"x": None}]}})
    assert echo == [{"deep": {"list": [1, 2, {"x": None}]}}]


async def test_reference_caller_sees_the_worker_errors(impl_worker: WorkerUnderTest, reference_caller: Caller):
    stream = await reference_caller.generate(ENDPOINT.format("error_mid"), {"count": 2})
    received: list[Any] = []
    with pytest.raises(HandlerError, match="error_mid"):
        async for item in stream:
            received.append(item)
    assert received == [{"seq": 0}, {"seq": 1}]


async def test_reference_caller_cancels_the_worker(impl_worker: WorkerUnderTest, reference_caller: Caller):
    tag = f"interop-{id(reference_caller)}"
    stream = await reference_caller.generate(ENDPOINT.format("slow"), {"tag": tag, "interval": 0.05, "count": 400})
    received = []
    async for item in stream:
        received.append(item)
        if len(received) == 2:
            stream.stop()
    assert len(received) < 40
    for _ in range(60):
        record = (await impl_worker.slow_records()).get(tag, {})
        if record.get("cancelled"):
            break
        await asyncio.sleep(0.05)
    assert record.get("cancelled"), record


@pytest.fixture
async def reference_worker(impl_caller: CallerUnderTest, request: pytest.FixtureRequest) -> AsyncIterator[Worker]:
    nats_url = nats_url_for(request, impl_caller.plane)
    config = WorkerConfig(planes={"nats": NatsWorkerConfig(url=nats_url)}) if nats_url else WorkerConfig()
    worker = Worker(
        "interop",
        "reference",
        plane=impl_caller.plane,
        discovery=FileDiscovery(impl_caller.discovery.root),
        config=config,
    )
    for name, handler in standard_endpoints.STANDARD_ENDPOINTS.items():
        worker.serve(name, handler)
    await worker.start()
    yield worker
    await worker.stop(drain_timeout=2.0)


async def test_caller_streams_from_a_reference_worker(
    impl_caller: CallerUnderTest, reference_worker: Worker, request_size_limit: int
):
    answer = await impl_caller.call("interop.reference.stream", {"count": 50, "size": 3})
    assert answer["outcome"] == "complete", answer
    assert [item["seq"] for item in answer["items"]] == list(range(50))
    big = "z" * min(2 * 1024 * 1024, request_size_limit - 64 * 1024)
    sink = await impl_caller.call("interop.reference.sink", {"blob": big})
    assert sink["outcome"] == "complete" and sink["items"][0]["size"] == len(big), sink


async def test_caller_sees_reference_worker_errors(impl_caller: CallerUnderTest, reference_worker: Worker):
    answer = await impl_caller.call("interop.reference.error_mid", {"count": 2}, deadline=10.0)
    assert answer["items"] == [{"seq": 0}, {"seq": 1}], answer
    assert answer["outcome"] == "error" and "error_mid" in answer["error"]["message"], answer


async def test_caller_cancels_a_reference_worker(impl_caller: CallerUnderTest, reference_worker: Worker):
    tag = "interop-cancel"
    answer = await impl_caller.call(
        "interop.reference.slow",
        {"tag": tag, "interval": 0.05, "count": 400},
        cancel={"after_items": 2, "mode": "stop"},
        deadline=15.0,
    )
    assert answer["outcome"] in ("cancelled", "complete"), answer
    for _ in range(60):
        record = standard_endpoints.RECORDS.get(tag, {})
        if record.get("cancelled"):
            break
        await asyncio.sleep(0.05)
    assert record.get("cancelled"), f"the reference worker's handler never saw the cancel: {record}"
