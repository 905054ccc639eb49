"""Worker and caller settings: the environment by default, arguments over it, errors at construction."""

from __future__ import annotations

import pytest

from reference_impl.caller import Caller, CallerConfig
from reference_impl.config import ConfigError
from reference_impl.discovery.file_store import FileDiscovery
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.transport.http.plane import HTTP
from reference_impl.transport.nats.plane import NATS
from reference_impl.transport.tcp.config import TcpWorkerConfig
from reference_impl.transport.tcp.plane import TCP
from reference_impl.worker import Worker, WorkerConfig


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("DYN_", "RP_")) or name == "NATS_SERVER":
            monkeypatch.delenv(name)


def test_worker_reads_dynamos_environment_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("NATS_SERVER", "nats://127.0.0.1:4333")
    monkeypatch.setenv("DYN_REQUEST_PLANE", "nats")
    monkeypatch.setenv("DYN_REQUEST_PLANE_CODEC", "JSON")
    monkeypatch.setenv("DYN_TCP_RPC_PORT", "7011")
    worker = Worker("demo", "backend", discovery=FileDiscovery(tmp_path))
    assert worker.plane == "nats"
    assert worker.config.of(NATS).url == "nats://127.0.0.1:4333"
    assert worker.config.codec is PayloadCodec.JSON
    assert worker.config.of(TCP).port == 7011


def test_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("DYN_REQUEST_PLANE", "nats")
    monkeypatch.setenv("DYN_TCP_RPC_PORT", "7011")
    worker = Worker("demo", "backend", plane="tcp", discovery=FileDiscovery(tmp_path))
    assert worker.plane == "tcp" and worker.config.of(TCP).port == 7011
    assert WorkerConfig.from_env(tcp={"port": 7012}).of(TCP).port == 7012
    explicit = Worker("demo", "backend", discovery=FileDiscovery(tmp_path), config=WorkerConfig())
    assert explicit.plane == "tcp" and explicit.config.of(TCP).port == 0, "an explicit config is taken as it is"


def test_caller_reads_its_environment_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("NATS_SERVER", "nats://127.0.0.1:4333")
    monkeypatch.setenv("RP_CALLHOME_TIMEOUT", "0")
    monkeypatch.setenv("RP_DROP_GRACE", "0.5")
    monkeypatch.setenv("RP_HTTP_VERSION", "HTTP/1.1")
    caller = Caller(FileDiscovery(tmp_path))
    assert caller.config.of(NATS).url == "nats://127.0.0.1:4333"
    assert caller.config.callhome_timeout is None
    assert caller.config.drop_grace == 0.5
    assert caller.config.of(HTTP).version == "http/1.1"


def test_defaults_are_untouched_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYN_TCP_RPC_PORT", "7011")
    assert WorkerConfig().of(TCP).port == 0
    assert CallerConfig().callhome_timeout == 60.0


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("DYN_TCP_RPC_PORT", "70000", "0..65535"),
        ("DYN_TCP_RPC_PORT", "http", "not an integer"),
        ("DYN_HTTP_RPC_PORT", "-1", "0..65535"),
        ("DYN_REQUEST_PLANE", "udp", "tcp, nats, http"),
        ("DYN_REQUEST_PLANE_CODEC", "cbor", "json or msgpack"),
        ("DYN_TCP_MAX_MESSAGE_SIZE", "-4", "greater than 0"),
        ("DYN_TCP_WORK_QUEUE_SIZE", "-1", "cannot be negative"),
        ("DYN_TCP_WORKER_POOL_SIZE", "0", "greater than 0"),
        ("NATS_SERVER", "127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("NATS_SERVER", "nats://a:4222,http://b:4222", "nats://127.0.0.1:4222"),
        ("NATS_SERVER", "tls://b:4222", None),
        ("DYN_HTTP_RPC_ROOT_PATH", "v1/rpc", "starts with '/'"),
        ("NATS_SERVER", " ", None),  # blank: the default applies
    ],
)
def test_a_bad_worker_variable_fails_at_construction_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path, variable: str, value: str, words: str | None
) -> None:
    monkeypatch.setenv(variable, value)
    if words is None:
        Worker("demo", "backend", discovery=FileDiscovery(tmp_path))
        return
    with pytest.raises(ConfigError) as caught:
        Worker("demo", "backend", discovery=FileDiscovery(tmp_path))
    assert variable in str(caught.value) and words in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DYN_TCP_RESPONSE_STREAM_PORT", "65536"),
        ("DYN_TCP_REQUEST_TIMEOUT", "soon"),
        ("DYN_TCP_REQUEST_TIMEOUT", "0"),
        ("RP_CALLHOME_MAX_MESSAGE_SIZE", "-1"),
        ("RP_DROP_GRACE", "-1"),
        ("RP_HTTP_VERSION", "h3"),
    ],
)
def test_a_bad_caller_variable_fails_at_construction_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        Caller(FileDiscovery(tmp_path))


def test_bad_arguments_fail_at_construction_too(tmp_path) -> None:
    with pytest.raises(ConfigError, match="DYN_TCP_RPC_PORT"):
        TcpWorkerConfig(port=-1)
    with pytest.raises(ConfigError, match="DYN_REQUEST_PLANE"):
        Worker("demo", "backend", plane="udp", discovery=FileDiscovery(tmp_path))
    with pytest.raises(ConfigError, match="no setting"):
        WorkerConfig.from_env(prot=1)
    with pytest.raises(ConfigError, match="RP_DROP_GRACE"):
        CallerConfig(drop_grace=-0.1)
