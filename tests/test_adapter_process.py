"""The suite's adapter driver reports how a dead adapter ended, not a half-reaped state."""

from __future__ import annotations

import sys
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


async def test_a_mute_living_adapter_is_named_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fixtures.adapter_process.EXIT_STATUS_WAIT_S", 0.5)
    script = "import os, time; os.close(1); time.sleep(30)"
    adapter = AdapterProcess(AdapterSpec(name="mute", command=[sys.executable, "-c", script]), {}, tmp_path / "m.log")
    with pytest.raises(AdapterError, match="closed its stdout but is still running"):
        await adapter.start()
    await adapter.stop(timeout=2.0)
    assert adapter.process is not None and adapter.process.returncode is not None, "stopped by PID"
