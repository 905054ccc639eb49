"""The NATS plane's description: ``DYN_REQUEST_PLANE=nats``, published as ``{"nats_tcp": "<subject>"}``."""

from __future__ import annotations

from typing import Protocol

from reference_impl import __version__
from reference_impl.transport.nats.client import NatsRequestClient
from reference_impl.transport.nats.server import NatsRequestServer
from reference_impl.transport.plane import Plane, RequestSink


class NatsWorkerSettings(Protocol):
    nats_url: str


class NatsCallerSettings(Protocol):
    nats_url: str
    nats_request_timeout: float
    connect_timeout: float


def make_server(sink: RequestSink, settings: NatsWorkerSettings) -> NatsRequestServer:
    return NatsRequestServer(sink, settings.nats_url, service_version=__version__)


def make_client(settings: NatsCallerSettings) -> NatsRequestClient:
    """Addressed by the record's subject, which is what ``NatsRequestClient.send`` takes."""
    return NatsRequestClient(
        settings.nats_url, request_timeout=settings.nats_request_timeout, connect_timeout=settings.connect_timeout
    )


NATS = Plane("nats", "nats_tcp", make_server, make_client)
