"""The worker's budget for admitted request bytes: payloads ACKed but not yet started by a handler.

Per-connection and incomplete-frame budgets bound what is buffered before a
request is complete; this one bounds what piles up after it is admitted (the
queue holds up to ``DYN_TCP_WORK_QUEUE_SIZE`` requests of up to 32 MiB).  Over
the budget, a request is refused with the plane's overload answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reference_impl.admission import DEFAULT_ADMITTED_BYTES_BUDGET, Admission
from reference_impl.config import ConfigError
from reference_impl.discovery.file_store import FileDiscovery
from reference_impl.protocol import ack
from reference_impl.transport.http.routing import answer_offer
from reference_impl.wire.request_frame import AckDecoder, encode_request
from reference_impl.worker import Worker, WorkerConfig


def test_admission_counts_waiting_bytes_until_requests_start() -> None:
    admission = Admission(1, 10, bytes_budget=100)
    assert admission.try_admit(60) and admission.waiting_bytes == 60
    assert not admission.bytes_fit(41) and not admission.try_admit(41)
    assert admission.admitted == 1 and admission.bytes_free == 40
    assert admission.try_admit(40) and admission.bytes_free == 0
    admission.started(60)
    assert admission.bytes_fit(60) and admission.waiting_bytes == 40


def test_a_request_larger_than_the_budget_is_admitted_when_none_waits() -> None:
    """One request of any admitted size can always proceed; the budget bounds what piles up behind it."""
    admission = Admission(1, 10, bytes_budget=100)
    assert admission.try_admit(500)
    assert not admission.try_admit(1)
    admission.started(500)
    assert admission.try_admit(1)


def test_no_budget_and_bad_budgets() -> None:
    unlimited = Admission(1, 10, bytes_budget=None)
    assert unlimited.try_admit(1 << 40) and unlimited.try_admit(1 << 40) and unlimited.bytes_free is None
    with pytest.raises(ValueError, match="bytes_budget"):
        Admission(1, 10, bytes_budget=0)
    with pytest.raises(AssertionError):
        Admission(1, 10).started(1)


def test_the_setting_is_read_from_its_variable() -> None:
    assert WorkerConfig().admitted_bytes_budget == DEFAULT_ADMITTED_BYTES_BUDGET == 256 * 1024 * 1024
    assert WorkerConfig.from_env({"RP_ADMITTED_BYTES_BUDGET": "4096"}).admitted_bytes_budget == 4096
    assert WorkerConfig.from_env({"RP_ADMITTED_BYTES_BUDGET": "0"}).admitted_bytes_budget is None  # no limit
    with pytest.raises(ConfigError, match="RP_ADMITTED_BYTES_BUDGET"):
        WorkerConfig.from_env({"RP_ADMITTED_BYTES_BUDGET": "-1"})


def test_the_http_plane_answers_the_refusal_with_503() -> None:
    assert answer_offer("echo", ack.admitted_bytes_exhausted(10, 0)).status == 503


async def _worker(tmp_path: Path, budget: int) -> Worker:
    async def echo(request: object, context: object) -> AsyncIterator[object]:
        yield request

    config = WorkerConfig.from_env(
        {}, max_concurrency=1, queue_size=100, admitted_bytes_budget=budget, tcp={"max_inflight_per_connection": 10}
    )
    worker = Worker("dos", "admitted", config=config, discovery=FileDiscovery(tmp_path))
    worker.serve("echo", echo)
    await worker.start()
    return worker


async def test_the_worker_refuses_what_would_pile_up_and_admits_again_once_requests_start(tmp_path: Path) -> None:
    worker = await _worker(tmp_path, budget=100)
    try:
        route_key = worker.records[0].transport_address.split("/", 1)[1]
        # Offered back to back: none has started yet (the loop has not run), so their bytes all wait.
        assert worker.offer("tcp", route_key, bytes(60), {}) is None
        refusal = worker.offer("tcp", route_key, bytes(60), {})
        assert refusal == ack.admitted_bytes_exhausted(60, 40)
        assert refusal.startswith(ack.OVERLOADED_PREFIX)
        for _ in range(20):
            await asyncio.sleep(0)  # the first request starts (it fails as malformed): its bytes are free
        assert worker._admission.waiting_bytes == 0
        assert worker.offer("tcp", route_key, bytes(60), {}) is None
    finally:
        await worker.stop(drain_timeout=1.0)


async def test_the_tcp_plane_acks_the_refusal_as_overloaded(tmp_path: Path) -> None:
    worker = await _worker(tmp_path, budget=100)
    try:
        host_port, route_key = worker.records[0].transport_address.split("/", 1)
        host, port = host_port.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"".join(encode_request(route_key, {}, bytes(80)) for _ in range(2)))  # one read, two frames
        decoder = AckDecoder()
        acks: list[bytes] = []
        while len(acks) < 2:
            decoder.feed(await asyncio.wait_for(reader.read(65536), 5.0))
            acks.extend(decoder)
        writer.close()
        assert acks[0] == b""
        assert acks[1].decode() == ack.admitted_bytes_exhausted(80, 20)
    finally:
        await worker.stop(drain_timeout=1.0)
