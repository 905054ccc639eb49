"""NATS request plane, worker side: a NATS "micro" service per component.

As Dynamo does it (http2-nats-discovery.md §3.2-3.4):

* one service per component, named ``slugify("{ns}_{component}")``, with the
  package version and the description ``Dynamo component <c> in namespace
  <ns>``; nats-py's micro API answers ``$SRV.PING|INFO|STATS`` for it;
* one endpoint per endpoint instance: subject
  ``<service>.<endpoint>-<instance_id:x>``, queue group ``q``, listed in
  ``$SRV.INFO`` as ``<service>-<endpoint>-<instance_id:x>``;
* discovery advertises ``{"nats_tcp": "<ns>_<component>.<endpoint>-<hex>"}``,
  built without slugify, so a namespace with a leading ``_`` advertises a
  subject nobody subscribes (Dynamo's quirk, kept);
* each request is offered to the worker at once and answered with an empty
  reply (the ACK, no headers) before it is processed.

Deliberate improvement: Dynamo's NATS worker cannot refuse a request (it
acknowledges everything).  Here a request the worker refuses (at capacity,
shutting down) is answered with the rejection text as payload plus the micro
error headers ``Nats-Service-Error: <text>`` and ``Nats-Service-Error-Code:
503``; the reference caller reads it as a rejection, while a Dynamo caller
takes any reply as an ACK and waits for a call-home that will not come.

A request published without a reply subject is still offered, as Dynamo
processes it too, but cannot be acknowledged; it is logged and recorded in
``wire_errors``.  nats-py restores every subscription after a reconnect.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import nats.errors
import nats.micro
from nats.micro.request import Request
from nats.micro.service import EndpointConfig, Service

from reference_impl.protocol.ack import UNAVAILABLE_PREFIX
from reference_impl.routing import EndpointId, nats_service_name, nats_service_subject, nats_subject
from reference_impl.transport.nats.client import (
    DEFAULT_CONNECT_TIMEOUT,
    DYNAMO_DEFAULT_CREDENTIALS,
    NatsLink,
    ReconnectPolicy,
    confirm_sent,
)
from reference_impl.transport.plane import Advertisement, RequestSink

log = logging.getLogger(__name__)

TRANSPORT_KIND = "nats_tcp"  # the discovery record's transport key for NATS (serde's name for the variant)
QUEUE_GROUP = "q"  # async-nats' service default, which Dynamo keeps
REJECTION_CODE = "503"
INTERNAL_ERROR_CODE = "500"


def service_description(endpoint: EndpointId) -> str:
    return f"Dynamo component {endpoint.component} in namespace {endpoint.namespace}"


def info_endpoint_name(endpoint: EndpointId, instance_id: int) -> str:
    """How ``$SRV.INFO`` names an endpoint instance: ``<service>-<endpoint>-<hex>``."""
    return f"{nats_service_name(endpoint)}-{endpoint.endpoint}-{instance_id:x}"


def nats_advertisement(endpoint: EndpointId, instance_id: int) -> Advertisement:
    """Advertised subject, also the route key handed to the sink (one subscription per endpoint instance)."""
    subject = nats_subject(endpoint, instance_id)
    return Advertisement(TRANSPORT_KIND, subject, subject)


class NatsRequestServer:
    """The worker's NATS connection and the micro services of the components it serves.

    ``advertise`` is synchronous (the PlaneServer protocol), so it starts the subscription in the background;
    ``serve_endpoint`` does the same and returns once the NATS server has the subscription, which is what a worker
    should await before publishing the record in discovery.
    """

    plane = "nats"

    def __init__(
        self,
        sink: RequestSink,
        nats_url: str,
        *,
        service_version: str,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        reconnect: ReconnectPolicy | None = None,
        credentials: tuple[str, str] | None = DYNAMO_DEFAULT_CREDENTIALS,
        close_timeout: float = 5.0,
    ) -> None:
        self.sink = sink
        self.nats_url = nats_url
        self.service_version = service_version
        self.connect_timeout = connect_timeout
        self.reconnect = reconnect or ReconnectPolicy()
        self.credentials = credentials
        self.close_timeout = close_timeout
        self.wire_errors: list[str] = []
        self._link: NatsLink | None = None
        self._services: dict[str, asyncio.Task[Service]] = {}
        self._endpoints: dict[str, asyncio.Task[None]] = {}  # route key -> its subscription

    async def start(self) -> None:
        link = NatsLink(
            self.nats_url,
            label="nats request server",
            connect_timeout=self.connect_timeout,
            reconnect=self.reconnect,
            credentials=self.credentials,
        )
        await link.open()
        self._link = link

    @property
    def failure(self) -> str | None:
        """Why the NATS connection was given up (reconnect attempts exhausted), else None."""
        return self._link.failure if self._link is not None else None

    def advertise(self, endpoint: EndpointId, instance_id: int) -> Advertisement:
        advertisement = nats_advertisement(endpoint, instance_id)
        self._subscription(endpoint, instance_id, advertisement.route_key)
        return advertisement

    async def serve_endpoint(self, endpoint: EndpointId, instance_id: int) -> Advertisement:
        """Subscribe the endpoint instance (idempotent) and return once the NATS server has the subscription."""
        advertisement = nats_advertisement(endpoint, instance_id)
        await asyncio.shield(self._subscription(endpoint, instance_id, advertisement.route_key))
        return advertisement

    def _subscription(self, endpoint: EndpointId, instance_id: int, route_key: str) -> asyncio.Task[None]:
        if self._link is None:
            raise RuntimeError("NatsRequestServer.start() must be awaited before serving endpoints")
        task = self._endpoints.get(route_key)
        if task is None:
            task = asyncio.ensure_future(self._subscribe(endpoint, instance_id, route_key))
            task.add_done_callback(functools.partial(_log_subscribe_failure, route_key))
            self._endpoints[route_key] = task
        return task

    async def _subscribe(self, endpoint: EndpointId, instance_id: int, route_key: str) -> None:
        service = await self._service(endpoint)
        await service.add_endpoint(
            EndpointConfig(
                name=info_endpoint_name(endpoint, instance_id),
                subject=nats_service_subject(endpoint, instance_id),
                queue_group=QUEUE_GROUP,
                handler=functools.partial(self._on_request, route_key),
                metadata={},
            )
        )
        assert self._link is not None
        # The NATS server has the SUB before discovery advertises the subject (Dynamo sleeps 10 ms instead).
        await confirm_sent(self._link.nc, self.connect_timeout)

    def _service(self, endpoint: EndpointId) -> asyncio.Task[Service]:
        name = nats_service_name(endpoint)
        task = self._services.get(name)
        if task is None:
            assert self._link is not None
            task = asyncio.ensure_future(
                nats.micro.add_service(
                    self._link.nc,
                    name=name,
                    version=self.service_version,
                    description=service_description(endpoint),
                    metadata={},
                )
            )
            self._services[name] = task
        return task

    async def _on_request(self, route_key: str, request: Request) -> None:
        """Admit synchronously, then reply at once: empty = ACK, else the rejection. Never raises."""
        headers = request.headers or {}
        try:
            rejection = self.sink.offer("nats", route_key, request.data, headers)
        except Exception as exc:
            log.exception("request on %s: the worker failed to admit it", route_key)
            rejection, code = f"{UNAVAILABLE_PREFIX} internal error: {type(exc).__name__}", INTERNAL_ERROR_CODE
        else:
            code = REJECTION_CODE
        if not request._msg.reply:  # nats.micro.Request does not expose the reply subject
            self._record_wire_error(f"request on {route_key} has no reply subject: offered without an ACK")
            return
        try:
            if rejection is None:
                await request.respond(b"")
            else:
                await request.respond_error(code, rejection, data=rejection.encode())
        except (nats.errors.Error, OSError, ValueError) as exc:
            # The request stands (it was admitted); its caller will time out waiting for the ACK.
            log.warning("request on %s: could not send the ACK: %r", route_key, exc)

    def _record_wire_error(self, reason: str) -> None:
        log.warning("%s", reason)
        self.wire_errors.append(reason)
        del self.wire_errors[:-100]

    async def close(self) -> None:
        """Unsubscribe every endpoint (later requests get "no responders"), then close the connection."""
        link, self._link = self._link, None
        if link is None:
            return
        for subscription in self._endpoints.values():
            subscription.cancel()
        pending: list[asyncio.Future[Any]] = [*self._endpoints.values(), *self._services.values()]
        if pending:
            await asyncio.wait(pending, timeout=self.close_timeout)
        for service in self._services.values():
            if service.done() and not service.cancelled() and service.exception() is None:
                try:
                    await asyncio.wait_for(service.result().stop(), self.close_timeout)
                except (TimeoutError, nats.errors.Error, OSError) as exc:
                    log.warning("stopping NATS service: %r", exc)
        self._endpoints.clear()
        self._services.clear()
        await link.close(timeout=self.close_timeout)


def _log_subscribe_failure(route_key: str, task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("cannot subscribe %s on NATS: %r", route_key, exc)
