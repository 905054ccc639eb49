"""Each fuzz target under atheris for a bounded number of runs, in a subprocess.

atheris is a dev dependency: if it does not import, collecting this module fails the
run instead of skipping it.  The canary target proves that a finding fails the harness.
Each run instruments only its own target's code; the modules atheris reports instrumenting
are checked against the code each target exercises.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import atheris  # noqa: F401  (a missing dev dependency must fail here, not skip)
import pytest

from tests.fuzz.atheris_main import CANARY, TARGET_MODULES
from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
RUNS = 2000
PROCESS_TIMEOUT = 120
INSTRUMENTING = re.compile(r"^INFO: Instrumenting (\S+)$", re.MULTILINE)  # atheris' line per module it instruments
# The code each target exercises, which must be instrumented in its run (besides the target's own module).
CODE_UNDER_TEST = {
    "two_part": ("reference_impl.wire.two_part", "reference_impl.wire.checksum"),
    "request_frame": ("reference_impl.wire.request_frame",),
    "tcp_ack": ("reference_impl.wire.request_frame", "reference_impl.protocol.ack"),
    "caller_stream": ("reference_impl.protocol.response_stream", "reference_impl.wire.two_part"),
    "worker_stream": ("reference_impl.protocol.response_stream", "reference_impl.wire.two_part"),
    "messages": ("reference_impl.protocol.messages", "reference_impl.protocol.envelope"),
    "http1": ("reference_impl.transport.http.server", "reference_impl.transport.http.http1_server", "h11._connection"),
    "http2": ("reference_impl.transport.http.server", "reference_impl.transport.http.http2_server", "h2.connection"),
}
HTTP_STACKS = ("h11", "h2", "hpack", "hyperframe", "reference_impl.transport")


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


def test_the_harness_finds_every_target_where_it_looks() -> None:
    assert set(TARGET_MODULES) == set(TARGETS) == set(CODE_UNDER_TEST)
    for name, function in TARGETS.items():
        assert (function.__module__, function.__name__) == (TARGET_MODULES[name], f"fuzz_{name}")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_atheris_finds_nothing(target: str, tmp_path: Path) -> None:
    result = run_harness(target, tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert f"Done {RUNS} runs" in result.stderr
    assert not list(tmp_path.iterdir()), "the fuzzer wrote a crash artifact"
    instrumented = set(INSTRUMENTING.findall(result.stderr))
    missing = {TARGET_MODULES[target], *CODE_UNDER_TEST[target]} - instrumented
    assert not missing, f"not instrumented: {sorted(missing)}"
    others = set(TARGET_MODULES.values()) - {TARGET_MODULES[target]}
    assert not instrumented & others, f"other targets' modules instrumented: {sorted(instrumented & others)}"
    if not target.startswith("http"):
        http = {module for module in instrumented if any(_within(module, stack) for stack in HTTP_STACKS)}
        assert not http, f"HTTP code instrumented for a non-HTTP target: {sorted(http)}"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_a_finding_fails_the_harness_and_leaves_a_reproducer(tmp_path: Path) -> None:
    result = run_harness(CANARY, tmp_path, "-seed=1")
    assert result.returncode != 0
    assert "Uncaught Python exception" in result.stdout  # atheris prints the traceback on stdout
    assert "canary: the fuzzer found the planted failure" in result.stdout
    (reproducer,) = tmp_path.iterdir()
    assert reproducer.read_bytes()[:1] == b"\x42"
