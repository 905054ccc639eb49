"""A caller (router/frontend): finds an instance, sends a request, reads the stream.

The plane used for a request follows the instance record's transport key,
which is more tolerant than Dynamo (one plane per process) and lets one
caller reach workers on every plane.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self, cast

from reference_impl import config as cfg
from reference_impl.discovery.file_store import FileDiscovery
from reference_impl.discovery.records import InstanceRecord
from reference_impl.errors import HandlerError, TransportError
from reference_impl.planes import (
    REGISTRY,
    complete_plane_configs,
    plane_of_transport,
    read_plane_configs,
    where_moved,
)
from reference_impl.protocol import annotated
from reference_impl.protocol.ack import check_ack
from reference_impl.protocol.envelope import build_envelope
from reference_impl.protocol.messages import Cancel, RequestControlMessage
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.routing import EndpointId
from reference_impl.transport.callhome.server import PendingResponse, ResponseStreamServer
from reference_impl.transport.plane import CallerSettings, Plane, PlaneClient
from reference_impl.wire import two_part

_S = cfg.setting


@dataclass
class CallerConfig(cfg.Settings):
    """A caller's settings.  ``CallerConfig()`` is the defaults; ``from_env()`` reads Dynamo's variables.

    The settings of the call-home stream (which every plane shares) are fields here;
    each registered plane's client settings are a config of its folder's type in
    ``planes`` (``config.of(HTTP).version``).  Every field is checked at
    construction (:class:`~reference_impl.config.ConfigError`).
    """

    callhome_host: str = field(default="127.0.0.1", metadata=_S("DYN_TCP_RESPONSE_STREAM_HOST", check=cfg.not_empty))
    callhome_port: int = field(default=0, metadata=_S("DYN_TCP_RESPONSE_STREAM_PORT", cfg.parse_int, cfg.port))
    # ACK to prologue.  Dynamo waits forever; a bounded wait turns a worker
    # that acknowledged and then vanished into an error instead of a hang.  0 turns it off.
    callhome_timeout: float | None = field(
        default=60.0, metadata=_S("RP_CALLHOME_TIMEOUT", cfg.parse_seconds_or_off, cfg.optional(cfg.positive))
    )
    # Largest call-home frame accepted: bounds what one worker can make the caller buffer.
    # Dynamo sets no limit; RP_CALLHOME_MAX_MESSAGE_SIZE=0 does the same.
    callhome_max_message_size: int | None = field(
        default=two_part.DEFAULT_MAX_FRAME_SIZE,
        metadata=_S("RP_CALLHOME_MAX_MESSAGE_SIZE", cfg.parse_size_or_unlimited, cfg.optional(cfg.positive)),
    )
    # A stream dropped by its consumer gets "stop", then "kill" if the worker has not ended it after this long.
    drop_grace: float = field(default=2.0, metadata=_S("RP_DROP_GRACE", cfg.parse_seconds, cfg.non_negative))
    annotated: bool = True
    # One config per registered plane (reference_impl.planes), by plane name; a missing one is its defaults.
    planes: Mapping[str, cfg.Settings] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cfg.validate(self)
        self.planes = complete_plane_configs("caller", self.planes)

    def of(self, plane: Plane[Any, CallerSettings]) -> CallerSettings:
        """This caller's settings for ``plane`` (``config.of(NATS).url``)."""
        return cast(CallerSettings, self.planes[plane.name])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Defaults, overridden by the variables a Dynamo caller reads, overridden by ``overrides``.

        A plane's name takes that plane's config (taken as it is) or a mapping of its settings
        (over the environment): ``CallerConfig.from_env(nats={"url": url}, drop_grace=0.5)``.
        """
        given = dict(overrides.pop("planes", {}))  # planes={...} and plane-name arguments alike
        given.update((name, overrides.pop(name)) for name in list(overrides) if name in REGISTRY)
        planes = read_plane_configs("caller", given, environ)
        return cfg.from_environment(cls, {**overrides, "planes": planes}, environ)

    @classmethod
    def where_moved(cls, names: Iterable[str]) -> str | None:
        return where_moved("caller", names)


class ResponseStream:
    """Items of one call.  Iterate it; ``stop()``/``kill()`` cancel it.

    Like Dynamo's caller, a stream nobody reads any more is cancelled: when
    the task reading it is cancelled, or when the stream object is released
    before its end (the consumer broke out of ``async for``), the worker gets
    ``stop``, then ``kill`` after ``drop_grace`` seconds if it has not ended
    the stream.  Otherwise its handler would run on for nobody.
    """

    def __init__(self, pending: PendingResponse, record: InstanceRecord, request_id: str, config: CallerConfig) -> None:
        self._pending = pending
        self.record = record
        self.request_id = request_id
        self._config = config
        self._prologue_seen = False
        self._loop = asyncio.get_running_loop()

    def __del__(self) -> None:
        pending = getattr(self, "_pending", None)
        if pending is None or pending.ended:
            return
        try:  # a finaliser may run anywhere: hand the cancel to the stream's own loop
            self._loop.call_soon_threadsafe(pending.drop, self._config.drop_grace)
        except RuntimeError:
            pass  # the loop is closed: its connections are gone already

    def drop(self) -> None:
        """What releasing the stream does: ``stop`` now, ``kill`` after ``drop_grace`` s."""
        self._pending.drop(self._config.drop_grace)

    @property
    def instance_id(self) -> int:
        return self.record.instance_id

    @property
    def plane(self) -> str | None:
        """The plane the request went over, from the record's transport key."""
        plane = plane_of_transport(self.record.transport_kind)
        return plane.name if plane is not None else None

    async def wait_prologue(self) -> None:
        if not self._prologue_seen:
            await self._pending.wait_prologue(self._config.callhome_timeout)
            self._prologue_seen = True

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            await self.wait_prologue()
            item = await self._pending.next_item()
        except asyncio.CancelledError:
            self.drop()  # the consuming task was cancelled: nobody will read the rest
            raise
        if not self._config.annotated:
            return item
        unwrapped = annotated.unwrap(item)
        if unwrapped.error is not None:
            raise HandlerError(unwrapped.error, unwrapped.details)
        return unwrapped.data

    def stop(self) -> None:
        """Graceful cancel: the worker stops; iteration ends without an error."""
        self._pending.cancel(Cancel.STOP)

    def kill(self) -> None:
        """Hard cancel: the stream is dropped at once."""
        self._pending.cancel(Cancel.KILL)

    async def aclose(self) -> None:
        self._pending.abandon()

    async def collect(self) -> list[Any]:
        return [item async for item in self]


class Caller:
    def __init__(self, discovery: FileDiscovery | None = None, config: CallerConfig | None = None) -> None:
        """``config`` defaults to the environment (:meth:`CallerConfig.from_env`), as Dynamo's caller."""
        self.discovery = discovery or FileDiscovery()
        self.config = config if config is not None else CallerConfig.from_env()
        self.callhome = ResponseStreamServer(
            self.config.callhome_host,
            self.config.callhome_port,
            max_message_size=self.config.callhome_max_message_size,
        )
        self._clients: dict[str, PlaneClient] = {}  # by discovery transport key, each made on first use
        self._round_robin = itertools.count()
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await self.callhome.start()
            self._started = True

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()
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
        client = self._clients.get(record.transport_kind)  # one lookup per request once the plane is in use
        if client is None:
            client = self._first_use(record)
        return await client.send(record.transport_address, headers, payload)

    def _first_use(self, record: InstanceRecord) -> PlaneClient:
        """The client of the record's plane, made now: a caller pays only for the planes it reaches."""
        plane = plane_of_transport(record.transport_kind)
        if plane is None:
            raise TransportError(
                f"instance {record.instance_id:x} uses transport {record.transport_kind!r}, "
                "which this caller does not speak"
            )
        client = self._clients[plane.transport_kind] = plane.make_client(self.config.of(plane))
        return client

    async def call(self, endpoint: str | EndpointId, request: Any, **options: Any) -> list[Any]:
        """Convenience: send and collect every item."""
        stream = await self.generate(endpoint, request, **options)
        return await stream.collect()


def _endpoint_id(endpoint: str | EndpointId) -> EndpointId:
    return endpoint if isinstance(endpoint, EndpointId) else EndpointId.parse(endpoint)
