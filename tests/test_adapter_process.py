"""The suite's adapter driver reports how a dead adapter ended, not a half-reaped state."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

from fixtures.adapter_process import AdapterError, AdapterProcess, AdapterSpec


@pytest.mark.parametrize("code", [0, 3, 17])
async def test_an_adapter_that_exits_at_once_is_reported_with_its_exit_code(tmp_path: Path, code: int) -> None:
    spec = AdapterSpec(name="dead", command=[sys.executable, "-c", f"import sys; sys.exit({code})"])
    adapter = AdapterProcess(spec, env={}, log_path=tmp_path / "dead.log")
    with pytest.raises(AdapterError) as raised:
        await adapter.start()
    await adapter.stop()
    assert f"exited (code {code})" in str(raised.value)


async def test_a_request_to_an_adapter_already_reaped_names_its_exit_code(tmp_path: Path) -> None:
    # Under load the child may exit and be reaped before the first request is written (CI's wheel env saw
    # "is not running" where the other two ways of noticing a dead adapter say how it ended).
    adapter = AdapterProcess(
        AdapterSpec(name="dead", command=[sys.executable, "-c", "import sys; sys.exit(3)"]), {}, tmp_path / "d.log"
    )
    await adapter._spawn(adapter.spec.command, {})
    assert adapter.process is not None
    await adapter.process.wait()
    with pytest.raises(AdapterError, match=r"exited \(code 3\)"):
        await adapter.request("hello")
    await adapter.stop()


async def test_a_mute_living_adapter_is_named_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fixtures.adapter_process.EXIT_STATUS_WAIT_S", 0.5)
    script = "import os, time; os.close(1); time.sleep(30)"
    adapter = AdapterProcess(AdapterSpec(name="mute", command=[sys.executable, "-c", script]), {}, tmp_path / "m.log")
    with pytest.raises(AdapterError, match="closed its stdout but is still running"):
        await adapter.start()
    await adapter.stop(timeout=2.0)
    assert adapter.process is not None and adapter.process.returncode is not None, "stopped by PID"


async def test_an_adapter_that_missed_an_answer_is_signalled_at_once_at_stop(tmp_path: Path) -> None:
    # Answers its hello, then never again: stuck, as an adapter whose event loop is blocked for good.
    script = (
        "import json, sys, time\n"
        "request = json.loads(sys.stdin.readline())\n"
        "print(json.dumps({'id': request['id'], 'ok': True}), flush=True)\n"
        "time.sleep(60)\n"
    )
    adapter = AdapterProcess(AdapterSpec(name="stuck", command=[sys.executable, "-c", script]), {}, tmp_path / "s.log")
    await adapter.start()
    with pytest.raises(AdapterError, match="no answer to call"):
        await adapter.request("call", timeout=0.2)
    started = time.monotonic()
    await adapter.stop(timeout=40.0)  # asking, then waiting for it to exit by itself, would take 10 s each
    assert adapter.process is not None and adapter.process.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 5.0, "a stuck adapter is not waited for before it is signalled"


async def test_a_request_that_could_not_be_sent_is_not_left_waiting_for_an_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fixtures.adapter_process.EXIT_STATUS_WAIT_S", 0.5)
    # Closes its stdin and lives on: a request cannot be written, and must not stay among those awaiting an answer
    # (once the adapter's answers end, an exception would be set on it that nobody retrieves).
    script = "import os, time; os.close(0); time.sleep(30)"
    adapter = AdapterProcess(AdapterSpec(name="deaf", command=[sys.executable, "-c", script]), {}, tmp_path / "d.log")
    await adapter._spawn(adapter.spec.command, {})
    try:
        refused = False
        for _ in range(100):  # until the child has closed its stdin (before that, each request goes unanswered)
            try:
                await adapter.request("hello", timeout=0.05)
            except AdapterError as error:
                if "no answer to hello" in str(error):
                    continue
                assert "closed its stdin but is still running" in str(error)
                refused = True
                break
        assert refused, "a request to an adapter that closed its stdin was written"
        assert adapter._waiting == {}
    finally:
        await adapter.stop(timeout=2.0)


async def test_a_discarded_adapter_is_signalled_at_once_not_asked_to_shut_down(tmp_path: Path) -> None:
    # Answers every request, and would take 30 s to exit if asked to shut down: a graceful drain.
    script = (
        "import json, sys, time\n"
        "for line in sys.stdin:\n"
        "    request = json.loads(line)\n"
        "    print(json.dumps({'id': request['id'], 'ok': True}), flush=True)\n"
        "    if request['op'] == 'shutdown':\n"
        "        time.sleep(30)\n"
    )
    adapter = AdapterProcess(AdapterSpec(name="slow", command=[sys.executable, "-c", script]), {}, tmp_path / "s.log")
    await adapter.start()
    started = time.monotonic()
    await adapter.discard(timeout=40.0)
    assert adapter.process is not None and adapter.process.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 5.0, "a discarded adapter's graceful shutdown was waited for"


async def test_an_adapter_is_gone_once_no_process_of_its_group_is_left(tmp_path: Path) -> None:
    # The adapter exits at once, leaving a child of its group that lives 0.5 s: not gone until the child is.
    script = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(0.5)'])"
    adapter = AdapterProcess(AdapterSpec(name="parent", command=[sys.executable, "-c", script]), {}, tmp_path / "p.log")
    await adapter._spawn(adapter.spec.command, {})
    assert adapter.process is not None
    await adapter.process.wait()
    started = time.monotonic()
    assert await asyncio.wait_for(adapter.gone(), 5.0) == "exited (code 0), no process of its group left"
    assert time.monotonic() - started > 0.2, "gone while its child still ran"
    await adapter.stop()


async def test_a_living_adapter_is_not_gone(tmp_path: Path) -> None:
    adapter = AdapterProcess(
        AdapterSpec(name="alive", command=[sys.executable, "-c", "import time; time.sleep(30)"]), {}, tmp_path / "a.log"
    )
    await adapter._spawn(adapter.spec.command, {})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(adapter.gone(), 0.3)
    await adapter.discard()
