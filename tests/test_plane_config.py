"""Each plane's own settings: read from Dynamo's variables, arguments over them, errors naming the variable.

And the registry is the one list of planes: a plane registered here (a toy one, in this process) gets its
settings read into ``WorkerConfig``/``CallerConfig`` and is served and reached through the same worker and
caller code as the real ones, without either config class knowing of it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reference_impl import config as cfg
from reference_impl import planes
from reference_impl.caller import Caller, CallerConfig
from reference_impl.config import ConfigError
from reference_impl.discovery.file_store import FileDiscovery
from reference_impl.routing import EndpointId
from reference_impl.transport.http.config import HttpCallerConfig, HttpWorkerConfig
from reference_impl.transport.http.plane import HTTP
from reference_impl.transport.nats.config import NatsCallerConfig, NatsWorkerConfig
from reference_impl.transport.nats.plane import NATS
from reference_impl.transport.plane import Advertisement, Plane, RequestSink
from reference_impl.transport.tcp.config import TcpCallerConfig, TcpWorkerConfig
from reference_impl.transport.tcp.plane import TCP
from reference_impl.worker import Worker, WorkerConfig


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("DYN_", "RP_", "TOY_")) or name == "NATS_SERVER":
            monkeypatch.delenv(name)


# (config type, field, variable, text in the environment, value it reads as, a valid explicit value)
ROUND_TRIPS = [
    (TcpWorkerConfig, "host", "DYN_TCP_RPC_HOST", "10.0.0.7", "10.0.0.7", "10.0.0.8"),
    (TcpWorkerConfig, "port", "DYN_TCP_RPC_PORT", "7011", 7011, 7012),
    (TcpWorkerConfig, "max_message_size", "DYN_TCP_MAX_MESSAGE_SIZE", "1024", 1024, 2048),
    (TcpWorkerConfig, "idle_timeout", "RP_TCP_IDLE_TIMEOUT", "0", None, 9.0),
    (TcpWorkerConfig, "max_inflight_per_connection", "RP_TCP_MAX_INFLIGHT_PER_CONNECTION", "7", 7, 3),
    (TcpCallerConfig, "request_timeout", "DYN_TCP_REQUEST_TIMEOUT", "2.5", 2.5, 3.5),
    (TcpCallerConfig, "connect_timeout", "DYN_TCP_CONNECT_TIMEOUT", "1.5", 1.5, 0.5),
    (HttpWorkerConfig, "port", "DYN_HTTP_RPC_PORT", "8081", 8081, 8082),
    (HttpWorkerConfig, "root", "DYN_HTTP_RPC_ROOT_PATH", "/rpc", "/rpc", "/other"),
    (HttpWorkerConfig, "body_budget", "RP_HTTP_BODY_BUDGET", "0", None, 4096),
    (HttpWorkerConfig, "h2_reset_rate", "RP_HTTP_H2_RESET_RATE", "2.5", 2.5, 0.0),
    (HttpCallerConfig, "version", "RP_HTTP_VERSION", "HTTP/1.1", "http/1.1", "h2"),
    (HttpCallerConfig, "request_timeout", "DYN_HTTP_REQUEST_TIMEOUT", "9", 9.0, 1.0),
    (HttpCallerConfig, "connect_timeout", "DYN_TCP_CONNECT_TIMEOUT", "1.5", 1.5, 0.5),
    (NatsWorkerConfig, "url", "NATS_SERVER", "nats://10.0.0.1:4333", "nats://10.0.0.1:4333", "tls://b:4222"),
    (NatsCallerConfig, "url", "NATS_SERVER", "nats://10.0.0.1:4333", "nats://10.0.0.1:4333", "tls://b:4222"),
    (NatsCallerConfig, "request_timeout", "DYN_NATS_REQUEST_TIMEOUT_SECS", "3", 3.0, 4.0),
]


@pytest.mark.parametrize(("kind", "name", "variable", "text", "read", "explicit"), ROUND_TRIPS)
def test_a_plane_setting_reads_its_variable_and_an_argument_overrides_it(
    kind: type[cfg.Settings], name: str, variable: str, text: str, read: Any, explicit: Any
) -> None:
    default = getattr(kind(), name)
    assert read != default and explicit != read, "the row must tell the layers apart"
    environ = {variable: text}
    assert getattr(kind.from_env({}), name) == default
    assert getattr(kind.from_env(environ), name) == read
    assert getattr(kind.from_env(environ, **{name: explicit}), name) == explicit
    assert getattr(kind(**{name: explicit}), name) == explicit, "direct construction ignores the environment"


@pytest.mark.parametrize(
    ("kind", "variable", "text", "words"),
    [
        (TcpWorkerConfig, "DYN_TCP_RPC_PORT", "70000", "0..65535"),
        (TcpWorkerConfig, "RP_TCP_BUFFER_BUDGET", "0", "greater than 0"),
        (TcpCallerConfig, "DYN_TCP_REQUEST_TIMEOUT", "soon", "not a number of seconds"),
        (HttpWorkerConfig, "DYN_HTTP_RPC_ROOT_PATH", "v1/rpc", "starts with '/'"),
        (HttpWorkerConfig, "RP_HTTP_BODY_BUDGET", "-1", "cannot be negative"),
        (HttpCallerConfig, "RP_HTTP_VERSION", "h3", "h2, http/1.1"),
        (NatsWorkerConfig, "NATS_SERVER", "127.0.0.1:4222", "nats://127.0.0.1:4222"),
        (NatsCallerConfig, "DYN_NATS_REQUEST_TIMEOUT_SECS", "0", "greater than 0"),
    ],
)
def test_a_bad_plane_variable_is_one_error_naming_it(
    kind: type[cfg.Settings], variable: str, text: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        kind.from_env({variable: text})
    message = str(caught.value)
    assert variable in message and kind.__name__ in message and words in message and "\n" not in message


def test_a_bad_plane_variable_fails_the_worker_and_caller_configs_too() -> None:
    with pytest.raises(ConfigError, match="DYN_HTTP_RPC_PORT"):
        WorkerConfig.from_env({"DYN_HTTP_RPC_PORT": "-1"})
    with pytest.raises(ConfigError, match="RP_HTTP_VERSION"):
        CallerConfig.from_env({"RP_HTTP_VERSION": "h3"})
    with pytest.raises(ConfigError, match="DYN_TCP_RPC_PORT"):
        WorkerConfig.from_env(tcp={"port": 70000})


def test_an_unknown_setting_name_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="TcpWorkerConfig has no setting prot"):
        TcpWorkerConfig(prot=1)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="NatsCallerConfig has no setting uri"):
        NatsCallerConfig.from_env(uri="nats://a:4222")
    with pytest.raises(ConfigError, match="HttpWorkerConfig has no setting prot"):
        WorkerConfig.from_env(http={"prot": 1})


@pytest.mark.parametrize(
    ("make", "home"),
    [
        (lambda: WorkerConfig(port=7000), "TcpWorkerConfig.port"),  # type: ignore[call-arg]
        (lambda: WorkerConfig.from_env(http_port=7000), "HttpWorkerConfig.port"),
        (lambda: WorkerConfig.from_env(tcp_idle_timeout=1.0), "TcpWorkerConfig.idle_timeout"),
        (lambda: CallerConfig(nats_url="nats://a:4222"), "NatsCallerConfig.url"),  # type: ignore[call-arg]
        (lambda: CallerConfig.from_env(http_version="h2"), "HttpCallerConfig.version"),
    ],
)
def test_an_old_flat_setting_name_says_where_it_lives_now(make: Any, home: str) -> None:
    with pytest.raises(ConfigError, match="has no setting") as caught:
        make()
    assert home in str(caught.value)


def test_plane_configs_given_whole_or_as_overrides_over_the_environment() -> None:
    environ = {"DYN_TCP_RPC_HOST": "10.0.0.7", "DYN_TCP_RPC_PORT": "7011", "NATS_SERVER": "nats://n:4333"}
    over = WorkerConfig.from_env(environ, tcp={"port": 7012})
    assert (over.of(TCP).host, over.of(TCP).port) == ("10.0.0.7", 7012), "a mapping overrides the environment"
    assert over.of(NATS).url == "nats://n:4333"
    whole = WorkerConfig.from_env(environ, tcp=TcpWorkerConfig(port=7013))
    assert (whole.of(TCP).host, whole.of(TCP).port) == ("127.0.0.1", 7013), "a config object is taken as it is"
    spelt = WorkerConfig.from_env(environ, planes={"tcp": {"port": 7014}})
    assert (spelt.of(TCP).host, spelt.of(TCP).port) == ("10.0.0.7", 7014), "planes= in from_env reads the same"
    direct = WorkerConfig(planes={"http": HttpWorkerConfig(port=8080)})
    assert direct.of(HTTP).port == 8080 and direct.of(TCP) == TcpWorkerConfig(), "missing planes get defaults"
    with pytest.raises(ConfigError, match="no request plane udp"):
        WorkerConfig(planes={"udp": TcpWorkerConfig()})
    with pytest.raises(ConfigError, match="HttpCallerConfig"):
        CallerConfig(planes={"http": TcpCallerConfig()})


def test_the_config_classes_take_their_planes_from_the_registry() -> None:
    assert set(WorkerConfig().planes) == set(CallerConfig().planes) == set(planes.REGISTRY)
    plane_fields = {f.name for f in dataclasses.fields(WorkerConfig)} & set(planes.REGISTRY)
    assert not plane_fields, "no plane is a field of its own"


# --- a fourth plane, registered from outside the package ----------------------------------------------


@dataclass
class ToyWorkerConfig(cfg.Settings):
    label: str = field(default="toy", metadata=cfg.setting("TOY_WORKER_LABEL", check=cfg.not_empty))


@dataclass
class ToyCallerConfig(cfg.Settings):
    label: str = field(default="toy", metadata=cfg.setting("TOY_CALLER_LABEL", check=cfg.not_empty))


class ToyServer:
    """Serves in this process: the client below hands the request to the sink directly."""

    listening: dict[str, ToyServer] = {}
    plane = "toy"

    def __init__(self, sink: RequestSink, config: ToyWorkerConfig) -> None:
        self.sink = sink
        self.label = config.label

    async def start(self) -> None:
        ToyServer.listening[self.label] = self

    def advertise(self, endpoint: EndpointId, instance_id: int) -> Advertisement:
        route_key = f"{endpoint}/{instance_id:x}"
        return Advertisement("toy_kind", f"{self.label}|{route_key}", route_key)

    async def serve_endpoint(self, endpoint: EndpointId, instance_id: int) -> Advertisement:
        return self.advertise(endpoint, instance_id)

    async def close(self) -> None:
        ToyServer.listening.pop(self.label, None)


class ToyClient:
    def __init__(self, config: ToyCallerConfig) -> None:
        self.label = config.label
        self.sent = 0

    async def _send(self, address: str, headers: dict[str, str], payload: bytes) -> bytes:
        label, route_key = address.split("|", 1)
        assert label == self.label, "the caller's toy settings came from its environment"
        self.sent += 1
        rejection = ToyServer.listening[label].sink.offer("toy", route_key, payload, headers)
        return (rejection or "").encode()

    def send(self, address: str, headers: dict[str, str], payload: bytes, /) -> Awaitable[bytes]:
        return self._send(address, headers, payload)

    async def close(self) -> None:
        pass


def make_toy_server(sink: RequestSink, config: ToyWorkerConfig, *, max_concurrency: int) -> ToyServer:
    return ToyServer(sink, config)


TOY = Plane("toy", "toy_kind", ToyWorkerConfig, ToyCallerConfig, make_toy_server, ToyClient)


@pytest.fixture
def toy_plane() -> Iterator[Plane[ToyWorkerConfig, ToyCallerConfig]]:
    planes.register(TOY)
    try:
        yield TOY
    finally:
        planes.unregister(TOY.name)


async def test_a_registered_plane_is_configured_served_and_reached_by_the_same_code(
    toy_plane: Plane[ToyWorkerConfig, ToyCallerConfig], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DYN_REQUEST_PLANE", "toy")
    monkeypatch.setenv("TOY_WORKER_LABEL", "blue")
    monkeypatch.setenv("TOY_CALLER_LABEL", "blue")
    with pytest.raises(ConfigError, match="TOY_WORKER_LABEL"):
        WorkerConfig.from_env(toy={"label": " "})

    async def echo(request: Any, context: Any) -> Any:
        yield {"echo": request}

    discovery = FileDiscovery(tmp_path)
    worker = Worker("demo", "toyed", discovery=discovery)  # every setting from the environment
    assert worker.plane == "toy" and worker.config.of(toy_plane).label == "blue"
    worker.serve("echo", echo)
    await worker.start()
    try:
        (record,) = worker.records
        assert record.transport_kind == "toy_kind"
        async with Caller(discovery) as caller:
            assert caller.config.of(toy_plane).label == "blue"
            assert await caller.call("demo.toyed.echo", {"n": 1}) == [{"echo": {"n": 1}}]
            assert await caller.call("demo.toyed.echo", [2]) == [{"echo": [2]}]
            assert caller._clients["toy_kind"].sent == 2  # type: ignore[attr-defined]
    finally:
        await worker.stop()
