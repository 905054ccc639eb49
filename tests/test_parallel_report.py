"""A parallel run (pytest-xdist, ``-n 2``) writes the same per-requirement report as a serial run.

Under xdist the tests run in worker processes and the report is written by the controller from what the
workers send it (fixtures/plugin.py): a test outcome lost or mapped wrongly on the way would change a
verdict, so the two reports are compared requirement by requirement, tests and reasons included, with
every kind of outcome in the sample (pass, MUST failure, SHOULD failure, expected failure, unexpected pass,
skip, ruled out, error in setup, deselected plane). Durations and timestamps aside.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytester"]

SAMPLE = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")

@pytest.mark.req("TCP-ACK-EMPTY")
def test_must_passes(plane):
    assert plane in ("tcp", "nats", "http")

@pytest.mark.req("TCP-ACK-ORDER")
def test_must_fails():
    assert 1 == 2

@pytest.mark.req("TCP-INVALID-PATH")
def test_should_fails():
    assert False, "worker said 'Invalid endpoint path'"

@pytest.mark.req("RS-HANDSHAKE")
def test_expected_to_fail():
    assert False, "known"

@pytest.mark.req("RS-PROLOGUE")
def test_expected_but_passes():
    pass

@pytest.mark.req("RS-SENTINEL")
def test_skipped():
    pytest.skip("no server")

@pytest.mark.req("RS-FINAL")
def test_ruled_out():
    pytest.skip("not applicable: no such plane here")

@pytest.mark.req("RS-CALLER-STOP")
def test_setup_error(broken):
    pass
"""

EXPECTED = """
[[expected]]
requirement = "RS-HANDSHAKE"
reason = "known divergence"
[[expected]]
requirement = "RS-PROLOGUE"
reason = "thought broken, but it passes"
"""


def _comparable(document: dict[str, Any]) -> dict[str, Any]:
    """The report without what differs between any two runs (times) or between processes (the hello's scratch)."""
    requirements = {
        r["id"]: {
            "verdict": r["verdict"],
            "reasons": r["reasons"],
            "tests": sorted(
                json.dumps({k: v for k, v in t.items() if k != "duration_s"}, sort_keys=True) for t in r["tests"]
            ),
        }
        for r in document["requirements"]
    }
    return {"implementation": document["implementation"], "summary": document["summary"], "requirements": requirements}


def _run(pytester: pytest.Pytester, name: str, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    report_dir = pytester.path / name
    result = pytester.runpytest_subprocess(
        "-p",
        "fixtures.plugin",
        "-p",
        "no:cacheprovider",
        "--planes",
        "tcp,http",
        "--expected-failures",
        str(pytester.path / "expected.toml"),
        "--report-dir",
        str(report_dir),
        *args,
    )
    return result, json.loads(Path(report_dir / "conformance-reference.json").read_text())


def test_a_parallel_run_reports_what_a_serial_run_reports(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sample=SAMPLE)
    (pytester.path / "expected.toml").write_text(EXPECTED)
    serial_result, serial = _run(pytester, "serial")
    parallel_result, parallel = _run(pytester, "parallel", "-n", "2")
    assert "2 workers" in parallel_result.stdout.str(), "the parallel run did not run on xdist workers"
    assert serial_result.ret == parallel_result.ret == 1
    verdicts = {r["id"]: r["verdict"] for r in serial["requirements"]}
    expected = {
        "TCP-ACK-EMPTY": "pass",
        "TCP-ACK-ORDER": "fail",
        "TCP-INVALID-PATH": "fail",
        "RS-HANDSHAKE": "expected-fail",
        "RS-PROLOGUE": "unexpected-pass",
        "RS-SENTINEL": "not-run",
        "RS-FINAL": "not-applicable",
        "RS-CALLER-STOP": "error",
    }
    assert {rid: verdicts[rid] for rid in expected} == expected
    plane_tests = next(r for r in serial["requirements"] if r["id"] == "TCP-ACK-EMPTY")["tests"]
    assert sorted((t["plane"], t["outcome"]) for t in plane_tests) == [
        ("http", "passed"),
        ("nats", "deselected"),
        ("tcp", "passed"),
    ], "the sample no longer covers a deselected plane"
    assert _comparable(parallel) == _comparable(serial)
