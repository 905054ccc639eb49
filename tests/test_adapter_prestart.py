"""A prestarted adapter runs with the environment handed to it late, in the process the suite started, and a spare
no test took exits quietly; the spare pool hands a spare out once and only for the environment it was started with.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from fixtures.adapter_process import AdapterProcess, AdapterSpec, prestart_command
from fixtures.plugin import adapter_spec
from fixtures.spare_adapters import SpareAdapters

# An adapter that answers each request with what was read of PROBE_SETTING at import (by a module it imports, and
# by its own module) and when it ran, and its PID.
PROBE_IMPLEMENTATION = """
import os

AT_IMPORT = os.environ.get("PROBE_SETTING")
"""
PROBE_ADAPTER = """
import json, os, sys

import probe_implementation

AT_MODULE_LEVEL = os.environ.get("PROBE_SETTING")

if __name__ == "__main__":
    for line in sys.stdin:
        request = json.loads(line)
        answer = {"at_import": probe_implementation.AT_IMPORT, "at_module_level": AT_MODULE_LEVEL,
                  "at_main": os.environ.get("PROBE_SETTING"), "pid": os.getpid(), "argv": sys.argv[1:]}
        print(json.dumps({"id": request["id"], "ok": True, **answer}), flush=True)
        if request["op"] == "shutdown":
            break
"""


@pytest.fixture
def probe_spec(tmp_path: Path) -> AdapterSpec:
    (tmp_path / "probe_adapter.py").write_text(PROBE_ADAPTER)
    (tmp_path / "probe_implementation.py").write_text(PROBE_IMPLEMENTATION)
    return AdapterSpec("probe", [sys.executable, "-m", "probe_adapter", "--flag"], env={"PYTHONPATH": str(tmp_path)})


async def test_the_environment_handed_late_is_what_the_adapter_reads_when_it_runs(
    probe_spec: AdapterSpec, tmp_path: Path
) -> None:
    adapter = AdapterProcess(probe_spec, {"PROBE_SETTING": "early"}, tmp_path / "spare" / "adapter.log")
    await adapter.prestart()
    try:
        hello = await adapter.finish_start({"PROBE_SETTING": "late"})
        assert hello["at_main"] == "late"
        assert hello["at_module_level"] == "late", "the adapter's own module runs again as __main__, handed all"
        # Read when a module the adapter imports is imported, a setting keeps its early value: why only adapters
        # whose implementation reads its settings when it runs may be prestarted (the built-in ones; another
        # only with --adapter-start prestart).
        assert hello["at_import"] == "early"
        assert hello["pid"] == adapter.pid, "the adapter runs in the process the suite started (its PID is judged)"
        assert hello["argv"] == ["--flag"]
    finally:
        await adapter.stop(timeout=4.0)
    assert adapter.process is not None and adapter.process.returncode == 0


async def test_a_spare_no_test_took_exits_quietly_at_stop(probe_spec: AdapterSpec, tmp_path: Path) -> None:
    adapter = AdapterProcess(probe_spec, {}, tmp_path / "adapter.log")
    await adapter.prestart()
    await adapter.stop(timeout=4.0)
    assert adapter.process is not None and adapter.process.returncode == 0, adapter.log_tail()


def test_only_a_python_module_command_can_be_prestarted() -> None:
    assert prestart_command(AdapterSpec("m", ["py", "-m", "pkg.adapter", "-x"])) == [
        "py",
        "-m",
        "fixtures.adapter_prestart",
        "-m",
        "pkg.adapter",
        "-x",
    ]
    assert prestart_command(AdapterSpec("s", ["py", "adapter.py"])) is None
    assert prestart_command(AdapterSpec("b", ["./my-adapter"])) is None


async def test_a_spare_is_handed_out_once_and_only_for_the_environment_it_was_started_with(
    probe_spec: AdapterSpec, tmp_path: Path
) -> None:
    spares = SpareAdapters(probe_spec, tmp_path, asyncio.get_running_loop())
    spares.prepare("tcp", {"PROBE_SETTING": "a"})
    mismatched = await spares.take("tcp", {"PROBE_SETTING": "b"}, tmp_path / "worker-tcp-1")
    assert mismatched is None, "a spare started with another environment is not handed out"
    assert not (tmp_path / "worker-tcp-1").exists()

    spares.want("tcp", {"PROBE_SETTING": "a"})
    spares.refill()
    spares.refill()  # one spare per plane: the second call starts nothing
    taken = await spares.take("tcp", {"PROBE_SETTING": "a"}, tmp_path / "worker-tcp-2")
    assert taken is not None
    try:
        assert await spares.take("tcp", {"PROBE_SETTING": "a"}, tmp_path / "worker-tcp-3") is None, "handed out once"
        assert taken.log_path == tmp_path / "worker-tcp-2" / "adapter.log" and taken.log_path.exists()
        hello = await taken.finish_start({})
        assert hello["at_main"] == "a"
    finally:
        await taken.stop(timeout=4.0)
        await spares.stop_all()
    assert (tmp_path / "spare-tcp-1").is_dir() and not (tmp_path / "worker-tcp-1").exists()
    assert not (tmp_path / "spare-tcp-2").exists(), "the spare handed out was moved to its test's directory"


async def test_a_spare_that_died_is_not_handed_out(tmp_path: Path) -> None:
    spec = AdapterSpec("missing", [sys.executable, "-m", "no_such_adapter_module_here"])
    spares = SpareAdapters(spec, tmp_path, asyncio.get_running_loop())
    spares.prepare("nats", {})
    spare = spares.spares["nats"]
    await spare.starting
    assert spare.process.process is not None
    await spare.process.process.wait()
    assert await spares.take("nats", {}, tmp_path / "worker-nats-1") is None
    assert "No module named" in json.dumps(spare.process.log_tail())


async def test_a_spare_is_not_handed_out_once_the_suites_own_environment_changed(
    probe_spec: AdapterSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spares = SpareAdapters(probe_spec, tmp_path, asyncio.get_running_loop())
    spares.prepare("http", {})
    monkeypatch.setenv("PROBE_SETTING", "set after the spare started")
    try:
        assert await spares.take("http", {}, tmp_path / "worker-http-1") is None
    finally:
        await spares.stop_all()


async def test_the_test_pytest_names_in_the_environment_does_not_keep_a_spare_from_being_handed_out(
    probe_spec: AdapterSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spares = SpareAdapters(probe_spec, tmp_path, asyncio.get_running_loop())
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "one test (call)")
    spares.want("tcp", {})
    spares.refill()
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "the next test (setup)")
    taken = await spares.take("tcp", {}, tmp_path / "worker-tcp-1")
    try:
        assert taken is not None
    finally:
        if taken is not None:
            await taken.stop(timeout=4.0)
        await spares.stop_all()


class _Options:
    """The plugin's command-line options, as ``adapter_spec`` reads them."""

    def __init__(self, **options: str | None) -> None:
        self.options = {"--impl": "reference", "--impl-cmd": None, "--impl-python": None, **options}

    def getoption(self, name: str) -> str | None:
        return self.options[name]


class _XdistWorkerOptions(_Options):
    """... in an xdist worker (pytest-xdist gives its config ``workerinput``)."""

    workerinput: dict[str, str] = {}


@pytest.mark.parametrize(
    ("options", "prestart"),
    [
        ({"--adapter-start": "auto"}, True),  # built-in adapters: their implementations read settings when run
        ({"--adapter-start": "cold"}, False),
        ({"--adapter-start": "auto", "--impl": "x", "--impl-cmd": "python -m their.adapter"}, False),
        ({"--adapter-start": "prestart", "--impl": "x", "--impl-cmd": "python -m their.adapter"}, True),
    ],
)
def test_only_the_built_in_adapters_are_prestarted_unless_asked(options: dict[str, str], prestart: bool) -> None:
    assert adapter_spec(_Options(**options)).prestart is prestart  # type: ignore[arg-type]


def test_by_default_an_xdist_worker_starts_its_adapters_cold_as_every_core_is_busy_already() -> None:
    assert adapter_spec(_XdistWorkerOptions(**{"--adapter-start": "auto"})).prestart is False  # type: ignore[arg-type]
    assert adapter_spec(_XdistWorkerOptions(**{"--adapter-start": "prestart"})).prestart is True  # type: ignore[arg-type]


def test_asking_to_prestart_an_adapter_that_is_not_a_python_module_is_a_usage_error() -> None:
    options = _Options(**{"--adapter-start": "prestart", "--impl": "x", "--impl-cmd": "./their-adapter --flag"})
    with pytest.raises(pytest.UsageError, match="python -m module"):
        adapter_spec(options)  # type: ignore[arg-type]
