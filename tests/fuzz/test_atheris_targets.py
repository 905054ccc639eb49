"""Each fuzz target under atheris for a bounded number of runs, in a subprocess.

atheris is a dev dependency: if it does not import, collecting this module fails the
run instead of skipping it.  The canary target proves that a finding fails the harness.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import atheris  # noqa: F401  (a missing dev dependency must fail here, not skip)
import pytest

from tests.fuzz.atheris_main import CANARY
from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
RUNS = 2000
PROCESS_TIMEOUT = 120


def run_harness(target: str, artifacts: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "tests.fuzz.atheris_main",
        target,
        f"-runs={RUNS}",
        "-timeout=10",  # seconds per input: a hang is a finding
        "-rss_limit_mb=1024",
        "-max_len=4096",
        f"-artifact_prefix={artifacts}/",
        *flags,
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=PROCESS_TIMEOUT, check=False)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_atheris_finds_nothing(target: str, tmp_path: Path) -> None:
    result = run_harness(target, tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert f"Done {RUNS} runs" in result.stderr
    assert not list(tmp_path.iterdir()), "the fuzzer wrote a crash artifact"


def test_a_finding_fails_the_harness_and_leaves_a_reproducer(tmp_path: Path) -> None:
    result = run_harness(CANARY, tmp_path, "-seed=1")
    assert result.returncode != 0
    assert "Uncaught Python exception" in result.stdout  # atheris prints the traceback on stdout
    assert "canary: the fuzzer found the planted failure" in result.stdout
    (reproducer,) = tmp_path.iterdir()
    assert reproducer.read_bytes()[:1] == b"\x42"
