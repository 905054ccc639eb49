"""The reference caller cancels a stream nobody reads: ``stop`` at once, ``kill`` after the grace period."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest

from fixtures.judge.discovery import FileDiscovery as JudgeDiscovery
from fixtures.probes.probe_worker import ProbeWorker
from reference_impl.caller import Caller, CallerConfig, ResponseStream
from reference_impl.discovery.file_store import FileDiscovery

GRACE = 0.4
SLOW = {"interval": 0.05, "count": 400}


async def _controls_after(probe: ProbeWorker, wait: float) -> list[tuple[float, str]]:
    (received,) = await probe.wait_for_requests(1)
    await asyncio.wait_for(received.done.wait(), wait)
    return received.activity.controls


@pytest.fixture
async def probe(tmp_path) -> AsyncIterator[ProbeWorker]:
    worker = ProbeWorker(JudgeDiscovery(tmp_path), component="drop")
    await worker.start()
    yield worker
    await worker.close()


async def _read_two(caller: Caller, probe: ProbeWorker) -> ResponseStream:
    stream = await caller.generate(probe.endpoint("slow"), dict(SLOW))
    items = [await stream.__anext__(), await stream.__anext__()]
    assert items == [{"seq": 0}, {"seq": 1}]
    return stream


async def test_a_released_stream_gets_stop_then_kill_after_the_grace(probe: ProbeWorker) -> None:
    async with Caller(FileDiscovery(probe.discovery.root), CallerConfig(drop_grace=GRACE)) as caller:
        stream = await _read_two(caller, probe)
        del stream
        gc.collect()
        controls = await _controls_after(probe, 10.0)
    assert [word for _, word in controls] == ["stop", "kill"]
    waited = controls[1][0] - controls[0][0]
    assert GRACE * 0.8 < waited < GRACE + 1.0, f"kill came {waited:.2f}s after stop"


async def test_cancelling_the_reading_task_sends_stop_while_the_stream_is_still_referenced(probe: ProbeWorker) -> None:
    async with Caller(FileDiscovery(probe.discovery.root), CallerConfig(drop_grace=GRACE)) as caller:
        stream = await _read_two(caller, probe)
        reader = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.01)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        controls = await _controls_after(probe, 10.0)
        assert stream is not None  # still referenced: the cancellation alone did it
    assert [word for _, word in controls][:1] == ["stop"]


async def test_a_finished_stream_sends_nothing_when_released(probe: ProbeWorker) -> None:
    async with Caller(FileDiscovery(probe.discovery.root), CallerConfig(drop_grace=GRACE)) as caller:
        stream = await caller.generate(probe.endpoint("stream"), {"count": 3})
        assert len(await stream.collect()) == 3
        del stream
        gc.collect()
        controls = await _controls_after(probe, 10.0)
    assert controls == []
