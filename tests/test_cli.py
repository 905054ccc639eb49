"""The command line, end to end through real processes: serve in one, call and discover from others."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 20.0
RUN_TIMEOUT = 30.0


def _env(**extra: str) -> dict[str, str]:
    """No inherited request-plane settings: each test says what it wants."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYN_", "RP_")) and k != "NATS_SERVER"}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "reference_impl", *args]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cli(*args), cwd=ROOT, env=env or _env(), capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )


def _read_line(stream: IO[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    os.set_blocking(stream.fileno(), False)
    buffered = ""
    while time.monotonic() < deadline:
        chunk = stream.readline()
        if chunk:
            buffered += chunk
            if buffered.endswith("\n"):
                return buffered
        else:
            time.sleep(0.02)
    raise TimeoutError(f"no line within {timeout}s (got {buffered!r})")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5.0)


@pytest.fixture
def discovery(tmp_path: Path) -> Path:
    return tmp_path / "kv"


def _serve(discovery: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    process = subprocess.Popen(
        _cli("serve", "--discovery", str(discovery), *args),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(_read_line(process.stdout, START_TIMEOUT))
        assert ready["event"] == "serving", ready
        yield process, ready
    finally:
        _stop(process)


@pytest.fixture
def standard_worker(discovery: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    yield from _serve(discovery, "--standard")


@pytest.fixture
def watched_worker(discovery: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    yield from _serve(discovery, "--handler", "tests.cli_handlers:HANDLERS", "--namespace", "cli")


def test_call_prints_items_as_json_lines(discovery: Path, standard_worker: Any) -> None:
    done = _run("call", "demo.backend.stream", '{"count": 3}', "--discovery", str(discovery))
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"seq": i, "pad": ""} for i in range(3)]


def test_discover_lists_the_served_instances(discovery: Path, standard_worker: Any) -> None:
    _, ready = standard_worker
    done = _run("discover", "demo.backend", "--discovery", str(discovery))
    assert done.returncode == 0, done.stderr
    listed = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(entry["endpoint"] for entry in listed) == sorted(ready["endpoints"])
    assert {entry["instance_id"] for entry in listed} == {ready["instance_id"]}
    assert all(list(entry["transport"]) == ["tcp"] for entry in listed)


def test_a_failed_call_is_one_line_with_the_error_class(discovery: Path, standard_worker: Any) -> None:
    done = _run("call", "demo.backend.raise", '{"exception": "ValueError"}', "--discovery", str(discovery))
    assert done.returncode == 1
    assert done.stdout.splitlines() == ['{"seq":0}']
    assert done.stderr.splitlines() == [
        "rp-reference: error: call failed (handler_error, InvalidRequest): ValueError: golden: ValueError"
    ]


def test_ctrl_c_during_a_long_stream_sends_stop(discovery: Path, watched_worker: Any, tmp_path: Path) -> None:
    marker = tmp_path / "watched.json"
    request = json.dumps({"marker": str(marker), "interval": 0.05, "count": 400})
    caller = subprocess.Popen(
        _cli("call", "cli.backend.watched", request, "--discovery", str(discovery)),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert caller.stdout is not None
        assert json.loads(_read_line(caller.stdout, START_TIMEOUT)) == {"seq": 0}
        assert json.loads(_read_line(caller.stdout, 5.0)) == {"seq": 1}
        caller.send_signal(signal.SIGINT)
        status = caller.wait(10.0)
        stderr = caller.stderr.read() if caller.stderr else ""
    finally:
        _stop(caller)
    assert status == 130, stderr
    assert "Traceback" not in stderr
    deadline = time.monotonic() + 5.0
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = json.loads(marker.read_text())
    assert seen["stopped"], f"the handler was not told to stop: {seen}"
    assert seen["sent"] < 100, f"the handler ran on after Ctrl-C: {seen}"


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (["serve", "--port", "70000"], {}, "DYN_TCP_RPC_PORT"),
        (["serve"], {"DYN_REQUEST_PLANE": "udp"}, "DYN_REQUEST_PLANE"),
        (["serve", "--codec", "cbor"], {}, "DYN_REQUEST_PLANE_CODEC"),
        (["serve"], {"DYN_TCP_WORK_QUEUE_SIZE": "-1"}, "DYN_TCP_WORK_QUEUE_SIZE"),
        (["serve", "--handler", "no_such_module_here:generate"], {}, "no_such_module_here"),
        (["serve", "--handler", "tests.cli_handlers:missing"], {}, "missing"),
        (["serve", "--handler", "tests.cli_handlers:NOT_A_HANDLER"], {}, "NOT_A_HANDLER"),
        (["serve", "--handler", "no-colon"], {}, "module:function"),
        (["call", "demo.backend.echo", "{not json"], {}, "not JSON"),
        (["call", "not-an-endpoint"], {}, "namespace.component.endpoint"),
        (["call", "demo.backend.echo"], {"RP_CALLHOME_MAX_MESSAGE_SIZE": "-5"}, "RP_CALLHOME_MAX_MESSAGE_SIZE"),
        (["discover", "--discovery", "/nonexistent/kv"], {}, "/nonexistent/kv"),
        (["serve", "--no-such-option"], {}, "--no-such-option"),
        (["frobnicate"], {}, "frobnicate"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(
    args: list[str], env: dict[str, str], names: str, tmp_path: Path
) -> None:
    done = _run(*args, env=_env(DYN_FILE_KV=str(tmp_path / "kv"), **env))
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rp-reference: error: "), done.stderr
    assert names in lines[0], lines[0]


def test_serve_and_call_over_nats(discovery: Path, nats_server: Any) -> None:
    url = nats_server.url
    for _, ready in _serve(discovery, "--standard", "--plane", "nats", "--nats-url", url):
        assert ready["plane"] == "nats"
        done = _run("call", "demo.backend.echo", '{"over": "nats"}', "--discovery", str(discovery), "--nats-url", url)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ['{"over":"nats"}']
        from_env = _run("call", "demo.backend.echo", "[1]", "--discovery", str(discovery), env=_env(NATS_SERVER=url))
        assert from_env.stdout.splitlines() == ["[1]"], from_env.stderr
