"""The DoS bench's command line and its reading of figures: bad selections are clear errors, a row runs end to end."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.dos.budget import MIB, LegitLatencies
from loadtests import dos_bench

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 20.0


def test_an_unknown_scenario_is_refused_naming_it_and_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        dos_bench.cli(["--scenarios", "h1-bare-lf,no-such-attack"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "unknown scenario 'no-such-attack'" in error
    assert "h2-rapid-reset" in error  # the known ones are listed


def test_a_selection_with_no_scenario_on_the_chosen_planes_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        dos_bench.cli(["--scenarios", "h1-bare-lf", "--planes", "tcp"])
    assert exited.value.code == 2
    assert "no scenario of h1-bare-lf is on plane(s) tcp" in capsys.readouterr().err


def _figures(peak_mib: float, latencies: list[float], failures: int, fds: int, check: bool | None) -> dos_bench.Figures:
    legit = LegitLatencies(latencies, [f"failure {n}" for n in range(failures)])
    return dos_bench.Figures(int(peak_mib * MIB), 0, legit, fds, dos_bench.Seen("-", check))


def test_targets_missed_are_named_and_a_failed_call_counts_as_unanswered() -> None:
    assert _figures(10, [0.01] * 99, 0, 0, None).missed("own") == []
    assert _figures(300, [0.01] * 99, 0, 0, None).missed("own") == ["peak RSS"]
    assert _figures(10, [0.01] * 90, 10, 0, None).missed("own") == ["p99"]  # 10 % failed: p99 is "never"
    assert _figures(10, [0.01] * 99, 0, dos_bench.FD_SLACK + 1, False).missed("own") == ["fds", "own"]
    assert _figures(10, [], 3, 0, None).p99_counting_failures == math.inf


@pytest.mark.timeout(60)
def test_one_http_scenario_runs_end_to_end_and_prints_its_rows() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.dos_bench", "--scenarios", "h1-bare-lf"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert out.startswith("machine: ") and "load average" in out
    rows = [line for line in out.splitlines() if line.startswith("h1-bare-lf ")]
    assert [row.split("|")[1].strip() for row in rows] == ["on", "off"], out
    for row in rows:  # the reference refuses a bare-LF head and closes, with or without its DoS limits
        assert "answers [400], closed" in row, out
