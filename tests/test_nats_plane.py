"""The NATS request plane's server and client, against a real NATS server.

The server side is driven with a fake RequestSink and observed with raw nats-py where the exact wire behaviour
matters (subjects, queue group, reply payload and headers); the client side is NatsRequestClient.
"""

from __future__ import annotations

import asyncio
import collections
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from fixtures.nats_server import NatsServer, NatsServerFactory, pick_free_loopback_port
from reference_impl import __version__
from reference_impl.errors import (
    AckTimeout,
    LocalProtocolError,
    RequestRejected,
    TransportError,
    WorkerOverloaded,
    WorkerUnavailable,
)
from reference_impl.protocol import ack
from reference_impl.routing import EndpointId, nats_service_name, nats_service_subject, nats_subject
from reference_impl.transport.nats.client import (
    NatsNoResponders,
    NatsPayloadTooLarge,
    NatsRequestClient,
    ReconnectPolicy,
    confirm_sent,
    encoded_header_size,
)
from reference_impl.transport.nats.server import NatsRequestServer
from reference_impl.transport.plane import Advertisement
from tests.fake_sink import FakeSink

WAIT = 10.0  # seconds; every wait in these tests is bounded by this
FAST_RECONNECT = ReconnectPolicy(time_wait=0.1, max_attempts=300)


# --- helpers ------------------------------------------------------------------------------------------------------


def new_endpoint(name: str = "generate", namespace: str = "ns") -> tuple[EndpointId, int]:
    """A component of its own per test, so tests sharing the session server never see each other's services."""
    return EndpointId(namespace, f"c{secrets.token_hex(4)}", name), secrets.randbits(64)


ServerMaker = Callable[..., Awaitable[NatsRequestServer]]
ClientMaker = Callable[..., NatsRequestClient]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerMaker]:
    servers: list[NatsRequestServer] = []

    async def make(sink: FakeSink, url: str, **options: Any) -> NatsRequestServer:
        server = NatsRequestServer(sink, url, service_version=__version__, **options)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def make_client() -> AsyncIterator[ClientMaker]:
    clients: list[NatsRequestClient] = []

    def make(url: str, **options: Any) -> NatsRequestClient:
        client = NatsRequestClient(url, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def raw(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    connection = await nats.connect(nats_server.url, connect_timeout=2, allow_reconnect=False)
    yield connection
    await connection.close()


async def serve(
    make_server: ServerMaker, sink: FakeSink, url: str, name: str = "generate"
) -> tuple[NatsRequestServer, EndpointId, int, Advertisement]:
    server = await make_server(sink, url)
    endpoint, instance_id = new_endpoint(name)
    advertisement = await server.serve_endpoint(endpoint, instance_id)
    return server, endpoint, instance_id, advertisement


async def silent_subscriber(connection: NatsClient, subject: str) -> None:
    """Takes requests and never replies, as a hung worker would."""

    async def ignore(msg: Msg) -> None:
        return None

    await connection.subscribe(subject, cb=ignore)
    await confirm_sent(connection, WAIT)


def dynamo_headers(request_id: str) -> dict[str, str]:
    return {"request-id": request_id, "x-frontend-send-ts-ns": str(time.time_ns())}


async def start_server(factory: NatsServerFactory, **options: Any) -> NatsServer:
    return await asyncio.to_thread(factory, **options)


# --- naming: service, subject, queue group --------------------------------------------------------------------------


async def test_advertisement_is_dynamos_unslugified_subject(make_server: ServerMaker, nats_server: NatsServer) -> None:
    server = await make_server(FakeSink(), nats_server.url)
    endpoint, instance_id = EndpointId("testns", "backend", "generate"), 0x9168A7BFDCD15423
    advertisement = server.advertise(endpoint, instance_id)
    assert advertisement == Advertisement(
        "nats_tcp", "testns_backend.generate-9168a7bfdcd15423", "testns_backend.generate-9168a7bfdcd15423"
    )
    assert await server.serve_endpoint(endpoint, instance_id) == advertisement


async def test_advertise_alone_subscribes_in_the_background(
    make_server: ServerMaker, make_client: ClientMaker, nats_server: NatsServer
) -> None:
    """The synchronous PlaneServer.advertise still serves the endpoint; serve_endpoint only adds the wait."""
    sink = FakeSink()
    server = await make_server(sink, nats_server.url)
    endpoint, instance_id = new_endpoint()
    advertisement = server.advertise(endpoint, instance_id)
    assert await send_until_accepted(make_client(nats_server.url), advertisement.address) == b""
    assert await server.serve_endpoint(endpoint, instance_id) == advertisement  # idempotent
    assert len(sink.offers) == 1


async def test_srv_info_ping_and_stats_describe_the_service(
    make_server: ServerMaker, nats_server: NatsServer, raw: NatsClient
) -> None:
    _, endpoint, instance_id, _ = await serve(make_server, FakeSink(), nats_server.url)
    service = nats_service_name(endpoint)

    info = json.loads((await raw.request(f"$SRV.INFO.{service}", b"", timeout=WAIT)).data)
    assert info["type"] == "io.nats.micro.v1.info_response"
    assert info["name"] == service
    assert info["version"] == __version__
    assert info["description"] == f"Dynamo component {endpoint.component} in namespace {endpoint.namespace}"
    assert info["metadata"] == {}
    assert info["endpoints"] == [
        {
            "name": f"{service}-{endpoint.endpoint}-{instance_id:x}",
            "subject": f"{service}.{endpoint.endpoint}-{instance_id:x}",
            "queue_group": "q",
            "metadata": {},
        }
    ]

    ping = json.loads((await raw.request(f"$SRV.PING.{service}", b"", timeout=WAIT)).data)
    assert (ping["type"], ping["name"], ping["id"]) == ("io.nats.micro.v1.ping_response", service, info["id"])
    stats = json.loads((await raw.request(f"$SRV.STATS.{service}.{info['id']}", b"", timeout=WAIT)).data)
    assert stats["type"] == "io.nats.micro.v1.stats_response"
    assert [e["subject"] for e in stats["endpoints"]] == [nats_service_subject(endpoint, instance_id)]


async def test_endpoints_of_one_component_share_one_service(
    make_server: ServerMaker, nats_server: NatsServer, raw: NatsClient
) -> None:
    server = await make_server(FakeSink(), nats_server.url)
    endpoint, instance_id = new_endpoint("generate")
    other = EndpointId(endpoint.namespace, endpoint.component, "embed")
    await asyncio.gather(server.serve_endpoint(endpoint, instance_id), server.serve_endpoint(other, instance_id))
    info = json.loads((await raw.request(f"$SRV.INFO.{nats_service_name(endpoint)}", b"", timeout=WAIT)).data)
    assert sorted(e["subject"] for e in info["endpoints"]) == sorted(
        nats_service_subject(e, instance_id) for e in (endpoint, other)
    )


async def test_two_servers_share_the_subject_through_queue_group_q(
    make_server: ServerMaker, make_client: ClientMaker, nats_server: NatsServer
) -> None:
    """Two processes with the same instance id: each request reaches exactly one of them."""
    first, second = FakeSink(), FakeSink()
    endpoint, instance_id = new_endpoint()
    for sink in (first, second):
        server = await make_server(sink, nats_server.url)
        await server.serve_endpoint(endpoint, instance_id)
    client = make_client(nats_server.url)
    subject = nats_subject(endpoint, instance_id)
    for index in range(60):
        assert await client.send(subject, dynamo_headers(f"r{index}"), b"x") == b""
    assert len(first.offers) + len(second.offers) == 60
    assert first.offers and second.offers  # a plain (non-queue) subscription would have given both all 60


async def test_leading_underscore_namespace_advertises_a_subject_nobody_serves(
    make_server: ServerMaker, make_client: ClientMaker, nats_server: NatsServer, raw: NatsClient
) -> None:
    """Dynamo's quirk, kept: discovery uses the raw ``ns_component``, the service its slug (leading ``_`` trimmed)."""
    server = await make_server(FakeSink(), nats_server.url)
    endpoint, instance_id = new_endpoint(namespace="_ns")
    advertisement = await server.serve_endpoint(endpoint, instance_id)
    assert advertisement.address.startswith("_ns_")
    assert nats_service_subject(endpoint, instance_id) == advertisement.address.removeprefix("_")
    assert (await raw.request(nats_service_subject(endpoint, instance_id), b"x", timeout=WAIT)).data == b""
    with pytest.raises(NatsNoResponders):
        await make_client(nats_server.url).send(advertisement.address, {}, b"x")


# --- one request: ACK, headers, rejection -------------------------------------------------------------------------


async def test_accepted_request_gets_an_empty_reply_without_headers_before_processing(
    make_server: ServerMaker, nats_server: NatsServer, raw: NatsClient
) -> None:
    acked = asyncio.Event()
    processed: list[bool] = []

    async def process() -> None:  # the worker's processing, which here can only finish after the ACK arrived
        await asyncio.wait_for(acked.wait(), WAIT)
        processed.append(True)

    tasks: list[asyncio.Task[None]] = []
    sink = FakeSink(on_accept=lambda offer: tasks.append(asyncio.ensure_future(process())))
    _, _, _, advertisement = await serve(make_server, sink, nats_server.url)

    reply = await raw.request(advertisement.address, b"envelope", timeout=WAIT, headers=dynamo_headers("r1"))
    assert (reply.data, reply.headers) == (b"", None)
    assert not processed
    acked.set()
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    assert processed == [True]
    assert [(o.plane, o.route_key, o.payload) for o in sink.offers] == [("nats", advertisement.route_key, b"envelope")]


async def test_headers_and_payload_arrive_intact(
    make_server: ServerMaker, make_client: ClientMaker, nats_server: NatsServer
) -> None:
    sink = FakeSink()
    _, _, _, advertisement = await serve(make_server, sink, nats_server.url)
    headers = {
        "request-id": "99ba1c99-35fb-4d0f-b820-7c085372ba90",
        "x-frontend-send-ts-ns": "1795404569639554407",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
        "x-request-id": "client-chosen-id",
    }
    payload = bytes(range(256)) * 4 + b"\r\nNATS/1.0\r\n\r\n"  # binary, with protocol-looking bytes
    assert await make_client(nats_server.url).send(advertisement.address, headers, payload) == b""
    assert len(sink.offers) == 1
    assert sink.offers[0].headers == headers
    assert sink.offers[0].payload == payload


async def test_rejection_is_the_text_plus_micro_error_headers(
    make_server: ServerMaker, make_client: ClientMaker, nats_server: NatsServer, raw: NatsClient
) -> None:
    sink = FakeSink(reject=ack.AT_CAPACITY)
    _, _, _, advertisement = await serve(make_server, sink, nats_server.url)

    reply = await raw.request(advertisement.address, b"x", timeout=WAIT, headers=dynamo_headers("r1"))
    assert reply.data == ack.AT_CAPACITY.encode()
    assert reply.headers == {"Nats-Service-Error": ack.AT_CAPACITY, "Nats-Service-Error-Code": "503"}

    answer = await make_client(nats_server.url).send(advertisement.address, dynamo_headers("r2"), b"x")
    assert answer == ack.AT_CAPACITY.encode()
    with pytest.raises(WorkerOverloaded):
        ack.check_ack(answer)


async def test_service_error_without_payload_still_reads_as_a_rejection(
    make_client: ClientMaker, nats_server: NatsServer, raw: NatsClient
) -> None:
    subject = f"rp.test.service-error.{secrets.token_hex(4)}"

    async def fail(msg: Msg) -> None:
        await raw.publish(msg.reply, b"", headers={"Nats-Service-Error": "boom", "Nats-Service-Error-Code": "500"})

    await raw.subscribe(subject, cb=fail)
    await confirm_sent(raw, WAIT)
    answer = await make_client(nats_server.url).send(subject, {}, b"x")
    assert answer == b"NATS service error 500: boom"
    with pytest.raises(RequestRejected):
        ack.check_ack(answer)


async def test_a_failing_sink_gets_an_error_reply_and_serving_goes_on(
    make_server: ServerMaker, make_client: ClientMaker, nats_server: NatsServer
) -> None:
    sink = FakeSink(fail=True)
    _, _, _, advertisement = await serve(make_server, sink, nats_server.url)
    client = make_client(nats_server.url)
    answer = await client.send(advertisement.address, {}, b"x")
    with pytest.raises(WorkerUnavailable, match="internal error: RuntimeError"):
        ack.check_ack(answer)
    sink.fail = False
    assert await client.send(advertisement.address, {}, b"y") == b""


async def test_request_without_reply_subject_is_offered_and_recorded(
    make_server: ServerMaker, make_client: ClientMaker, nats_server: NatsServer, raw: NatsClient
) -> None:
    sink = FakeSink()
    server, _, _, advertisement = await serve(make_server, sink, nats_server.url)
    await raw.publish(advertisement.address, b"fire-and-forget")
    await confirm_sent(raw, WAIT)
    assert await make_client(nats_server.url).send(advertisement.address, {}, b"next") == b""
    assert [o.payload for o in sink.offers] == [b"fire-and-forget", b"next"]
    assert len(server.wire_errors) == 1 and "no reply subject" in server.wire_errors[0]


# --- client errors ------------------------------------------------------------------------------------------------


async def test_no_responders_fails_at_once(make_client: ClientMaker, nats_server: NatsServer) -> None:
    client = make_client(nats_server.url)
    subject = f"ns_nobody.generate-{secrets.randbits(64):x}"
    started = time.monotonic()
    with pytest.raises(NatsNoResponders, match=f"no responders on {subject}") as caught:
        await client.send(subject, dynamo_headers("r1"), b"x")
    assert time.monotonic() - started < 1.0
    assert isinstance(caught.value, TransportError)


async def test_silent_subscriber_gives_ack_timeout(
    make_client: ClientMaker, nats_server: NatsServer, raw: NatsClient
) -> None:
    subject = f"rp.test.silent.{secrets.token_hex(4)}"
    await silent_subscriber(raw, subject)
    client = make_client(nats_server.url, request_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(AckTimeout, match=f"no ACK on {subject} within 0.3s"):
        await client.send(subject, {}, b"x")
    assert 0.3 <= time.monotonic() - started < 2.0


async def test_payload_over_max_payload_is_refused_clearly(
    make_server: ServerMaker, make_client: ClientMaker, nats_server_factory: NatsServerFactory
) -> None:
    small = await start_server(nats_server_factory, max_payload=4096)
    _, _, _, advertisement = await serve(make_server, FakeSink(), small.url)
    client = make_client(small.url)
    with pytest.raises(NatsPayloadTooLarge, match=r"is 5000 bytes .* over the NATS server's max_payload of 4096 bytes"):
        await client.send(advertisement.address, {}, b"x" * 5000)
    with pytest.raises(LocalProtocolError):
        await client.send(advertisement.address, {}, b"x" * 5000)
    assert await client.send(advertisement.address, {}, b"x" * 4096) == b""


async def test_headers_count_toward_max_payload(
    make_server: ServerMaker, make_client: ClientMaker, nats_server_factory: NatsServerFactory
) -> None:
    """The server counts headers + payload; nats-py checks the payload only, and an oversized HPUB costs the
    connection.  The client counts both, so the connection survives and the exact limit still passes."""
    small = await start_server(nats_server_factory, max_payload=4096)
    sink = FakeSink()
    _, _, _, advertisement = await serve(make_server, sink, small.url)
    client = make_client(small.url)
    headers = dynamo_headers("r1")
    header_size = encoded_header_size(headers)
    with pytest.raises(NatsPayloadTooLarge, match=f"{4097 - header_size} payload \\+ {header_size} headers"):
        await client.send(advertisement.address, headers, b"x" * (4097 - header_size))
    assert await client.send(advertisement.address, headers, b"x" * (4096 - header_size)) == b""
    assert len(sink.offers) == 1


async def test_raw_nats_py_loses_its_connection_on_oversized_headers(nats_server_factory: NatsServerFactory) -> None:
    """Why the client counts headers itself: the server closes the connection and nats-py does not reconnect."""
    small = await start_server(nats_server_factory, max_payload=1024)
    connection = await nats.connect(small.url, connect_timeout=2, max_reconnect_attempts=3, reconnect_time_wait=0.1)
    try:
        await connection.publish("rp.test.oversized", b"x" * 1020, headers={"request-id": "r1"})
        deadline = time.monotonic() + WAIT
        while not connection.is_closed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert connection.is_closed
        assert "maximum payload violation" in str(connection.last_error).lower()
    finally:
        await connection.close()


async def test_server_start_fails_clearly_without_nats(make_client: ClientMaker) -> None:
    url = f"nats://127.0.0.1:{pick_free_loopback_port()}"
    server = NatsRequestServer(FakeSink(), url, service_version=__version__, connect_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(TransportError, match=f"cannot connect to NATS at {url}"):
        await server.start()
    with pytest.raises(TransportError, match=f"cannot connect to NATS at {url}"):
        await make_client(url, connect_timeout=1.0).send("ns_c.generate-1", {}, b"x")
    assert time.monotonic() - started < 4.0


# --- lifecycle and faults ------------------------------------------------------------------------------------------


async def test_closed_server_unsubscribes(
    make_server: ServerMaker, make_client: ClientMaker, nats_server: NatsServer
) -> None:
    server, _, _, advertisement = await serve(make_server, FakeSink(), nats_server.url)
    client = make_client(nats_server.url)
    assert await client.send(advertisement.address, {}, b"x") == b""
    await server.close()
    with pytest.raises(NatsNoResponders):
        await client.send(advertisement.address, {}, b"x")


async def test_closing_the_client_fails_requests_in_flight(
    make_client: ClientMaker, nats_server: NatsServer, raw: NatsClient
) -> None:
    subject = f"rp.test.silent.{secrets.token_hex(4)}"
    await silent_subscriber(raw, subject)
    client = make_client(nats_server.url, request_timeout=WAIT)
    in_flight = asyncio.ensure_future(client.send(subject, {}, b"x"))
    await asyncio.sleep(0.2)
    await client.close()
    with pytest.raises(TransportError, match="lost while waiting for the ACK"):
        await asyncio.wait_for(in_flight, 2.0)
    with pytest.raises(TransportError, match="closed"):
        await client.send(subject, {}, b"x")


async def test_server_restart_fails_in_flight_requests_and_later_ones_succeed(
    nats_server_factory: NatsServerFactory, make_server: ServerMaker, make_client: ClientMaker
) -> None:
    broker = await start_server(nats_server_factory)
    sink = FakeSink()
    server = await make_server(sink, broker.url, reconnect=FAST_RECONNECT)
    endpoint, instance_id = new_endpoint()
    advertisement = await server.serve_endpoint(endpoint, instance_id)
    client = make_client(broker.url, request_timeout=WAIT, reconnect=FAST_RECONNECT)
    assert await client.send(advertisement.address, {}, b"before") == b""

    hung = await nats.connect(broker.url, connect_timeout=2, reconnect_time_wait=0.1, max_reconnect_attempts=300)
    try:
        silent = f"rp.test.silent.{secrets.token_hex(4)}"
        await silent_subscriber(hung, silent)
        in_flight = [asyncio.ensure_future(client.send(silent, {}, b"waiting")) for _ in range(5)]
        await asyncio.sleep(0.2)

        await asyncio.wait_for(asyncio.to_thread(broker.stop), WAIT)
        stopped = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*in_flight, return_exceptions=True), WAIT)
        assert time.monotonic() - stopped < 3.0  # not the 10 s request timeout
        for result in results:
            assert isinstance(result, TransportError) and not isinstance(result, AckTimeout), result
            assert "lost while waiting for the ACK" in str(result)
        with pytest.raises(TransportError, match="not connected to NATS"):
            await client.send(advertisement.address, {}, b"while down")

        await asyncio.wait_for(asyncio.to_thread(broker.start), WAIT * 3)
        answer = await send_until_accepted(client, advertisement.address)
        assert answer == b""
        assert sink.offers[0].payload == b"before" and sink.offers[-1].payload == b"after"
        assert server.failure is None
        service = nats_service_name(endpoint)
        info = json.loads((await hung.request(f"$SRV.INFO.{service}", b"", timeout=WAIT)).data)
        assert [e["subject"] for e in info["endpoints"]] == [nats_service_subject(endpoint, instance_id)]
    finally:
        await hung.close()


async def send_until_accepted(client: NatsRequestClient, subject: str) -> bytes:
    """After a restart the worker and the caller reconnect independently: retry until both are back."""
    deadline = time.monotonic() + WAIT * 2
    while True:
        try:
            return await client.send(subject, {}, b"after")
        except TransportError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_many_concurrent_requests_are_each_acked_once(
    make_server: ServerMaker, make_client: ClientMaker, nats_server: NatsServer
) -> None:
    sink = FakeSink()
    _, _, _, advertisement = await serve(make_server, sink, nats_server.url)
    client = make_client(nats_server.url)
    request_ids = [f"req-{index}" for index in range(500)]
    answers = await asyncio.wait_for(
        asyncio.gather(*(client.send(advertisement.address, dynamo_headers(rid), rid.encode()) for rid in request_ids)),
        WAIT * 2,
    )
    assert answers == [b""] * 500
    seen = collections.Counter(offer.headers["request-id"] for offer in sink.offers)
    assert seen == collections.Counter(request_ids)
    assert all(offer.payload == offer.headers["request-id"].encode() for offer in sink.offers)
