"""No suite test may leave a NATS client of its own open (fixtures.nats_clients, fixtures.client_guard).

A leaked client reconnects forever on the event loop every later test shares; with adapter processes shared
across tests that hung the session's teardown. The guard closes such a client and errors the test that left
it, by name; the probes (wire client, probe worker) open and close theirs through the tracked helpers.
"""

from __future__ import annotations

import asyncio

import pytest

from fixtures import nats_clients
from fixtures.judge.discovery import FileDiscovery
from fixtures.nats_server import NatsServer
from fixtures.probes.callhome_recorder import CallHomeRecorder
from fixtures.probes.probe_worker import ProbeWorker
from fixtures.probes.wire_client import WireClient

pytest_plugins = ["pytester"]

SAMPLE = """
from fixtures import nats_clients

async def test_leaks_a_client(nats_server):
    await nats_clients.connect(nats_server.url, owner="the leaky probe")

async def test_runs_after_the_leak(nats_server):
    assert nats_clients.open_clients() == {}, "the guard did not close the leaked client"

async def test_closes_its_client(nats_server):
    client = await nats_clients.connect(nats_server.url, owner="a tidy probe")
    await nats_clients.close(client)
    assert client.is_closed
"""

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
"""


def test_a_test_leaving_a_client_open_errors_by_name_and_the_client_is_closed(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_sample=SAMPLE)
    result = pytester.runpytest_subprocess(
        "-p", "fixtures.nats_server", "-p", "fixtures.client_guard", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_leaks_a_client*", "*1 NATS client(s) left open by this test*the leaky probe*"]
    )


async def test_the_probes_close_the_clients_they_open(nats_server: NatsServer, tmp_path) -> None:
    before = set(nats_clients.open_clients())
    recorder = CallHomeRecorder()
    await recorder.start()
    client = WireClient(recorder, nats_url=nats_server.url)
    worker = ProbeWorker(
        FileDiscovery(tmp_path), namespace="probe", component="w", plane="nats", nats_url=nats_server.url
    )
    try:
        connection = await client.nats()
        await worker.start()
        opened = set(nats_clients.open_clients()) - before
        assert len(opened) == 2, f"the probes' clients are not tracked: {nats_clients.open_clients()}"
    finally:
        await worker.close()
        await client.close()
        await recorder.close()
    assert connection.is_closed
    assert set(nats_clients.open_clients()) - before == set()


async def test_concurrent_first_calls_open_one_wire_client_connection(nats_server: NatsServer) -> None:
    """Many calls starting at once (NATS-CONCURRENT) each asked for the connection: all but one leaked."""
    before = set(nats_clients.open_clients())
    recorder = CallHomeRecorder()
    await recorder.start()
    client = WireClient(recorder, nats_url=nats_server.url)
    try:
        connections = await asyncio.gather(*(client.nats() for _ in range(10)))
        assert len({id(c) for c in connections}) == 1
        assert len(set(nats_clients.open_clients()) - before) == 1
    finally:
        await client.close()
        await recorder.close()
    assert set(nats_clients.open_clients()) - before == set()
