"""A caller (router/frontend): finds an instance, sends a request, reads the stream.

The plane used for a request follows the instance record's transport key,
which is more tolerant than Dynamo (one plane per process) and lets one
caller reach workers on every plane.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from reference_impl.discovery.file_store import FileDiscovery
from reference_impl.discovery.records import InstanceRecord
from reference_impl.errors import CallError, TransportError
from reference_impl.protocol import annotated
from reference_impl.protocol.ack import check_ack
from reference_impl.protocol.envelope import build_envelope
from reference_impl.protocol.messages import RequestControlMessage
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.routing import EndpointId, parse_tcp_transport
from reference_impl.transport.callhome_server import PendingResponse, ResponseStreamServer
from reference_impl.transport.http_client import HttpRequestClient
from reference_impl.transport.nats_client import NatsRequestClient
from reference_impl.transport.tcp_client import TcpRequestClient
from reference_impl.wire import two_part
from reference_impl.wire.request_frame import DEFAULT_MAX_MESSAGE_SIZE


class HandlerError(CallError):
    """The worker's handler reported an error inside the stream."""

    kind = "handler_error"


def _env_float(name: str, default: float | None) -> float | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    number = float(value)
    return None if number <= 0 else number


@dataclass
class CallerConfig:
    callhome_host: str = "127.0.0.1"
    callhome_port: int = 0
    request_timeout: float = 5.0
    connect_timeout: float = 5.0
    # ACK to prologue.  Dynamo waits forever; a bounded wait turns a worker
    # that acknowledged and then vanished into an error instead of a hang.
    callhome_timeout: float | None = 60.0
    # Largest call-home frame accepted: bounds what one worker can make the caller buffer.
    # Dynamo sets no limit; RP_CALLHOME_MAX_MESSAGE_SIZE=0 does the same.
    callhome_max_message_size: int | None = two_part.DEFAULT_MAX_MESSAGE_SIZE
    annotated: bool = True
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    nats_url: str = "nats://127.0.0.1:4222"
    nats_request_timeout: float = 10.0  # async-nats' default, which Dynamo keeps
    http_version: str = "h2"  # "h2" (prior knowledge, multiplexed) or "http/1.1" (what Dynamo's caller speaks)
    http_request_timeout: float = 5.0  # DYN_HTTP_REQUEST_TIMEOUT: the whole POST, up to its answer

    @classmethod
    def from_env(cls) -> CallerConfig:
        return cls(
            callhome_host=os.environ.get("DYN_TCP_RESPONSE_STREAM_HOST") or "127.0.0.1",
            callhome_port=int(os.environ.get("DYN_TCP_RESPONSE_STREAM_PORT") or 0),
            request_timeout=_env_float("DYN_TCP_REQUEST_TIMEOUT", 5.0) or 5.0,
            connect_timeout=_env_float("DYN_TCP_CONNECT_TIMEOUT", 5.0) or 5.0,
            callhome_timeout=_env_float("RP_CALLHOME_TIMEOUT", 60.0),
            callhome_max_message_size=int(
                os.environ.get("RP_CALLHOME_MAX_MESSAGE_SIZE") or two_part.DEFAULT_MAX_MESSAGE_SIZE
            )
            or None,
            max_message_size=int(os.environ.get("DYN_TCP_MAX_MESSAGE_SIZE") or DEFAULT_MAX_MESSAGE_SIZE),
            nats_url=os.environ.get("NATS_SERVER") or "nats://127.0.0.1:4222",
            http_version=os.environ.get("RP_HTTP_VERSION") or "h2",
            http_request_timeout=_env_float("DYN_HTTP_REQUEST_TIMEOUT", 5.0) or 5.0,
        )


class ResponseStream:
    """Items of one call.  Iterate it; ``stop()``/``kill()`` cancel it."""

    def __init__(self, pending: PendingResponse, record: InstanceRecord, request_id: str, config: CallerConfig) -> None:
        self._pending = pending
        self.record = record
        self.request_id = request_id
        self._config = config
        self._prologue_seen = False

    @property
    def instance_id(self) -> int:
        return self.record.instance_id

    async def wait_prologue(self) -> None:
        if not self._prologue_seen:
            await self._pending.wait_prologue(self._config.callhome_timeout)
            self._prologue_seen = True

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        await self.wait_prologue()
        item = await self._pending.next_item()
        if not self._config.annotated:
            return item
        unwrapped = annotated.unwrap(item)
        if unwrapped.error is not None:
            raise HandlerError(unwrapped.error)
        return unwrapped.data

    def stop(self) -> None:
        """Graceful cancel: the worker stops; iteration ends without an error."""
        self._pending.cancel("stop")

    def kill(self) -> None:
        """Hard cancel: the stream is dropped at once."""
        self._pending.cancel("kill")

    async def aclose(self) -> None:
        self._pending.abandon()

    async def collect(self) -> list[Any]:
        return [item async for item in self]


class Caller:
    def __init__(self, discovery: FileDiscovery | None = None, config: CallerConfig | None = None) -> None:
        self.discovery = discovery or FileDiscovery()
        self.config = config or CallerConfig()
        self.callhome = ResponseStreamServer(
            self.config.callhome_host,
            self.config.callhome_port,
            max_message_size=self.config.callhome_max_message_size,
        )
        self.tcp = TcpRequestClient(
            request_timeout=self.config.request_timeout,
            connect_timeout=self.config.connect_timeout,
            max_message_size=self.config.max_message_size,
        )
        self.nats = NatsRequestClient(
            self.config.nats_url,
            request_timeout=self.config.nats_request_timeout,
            connect_timeout=self.config.connect_timeout,
        )
        self.http = HttpRequestClient(
            version=self.config.http_version,
            request_timeout=self.config.http_request_timeout,
            connect_timeout=self.config.connect_timeout,
        )
        self._round_robin = itertools.count()
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await self.callhome.start()
            self._started = True

    async def close(self) -> None:
        await self.tcp.close()
        await self.nats.close()
        await self.http.close()
        await self.callhome.close()

    async def __aenter__(self) -> Caller:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def instances(self, endpoint: str | EndpointId) -> list[InstanceRecord]:
        return self.discovery.records(_endpoint_id(endpoint))

    async def wait_for_instances(
        self, endpoint: str | EndpointId, count: int = 1, timeout: float = 10.0
    ) -> list[InstanceRecord]:
        return await self.discovery.wait_for(_endpoint_id(endpoint), count=count, timeout=timeout)

    def _pick(self, endpoint: EndpointId, instance_id: int | None) -> InstanceRecord:
        records = self.discovery.records(endpoint)
        if instance_id is not None:
            records = [r for r in records if r.instance_id == instance_id]
        if not records:
            which = f"instance {instance_id:x} of " if instance_id is not None else ""
            raise TransportError(f"no live {which}{endpoint} in discovery at {self.discovery.root}")
        return records[next(self._round_robin) % len(records)]

    async def generate(
        self,
        endpoint: str | EndpointId,
        request: Any,
        *,
        instance_id: int | None = None,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ResponseStream:
        """Send a request and return its (not yet started) response stream.

        Raises a :class:`CallError` subclass when the request is rejected or
        cannot be delivered.
        """
        await self.start()
        record = self._pick(_endpoint_id(endpoint), instance_id)
        codec = PayloadCodec.parse(record.request_plane_codec)
        request_id = request_id or str(uuid.uuid4())
        pending = self.callhome.register(request_id, codec)
        control = RequestControlMessage(
            id=request_id,
            connection_info=pending.connection_info,
            payload_codec=codec.value,
            metadata=dict(metadata or {}),
        )
        request_headers = {
            "request-id": request_id,
            "x-frontend-send-ts-ns": str(time.time_ns()),
            **(headers or {}),
        }
        try:
            ack = await self._deliver(record, request_headers, build_envelope(control, request))
            check_ack(ack)
        except BaseException:
            pending.abandon()
            raise
        return ResponseStream(pending, record, request_id, self.config)

    async def _deliver(self, record: InstanceRecord, headers: dict[str, str], payload: bytes) -> bytes:
        plane = record.plane
        if plane == "tcp":
            target = parse_tcp_transport(record.transport_address)
            headers["x-endpoint-path"] = target.path
            return await self.tcp.send(target, headers, payload)
        if plane == "nats":
            return await self.nats.send(record.transport_address, headers, payload)
        if plane == "http":
            return await self.http.send(record.transport_address, headers, payload)
        raise TransportError(
            f"instance {record.instance_id:x} uses transport {record.transport_kind!r}, "
            "which this caller does not speak"
        )

    async def call(self, endpoint: str | EndpointId, request: Any, **options: Any) -> list[Any]:
        """Convenience: send and collect every item."""
        stream = await self.generate(endpoint, request, **options)
        return await stream.collect()


def _endpoint_id(endpoint: str | EndpointId) -> EndpointId:
    return endpoint if isinstance(endpoint, EndpointId) else EndpointId.parse(endpoint)
