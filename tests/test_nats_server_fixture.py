"""The NATS server fixture runs a real server: clients talk to it, its limits hold, and it survives restarts."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import MaxPayloadError

from fixtures import nats_server as nats_server_module
from fixtures.nats_server import (
    BACKEND_ENV_VAR,
    BINARY_BACKEND,
    DEFAULT_MAX_PAYLOAD,
    TESTCONTAINERS_BACKEND,
    NatsServer,
    NatsServerError,
    NatsServerFactory,
    docker_engine_problem,
    locate_nats_server_binary,
    no_docker_engine_configured,
    pick_free_loopback_port,
    read_server_info,
)

WAIT = 10  # seconds; every await in these tests is bounded by this


async def connect(url: str, **options: Any) -> NatsClient:
    """A client that fails fast rather than hanging when the server is absent."""
    return await nats.connect(url, connect_timeout=2, **options)


async def serve_echo(client: NatsClient, subject: str) -> None:
    """A responder for request/reply checks; flush so the SUB is registered before anyone sends a request."""

    async def reply(msg: Msg) -> None:
        await msg.respond(b"echo:" + msg.data)

    await client.subscribe(subject, cb=reply)
    await client.flush(timeout=WAIT)


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    connection = await connect(nats_server.url, allow_reconnect=False)
    yield connection
    await connection.close()


# --- what the fixture reports -------------------------------------------------------------------------------------


def test_reports_backend_url_version_and_max_payload(nats_server: NatsServer) -> None:
    assert nats_server.backend in {TESTCONTAINERS_BACKEND, BINARY_BACKEND}
    assert re.fullmatch(r"nats://[^:/]+:\d+", nats_server.url)
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", nats_server.version)
    assert nats_server.max_payload == DEFAULT_MAX_PAYLOAD
    assert not nats_server.info.get("jetstream", False)


def test_binary_backend_listens_on_loopback_only(nats_server_factory: NatsServerFactory) -> None:
    server = nats_server_factory(backend="binary")
    assert server.backend == BINARY_BACKEND
    assert server.url == f"nats://127.0.0.1:{server.port}"
    assert server.info["host"] == "127.0.0.1"
    assert server.log_path is not None and "Server is ready" in server.log_path.read_text()


def test_binary_version_matches_installed_package(nats_server_factory: NatsServerFactory) -> None:
    server = nats_server_factory(backend="binary")
    version_output = subprocess.run(
        [str(locate_nats_server_binary()), "--version"], capture_output=True, text=True, timeout=WAIT, check=True
    ).stdout
    assert version_output.strip() == f"nats-server: v{server.version}"


def test_auto_backend_follows_docker_engine_availability(
    monkeypatch: pytest.MonkeyPatch, nats_server_factory: NatsServerFactory
) -> None:
    monkeypatch.delenv(BACKEND_ENV_VAR, raising=False)
    expected = TESTCONTAINERS_BACKEND if docker_engine_problem() is None else BINARY_BACKEND
    assert nats_server_factory().backend == expected


def test_jetstream_is_off_by_default_and_can_be_enabled(nats_server_factory: NatsServerFactory) -> None:
    assert not nats_server_factory().info.get("jetstream", False)
    assert nats_server_factory(jetstream=True).info["jetstream"] is True


# --- a real broker ------------------------------------------------------------------------------------------------


async def test_publish_subscribe(client: NatsClient) -> None:
    subscription = await client.subscribe("rp.fixture.pubsub")
    await client.publish("rp.fixture.pubsub", b"hello")
    message = await subscription.next_msg(timeout=WAIT)
    assert message.data == b"hello"


async def test_request_reply(client: NatsClient) -> None:
    await serve_echo(client, "rp.fixture.echo")
    reply = await client.request("rp.fixture.echo", b"ping", timeout=WAIT)
    assert reply.data == b"echo:ping"


async def test_publish_over_max_payload_fails_in_nats_py(nats_server_factory: NatsServerFactory) -> None:
    server = nats_server_factory(max_payload=4096)
    assert server.max_payload == 4096
    connection = await connect(server.url, allow_reconnect=False)
    try:
        assert connection.max_payload == 4096
        await connection.publish("rp.fixture.big", b"x" * 4096)
        with pytest.raises(MaxPayloadError):
            await connection.publish("rp.fixture.big", b"x" * 4097)
    finally:
        await connection.close()


def test_server_itself_rejects_oversized_publish(nats_server_factory: NatsServerFactory) -> None:
    """nats-py checks the limit client-side; this proves the server enforces it too, over a raw socket."""
    server = nats_server_factory(max_payload=1024)
    with socket.create_connection((server.host, server.port), timeout=WAIT) as sock:
        sock.recv(4096)  # INFO
        sock.sendall(b'CONNECT {"verbose":false}\r\nPUB rp.fixture.raw 2048\r\n')
        assert b"Maximum Payload Violation" in receive_until(sock, b"\r\n")


def receive_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


# --- faults -------------------------------------------------------------------------------------------------------


def test_stop_then_start_reuses_the_port(nats_server_factory: NatsServerFactory) -> None:
    server = nats_server_factory()
    url = server.url
    server.stop()
    assert not server.is_running
    with pytest.raises(OSError):
        read_server_info(server.host, server.port, timeout=1.0)
    server.start()
    assert server.is_running
    assert server.url == url


async def test_restart_keeps_url_and_reconnecting_client_recovers(nats_server_factory: NatsServerFactory) -> None:
    server = nats_server_factory()
    url_before, server_id_before = server.url, server.info["server_id"]
    reconnected = asyncio.Event()
    connection = await connect(
        server.url, reconnect_time_wait=0.1, max_reconnect_attempts=200, reconnected_cb=event_setter(reconnected)
    )
    try:
        await serve_echo(connection, "rp.fixture.restart")
        assert (await connection.request("rp.fixture.restart", b"before", timeout=WAIT)).data == b"echo:before"

        await asyncio.wait_for(asyncio.to_thread(server.restart), timeout=60)
        assert server.url == url_before
        assert server.info["server_id"] != server_id_before  # a new server process, not the old one

        await asyncio.wait_for(reconnected.wait(), timeout=WAIT)
        await connection.flush(timeout=WAIT)  # the re-sent SUB is registered before the request goes out
        assert (await connection.request("rp.fixture.restart", b"after", timeout=WAIT)).data == b"echo:after"
    finally:
        await connection.close()


def event_setter(event: asyncio.Event) -> Callable[[], Awaitable[None]]:
    async def set_event() -> None:
        event.set()

    return set_event


# --- choosing a backend -------------------------------------------------------------------------------------------


def test_unknown_backend_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV_VAR, "podman")
    with pytest.raises(NatsServerError, match=r"RP_NATS_BACKEND='podman'.*auto, testcontainers, binary"):
        NatsServer()


def test_unknown_backend_argument_fails_clearly() -> None:
    with pytest.raises(NatsServerError, match="not a known NATS backend"):
        NatsServer(backend="mock")


def test_forced_testcontainers_without_engine_fails_fast_and_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{pick_free_loopback_port()}")  # nothing listens there
    monkeypatch.setenv(BACKEND_ENV_VAR, "testcontainers")
    assert docker_engine_problem() is not None, "precondition: the probe must see no engine at this DOCKER_HOST"
    server = NatsServer()
    started = time.monotonic()
    with pytest.raises(NatsServerError, match="RP_NATS_BACKEND=testcontainers but no Docker engine answers"):
        server.start()
    assert time.monotonic() - started < 10
    server.close()


def test_invalid_max_payload_is_rejected_before_launch() -> None:
    with pytest.raises(NatsServerError, match="max_payload"):
        NatsServer(max_payload=0)


def test_restart_onto_a_taken_port_fails_clearly(nats_server_factory: NatsServerFactory) -> None:
    """A restart must not mistake another listener on its port for itself, and must say why it failed."""
    server = nats_server_factory(backend="binary", startup_timeout=5)
    server.stop()
    with socket.socket() as squatter:
        squatter.bind((server.host, server.port))
        squatter.listen()
        started = time.monotonic()
        with pytest.raises(NatsServerError, match="address already in use"):
            server.start()
        assert time.monotonic() - started < 5
    server.start()
    assert server.is_running


@pytest.fixture
def nothing_configures_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    """A machine where nothing configures a Docker engine and no socket is at the default path."""
    for name in nats_server_module.DOCKER_CONFIGURING_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(nats_server_module, "DOCKER_DEFAULT_SOCKET", tmp_path / "docker.sock")
    monkeypatch.setattr(nats_server_module, "DOCKER_CONFIGURING_FILES", (tmp_path / ".docker",))
    return tmp_path


def test_no_engine_is_known_without_asking_when_nothing_configures_one(nothing_configures_docker: Any) -> None:
    reason = no_docker_engine_configured()
    assert reason is not None and "docker.sock" in reason
    assert docker_engine_problem() == reason


@pytest.mark.parametrize("where", ["env", "file", "socket"])
def test_an_engine_configured_anywhere_is_asked(
    nothing_configures_docker: Any, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    if where == "env":
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{pick_free_loopback_port()}")  # nothing listens there
    elif where == "file":
        (nothing_configures_docker / ".docker").mkdir()
    else:
        (nothing_configures_docker / "docker.sock").touch()  # a socket path with no engine behind it
    assert no_docker_engine_configured() is None
    problem = docker_engine_problem()  # the SDK's answer: an engine (None), or why none answered
    assert problem is None or "no engine configured" not in problem, problem
