"""The NATS plane's description: ``DYN_REQUEST_PLANE=nats``, published as ``{"nats_tcp": "<subject>"}``.

The server and client (and nats-py with them) are imported when first made, not with the description:
every process imports all descriptions (``reference_impl.planes``), few use this plane.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reference_impl import __version__
from reference_impl.transport.nats.config import NatsCallerConfig, NatsWorkerConfig
from reference_impl.transport.plane import Plane, RequestSink

if TYPE_CHECKING:
    from reference_impl.transport.nats.client import NatsRequestClient
    from reference_impl.transport.nats.server import NatsRequestServer


def make_server(sink: RequestSink, config: NatsWorkerConfig, *, max_concurrency: int) -> NatsRequestServer:
    from reference_impl.transport.nats.server import NatsRequestServer

    return NatsRequestServer(sink, config.url, service_version=__version__)


def make_client(config: NatsCallerConfig) -> NatsRequestClient:
    """Addressed by the record's subject, which is what ``NatsRequestClient.send`` takes."""
    from reference_impl.transport.nats.client import NatsRequestClient

    return NatsRequestClient(config.url, request_timeout=config.request_timeout, connect_timeout=config.connect_timeout)


NATS = Plane("nats", "nats_tcp", NatsWorkerConfig, NatsCallerConfig, make_server, make_client)
