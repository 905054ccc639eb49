"""The conformance plugin's bookkeeping: verdicts, SHOULD handling, expected failures, reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from fixtures.report import TestOutcome, build_verdicts, summarize
from fixtures.requirements import REQUIREMENTS_FILE, load_requirements, render_markdown

pytest_plugins = ["pytester"]

TESTS = """
import pytest

@pytest.mark.req("TCP-ACK-EMPTY")
def test_must_passes():
    assert True

@pytest.mark.req("TCP-INVALID-PATH")
def test_should_fails():
    assert False, "worker said 'Invalid endpoint path'"
"""


def _run(pytester: pytest.Pytester, source: str, *args: str) -> tuple[pytest.RunResult, dict[str, Any], ET.Element]:
    pytester.makepyfile(test_sample=source)
    report_dir = pytester.path / "reports"
    result = pytester.runpytest_subprocess("-p", "fixtures.plugin", "--report-dir", str(report_dir), *args)
    document = json.loads((report_dir / "conformance-reference.json").read_text())
    junit = ET.parse(report_dir / "conformance-reference.xml").getroot()
    return result, document, junit


def _verdicts(document: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["verdict"] for r in document["requirements"]}


def test_a_should_failure_is_reported_but_not_fatal(pytester: pytest.Pytester) -> None:
    result, document, junit = _run(pytester, TESTS)
    assert result.ret == 0
    result.assert_outcomes(passed=1, xfailed=1)
    verdicts = _verdicts(document)
    assert verdicts["TCP-ACK-EMPTY"] == "pass"
    assert verdicts["TCP-INVALID-PATH"] == "fail"
    assert document["summary"]["SHOULD"]["fail"] == 1
    case = junit.find("testcase[@name='TCP-INVALID-PATH']")
    assert case is not None and case.find("skipped") is not None
    skipped = case.find("skipped")
    assert skipped is not None and "SHOULD not met" in skipped.get("message", "")


def test_a_must_failure_fails_the_run_and_certification(pytester: pytest.Pytester) -> None:
    source = (
        TESTS
        + """
@pytest.mark.req("TCP-ACK-ORDER")
def test_must_fails():
    assert 1 == 2
"""
    )
    result, document, junit = _run(pytester, source)
    assert result.ret == 1
    assert _verdicts(document)["TCP-ACK-ORDER"] == "fail"
    assert document["summary"]["certified"] is False
    assert junit.find("testcase[@name='TCP-ACK-ORDER']/failure") is not None


def test_untested_requirements_are_listed_as_not_run(pytester: pytest.Pytester) -> None:
    _, document, _ = _run(pytester, TESTS)
    verdicts = _verdicts(document)
    assert set(verdicts) == set(load_requirements())
    assert verdicts["RS-HANDSHAKE"] == "not-run"
    assert document["summary"]["complete"] is False


def test_req_runs_only_the_tests_citing_those_requirements_and_is_never_certified(pytester: pytest.Pytester) -> None:
    source = TESTS.replace("assert False", "assert True")  # both pass: only the selection can refuse it
    result, document, _ = _run(pytester, source, "--req", "TCP-ACK-EMPTY")
    result.assert_outcomes(passed=1, deselected=1)
    verdicts = _verdicts(document)
    assert verdicts["TCP-ACK-EMPTY"] == "pass"
    assert verdicts["TCP-INVALID-PATH"] == "not-run"
    assert document["summary"]["certified"] is False
    unknown = pytester.runpytest_subprocess("-p", "fixtures.plugin", "--req", "NO-SUCH-ID")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    unknown.stderr.fnmatch_lines(["*--req names unknown requirement(s)*NO-SUCH-ID*"])


def test_expected_failures_are_marked_and_an_unexpected_pass_fails(pytester: pytest.Pytester) -> None:
    expectations = pytester.path / "expected.toml"
    expectations.write_text(
        '[[expected]]\nrequirement = "TCP-INVALID-PATH"\nreason = "known divergence"\n'
        '[[expected]]\nrequirement = "TCP-ACK-EMPTY"\nreason = "thought broken, but it passes"\n'
    )
    result, document, _ = _run(pytester, TESTS, "--expected-failures", str(expectations))
    assert result.ret == 1, "an unexpected pass must fail the run"
    verdicts = _verdicts(document)
    assert verdicts["TCP-INVALID-PATH"] == "expected-fail"
    assert verdicts["TCP-ACK-EMPTY"] == "unexpected-pass"
    reasons = next(r for r in document["requirements"] if r["id"] == "TCP-INVALID-PATH")["reasons"]
    assert any("known divergence" in reason for reason in reasons)


def test_a_skipped_test_is_not_counted_as_passing(pytester: pytest.Pytester) -> None:
    source = """
import pytest

@pytest.mark.req("TCP-ACK-EMPTY")
def test_skipped():
    pytest.skip("no server")
"""
    _, document, _ = _run(pytester, source)
    assert _verdicts(document)["TCP-ACK-EMPTY"] == "not-run"


def test_a_test_that_rules_itself_out_is_not_applicable_and_not_a_pass(pytester: pytest.Pytester) -> None:
    source = """
import pytest

@pytest.mark.req("TCP-ACK-EMPTY")
def test_ruled_out():
    pytest.skip("not applicable: this implementation has no such plane")
"""
    _, document, junit = _run(pytester, source)
    assert _verdicts(document)["TCP-ACK-EMPTY"] == "not-applicable"
    assert document["summary"]["MUST"]["pass"] == 0
    case = junit.find("testcase[@name='TCP-ACK-EMPTY']/skipped")
    assert case is not None and case.get("message", "").startswith("not-applicable")


def test_certification_leaves_out_what_does_not_apply_and_names_its_scope() -> None:
    requirements = {rid: r for rid, r in load_requirements().items() if rid in ("TCP-ACK-EMPTY", "HTTP-ACK-202")}
    assert len(requirements) == 2
    outcomes = [
        TestOutcome("t::tcp", ("TCP-ACK-EMPTY",), "worker", "tcp", "passed"),
        TestOutcome("t::http", ("HTTP-ACK-202",), "worker", "http", "not-applicable", "not applicable: no http"),
    ]
    summary = summarize(build_verdicts(requirements, outcomes))
    assert summary["certified"] is True
    assert summary["covers"] == {"planes": ["tcp"], "roles": ["worker"]}
    unrun = [*outcomes[:1], TestOutcome("t::http", ("HTTP-ACK-202",), "worker", "http", "deselected", "-k")]
    assert summarize(build_verdicts(requirements, unrun))["certified"] is False


def test_citing_an_unknown_requirement_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sample='import pytest\n@pytest.mark.req("NO-SUCH-ID")\ndef test_x(): pass\n')
    result = pytester.runpytest_subprocess("-p", "fixtures.plugin")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*NO-SUCH-ID*"])


def test_requirements_markdown_is_in_sync_with_the_toml() -> None:
    rendered = render_markdown(load_requirements())
    committed = (Path(REQUIREMENTS_FILE).parent / "REQUIREMENTS.md").read_text()
    assert committed == rendered, "run: python -m fixtures.requirements --markdown > conformance/REQUIREMENTS.md"


def test_every_requirement_is_cited_by_a_conformance_test() -> None:
    conformance = Path(REQUIREMENTS_FILE).parent
    sources = "\n".join(path.read_text() for path in conformance.glob("test_*.py"))
    uncited = [rid for rid in load_requirements() if f'"{rid}"' not in sources]
    assert not uncited, f"requirements without a test: {uncited}"
