"""A worker: serves handlers on a request plane and streams responses home.

Life of a request: the plane server asks :meth:`Worker.offer` to admit it
(the answer becomes the ACK), then a task decodes the envelope, dials the
caller, runs the handler and streams its items.  Failures the caller can
hear about (bad body, handler failure) go back over the stream; failures it
cannot (no usable call-home address) are logged and counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import ipaddress
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self, cast

from reference_impl import admission
from reference_impl import config as cfg
from reference_impl.admission import Admission
from reference_impl.context import RequestContext
from reference_impl.discovery.file_store import FileDiscovery, Registration
from reference_impl.discovery.records import InstanceRecord
from reference_impl.errors import MalformedMessage, TransportError
from reference_impl.planes import (
    REGISTRY,
    complete_plane_configs,
    plane_named,
    read_plane_configs,
    registered,
    where_moved,
)
from reference_impl.protocol import ack, annotated, error_kinds
from reference_impl.protocol import payload_codec as pc
from reference_impl.protocol.envelope import RequestEnvelope, parse_envelope
from reference_impl.protocol.messages import Cancel
from reference_impl.protocol.payload_codec import DecodeLimits, PayloadCodec
from reference_impl.routing import NAME_PATTERN, EndpointId, parse_callhome_address
from reference_impl.transport.byte_budget import trim_heap_soon
from reference_impl.transport.callhome.client import CallHomeConnection, dial_caller
from reference_impl.transport.plane import Advertisement, Plane, PlaneServer, WorkerSettings

log = logging.getLogger(__name__)

HandlerResult = AsyncIterator[Any] | Awaitable[AsyncIterator[Any]]
Handler = Callable[[Any, RequestContext], HandlerResult]


def _codec(text: str) -> PayloadCodec:
    try:
        return PayloadCodec(text.lower())
    except ValueError:
        raise ValueError("expected json or msgpack") from None


_S = cfg.setting


@dataclass
class WorkerConfig(cfg.Settings):
    """A worker's settings.  ``WorkerConfig()`` is the defaults; ``from_env()`` reads Dynamo's variables.

    The settings every plane shares are fields here; each registered plane's own
    (listener, limits) are a config of its folder's type in ``planes``
    (``config.of(TCP).port``).  Every field is checked at construction
    (:class:`~reference_impl.config.ConfigError`).
    """

    plane: str = field(default="tcp", metadata=_S("DYN_REQUEST_PLANE", cfg.lower, registered))
    codec: PayloadCodec = field(
        default=PayloadCodec.MSGPACK, metadata=_S("DYN_REQUEST_PLANE_CODEC", _codec, cfg.one_of(PayloadCodec))
    )
    max_concurrency: int = field(default=10_000, metadata=_S("DYN_TCP_WORKER_POOL_SIZE", cfg.parse_int, cfg.positive))
    queue_size: int = field(default=40_000, metadata=_S("DYN_TCP_WORK_QUEUE_SIZE", cfg.parse_int, cfg.non_negative))
    callhome_connect_timeout: float = field(default=5.0, metadata=_S(None, check=cfg.positive))
    fin_wait: float = field(default=10.0, metadata=_S(None, check=cfg.non_negative))
    # --- denial-of-service limits (Dynamo has none of these; 0 turns a timeout off) ---
    # A caller that stops reading its response stream this long loses it.  Well above the pauses of a
    # slow but live reader (the suite's ROB-SLOW-READER pauses 3 s; GC or a slow HTTP client upstream).
    callhome_write_timeout: float | None = field(
        default=60.0, metadata=_S("RP_CALLHOME_WRITE_TIMEOUT", cfg.parse_seconds_or_off, cfg.optional(cfg.positive))
    )
    # Where the worker may call home (CIDRs); None: anywhere, as Dynamo.
    callhome_allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = field(
        default=None, metadata=_S("RP_CALLHOME_ALLOW", cfg.parse_networks)
    )
    # Request bodies above this size are decoded with the limits below (payload_codec.DecodeLimits).
    decode_checked_above: int = field(
        default=pc.DECODE_CHECKED_ABOVE, metadata=_S("RP_DECODE_CHECKED_ABOVE", cfg.parse_int, cfg.non_negative)
    )
    # At most one array or map per this many body bytes, and no array/map longer than one element per
    # ``decode_bytes_per_element`` bytes: a decoded body stays within about 10 times its size.
    decode_bytes_per_container: int = field(
        default=pc.DECODE_BYTES_PER_CONTAINER,
        metadata=_S("RP_DECODE_BYTES_PER_CONTAINER", cfg.parse_int, cfg.positive),
    )
    decode_bytes_per_element: int = field(
        default=pc.DECODE_BYTES_PER_ELEMENT, metadata=_S("RP_DECODE_BYTES_PER_ELEMENT", cfg.parse_int, cfg.positive)
    )
    annotated: bool = True
    write_checksum: bool = False
    # Payload bytes of requests admitted but not yet started, all planes together; 0: no limit.  Default and
    # why: reference_impl/admission.py (the 256 MiB allowance; queue_size x 32 MiB would be 1.3 TB).
    admitted_bytes_budget: int | None = field(
        default=admission.DEFAULT_ADMITTED_BYTES_BUDGET,
        metadata=_S("RP_ADMITTED_BYTES_BUDGET", cfg.parse_size_or_unlimited, cfg.optional(cfg.positive)),
    )
    # One config per registered plane (reference_impl.planes), by plane name; a missing one is its defaults.
    planes: Mapping[str, cfg.Settings] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cfg.validate(self)
        self.planes = complete_plane_configs("worker", self.planes)

    def of(self, plane: Plane[WorkerSettings, Any]) -> WorkerSettings:
        """This worker's settings for ``plane`` (``config.of(TCP).port``)."""
        return cast(WorkerSettings, self.planes[plane.name])

    @property
    def decode_limits(self) -> DecodeLimits:
        return DecodeLimits(self.decode_checked_above, self.decode_bytes_per_container, self.decode_bytes_per_element)

    def callhome_allowed(self, host: str) -> bool:
        """Whether the call-home allow-list (if any) admits ``host`` (an IP literal)."""
        if self.callhome_allow is None:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.callhome_allow)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Defaults, overridden by the variables a Dynamo worker reads, overridden by ``overrides``.

        A plane's name takes that plane's config (taken as it is) or a mapping of its settings
        (over the environment): ``WorkerConfig.from_env(tcp={"port": 7000}, codec=PayloadCodec.JSON)``.
        """
        given = dict(overrides.pop("planes", {}))  # planes={...} and plane-name arguments alike
        given.update((name, overrides.pop(name)) for name in list(overrides) if name in REGISTRY)
        planes = read_plane_configs("worker", given, environ)
        return cfg.from_environment(cls, {**overrides, "planes": planes}, environ)

    @classmethod
    def where_moved(cls, names: Iterable[str]) -> str | None:
        return where_moved("worker", names)


@dataclass
class _Endpoint:
    id: EndpointId
    handler: Handler
    advertisement: Advertisement | None = None


class Worker:
    """Serves the endpoints of one component instance on one request plane."""

    def __init__(
        self,
        namespace: str,
        component: str,
        *,
        plane: str | None = None,
        discovery: FileDiscovery | None = None,
        config: WorkerConfig | None = None,
        instance_id: int | None = None,
    ) -> None:
        """``config`` defaults to the environment (:meth:`WorkerConfig.from_env`); ``plane`` overrides it."""
        for name in (namespace, component):
            if not NAME_PATTERN.match(name):
                raise ValueError(f"invalid name {name!r}: use [a-z0-9_-]")
        self.namespace = namespace
        self.component = component
        self.config = config if config is not None else WorkerConfig.from_env()
        if plane is not None:
            self.config = dataclasses.replace(self.config, plane=plane)  # validated again
        self.plane = self.config.plane
        self.discovery = discovery or FileDiscovery()
        self.instance_id = instance_id if instance_id is not None else secrets.randbits(64)
        self._endpoints: dict[str, _Endpoint] = {}
        self._routes: dict[tuple[str, str], _Endpoint] = {}
        self._admission = Admission(
            self.config.max_concurrency, self.config.queue_size, self.config.admitted_bytes_budget
        )
        self._decode_limits = self.config.decode_limits
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: PlaneServer | None = None
        self._registration: Registration | None = None
        self._stopping = False
        self.failures: list[str] = []  # requests that could not be answered at all

    # -- set-up -------------------------------------------------------------------

    def serve(self, endpoint: str, handler: Handler) -> None:
        if not NAME_PATTERN.match(endpoint):
            raise ValueError(f"invalid endpoint name {endpoint!r}: use [a-z0-9_-]")
        self._endpoints[endpoint] = _Endpoint(EndpointId(self.namespace, self.component, endpoint), handler)

    async def start(self) -> None:
        plane = plane_named(self.plane)
        self._server = plane.make_server(self, self.config.of(plane), max_concurrency=self.config.max_concurrency)
        await self._server.start()
        records = []
        for endpoint in self._endpoints.values():
            # Reachable before it is published, so no caller finds a record it cannot use.
            endpoint.advertisement = await self._server.serve_endpoint(endpoint.id, self.instance_id)
            self._routes[(self.plane, endpoint.advertisement.route_key)] = endpoint
            records.append(self._record(endpoint))
        self._registration = Registration(self.discovery, records)
        self._registration.start()
        log.info("worker %x serving %s on %s", self.instance_id, sorted(self._endpoints), self.plane)

    def _record(self, endpoint: _Endpoint) -> InstanceRecord:
        assert endpoint.advertisement is not None
        return InstanceRecord(
            namespace=self.namespace,
            component=self.component,
            endpoint=endpoint.id.endpoint,
            instance_id=self.instance_id,
            transport_kind=endpoint.advertisement.transport_kind,
            transport_address=endpoint.advertisement.address,
            device_type="cpu",
            request_plane_codec=self.config.codec.value,
        )

    @property
    def records(self) -> list[InstanceRecord]:
        return list(self._registration.records) if self._registration else []

    async def stop(self, *, drain_timeout: float = 5.0) -> None:
        """Unregister, refuse new requests, let in-flight ones finish (bounded), close."""
        self._stopping = True
        if self._registration is not None:
            await self._registration.stop()
        if self._tasks:
            _, still_running = await asyncio.wait(set(self._tasks), timeout=drain_timeout)
            for task in still_running:
                task.cancel()
            if still_running:
                await asyncio.wait(still_running, timeout=1.0)
        if self._server is not None:
            await self._server.close()

    # -- admission (called synchronously by the plane server, before the ACK) ----

    def offer(
        self,
        plane: str,
        route_key: str,
        payload: bytes,
        headers: Mapping[str, str],
        on_done: Callable[[], None] | None = None,
    ) -> str | None:
        """Admit a request (``None``) or say why not; ``on_done`` is called when an admitted one ends."""
        endpoint = self._routes.get((plane, route_key))
        if endpoint is None:
            return ack.unknown_endpoint(route_key)
        if self._stopping:
            return ack.SHUTTING_DOWN
        if not self._admission.bytes_fit(len(payload)):
            return ack.admitted_bytes_exhausted(len(payload), self._admission.bytes_free or 0)
        if not self._admission.try_admit(len(payload)):
            return ack.AT_CAPACITY
        self._spawn(self._process(endpoint, payload, dict(headers), on_done))
        return None

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(
        self, endpoint: _Endpoint, payload: bytes, headers: dict[str, str], on_done: Callable[[], None] | None
    ) -> None:
        size = len(payload)
        handed = [payload]  # _answer takes the only reference, so the raw request is freed once parsed
        del payload
        waiting = True  # its bytes count against the admitted-bytes budget until it gets a running slot
        try:
            async with self._admission.running():
                waiting = False
                self._admission.started(size)
                connection = await self._answer(endpoint, handed, headers)
        finally:
            if waiting:
                self._admission.started(size)
            self._admission.release()
            if on_done is not None:
                on_done()
            trim_heap_soon(size)  # a large body (and what it decoded to) is gone: give the memory back
        if connection is not None:
            # Waiting for the caller's FIN must not hold a concurrency slot.
            await connection.wait_peer_close(self.config.fin_wait)

    def _fail(self, reason: str) -> None:
        log.warning("request dropped without a response stream: %s", reason)
        self.failures.append(reason)
        del self.failures[:-100]

    # -- one request ---------------------------------------------------------------

    async def _answer(
        self, endpoint: _Endpoint, handed: list[bytes], headers: dict[str, str]
    ) -> CallHomeConnection | None:
        """Run one request (its raw bytes handed over in a list); the connection when it ended with a sentinel."""
        try:
            envelope = parse_envelope(handed.pop(), max_message_size=None)
            callhome = envelope.callhome()
            codec = envelope.control.codec
        except MalformedMessage as exc:
            self._fail(f"{endpoint.id}: {exc}")
            return None
        context = RequestContext(envelope.control.id, headers, envelope.control.metadata)
        if self.config.callhome_allow is not None and not self.config.callhome_allowed(_host_of(callhome.address)):
            self._fail(
                f"{endpoint.id} request {context.id()}: call-home destination {callhome.address} is outside "
                "the allow-list (RP_CALLHOME_ALLOW); not dialled"
            )
            return None
        try:
            connection = await dial_caller(
                callhome.address,
                callhome.subject,
                codec,
                _canceller_of(context),
                connect_timeout=self.config.callhome_connect_timeout,
                write_timeout=self.config.callhome_write_timeout,
                write_checksum=self.config.write_checksum,
            )
        except TransportError as exc:
            self._fail(f"{endpoint.id} request {context.id()}: {exc}")
            return None
        try:
            finished = await self._stream(endpoint, envelope, context, connection)
        except TransportError as exc:
            log.info("request %s: caller went away: %s", context.id(), exc)
            context.kill()
            connection.abort()
            return None
        if not finished:
            connection.close()
            return None
        return connection

    async def _stream(
        self, endpoint: _Endpoint, envelope: RequestEnvelope, context: RequestContext, connection: CallHomeConnection
    ) -> bool:
        """Prologue, items, final, sentinel.  False when cancelled by the caller."""
        try:
            request = envelope.decode_body(self._decode_limits)
        except MalformedMessage as exc:
            await connection.send(connection.stream.prologue(error=f"cannot decode request body: {exc}"))
            await connection.send(connection.stream.sentinel())
            return True
        try:
            items = await _start_handler(endpoint.handler, request, context)
        except Exception as exc:  # the handler refused the request: a prologue error
            message = error_kinds.describe(exc)
            await connection.send(connection.stream.prologue(message, error_kinds.prologue_typed_error(message)))
            await connection.send(connection.stream.sentinel())
            return True
        await connection.send(connection.stream.prologue())
        if not await _pump_until_cancelled(self._pump(items, connection), context):
            return False  # "stop" or "kill": the handler was interrupted and nothing more is sent
        if context.is_stopped():
            return False
        await connection.send(connection.stream.final())
        await connection.send(connection.stream.sentinel())
        return True

    async def _pump(self, items: AsyncIterator[Any], connection: CallHomeConnection) -> None:
        wrap = self.config.annotated
        try:
            while True:
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    return
                except TransportError:
                    raise
                except asyncio.CancelledError as exc:
                    if _being_cancelled():
                        raise  # stop, kill or shutdown: the pump itself is cancelled
                    await connection.send_item(_error_item_for(exc))  # the handler raised it on its own
                    return
                except Exception as exc:  # a failure mid-stream is an in-stream error item
                    await connection.send_item(_error_item_for(exc))
                    return
                if wrap:
                    item = annotated.wrap(item)
                elif item is None:
                    await connection.send_item(
                        annotated.error_item("handler yielded None, which a stream cannot carry")
                    )
                    return
                await connection.send_item(item)
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    log.debug("handler raised while closing", exc_info=True)


def _canceller_of(context: RequestContext) -> Callable[[Cancel], None]:
    """What the caller's ``"stop"``/``"kill"`` does to the handler's context (Dynamo's two context calls)."""

    def cancel(word: Cancel) -> None:
        if word is Cancel.KILL:
            context.kill()
        else:
            context.stop_generating()

    return cancel


def _host_of(address: str) -> str:
    """The host part of a call-home ``host:port`` (``[v6]:port`` too); the address itself if it has none."""
    try:
        return parse_callhome_address(address)[0]
    except ValueError:
        return address


def _error_item_for(exc: BaseException) -> dict[str, Any]:
    """The handler's exception as an error item classified as Dynamo does (``ValueError`` -> InvalidArgument)."""
    return annotated.error_item(error_kinds.describe(exc), error_kinds.classify(exc))


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _pump_until_cancelled(pump: Awaitable[None], context: RequestContext) -> bool:
    """Run the item pump in this task; False when the caller's stop/kill interrupted it.

    In this task rather than a task of its own raced against the context
    (one task, one ``asyncio.wait`` and their callbacks fewer per request,
    and a handler that yields at once streams in the same loop turn): the
    caller's stop/kill cancels this task while it pumps, and that one
    cancellation is taken back with ``uncancel()``; any other cancellation
    (the worker stopping) propagates.
    """
    if context.is_stopped():
        return False
    task = asyncio.current_task()
    assert task is not None
    pumping = True
    interrupted = False

    def interrupt(_: object) -> None:
        nonlocal interrupted
        if pumping:  # a callback that runs after the pump ended must not cancel what follows
            interrupted = True
            task.cancel()

    cancelled = context.cancelled()
    cancelled.add_done_callback(interrupt)
    try:
        await pump
    except asyncio.CancelledError:
        if not interrupted or task.uncancel() > 0:
            raise
        return False
    finally:
        pumping = False
        cancelled.remove_done_callback(interrupt)
    return True


async def _start_handler(handler: Handler, request: Any, context: RequestContext) -> AsyncIterator[Any]:
    """Call the handler: an async generator, or a coroutine returning an async iterable."""
    result: Any = handler(request, context)
    if inspect.isawaitable(result):
        result = await result
    if hasattr(result, "__aiter__"):
        return result.__aiter__()
    if hasattr(result, "__iter__"):
        return _from_sync(result)
    raise TypeError(f"handler returned {type(result).__name__}, not an async iterable")


async def _from_sync(values: Any) -> AsyncIterator[Any]:
    for value in values:
        yield value
