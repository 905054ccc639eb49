"""Versioned requirements and profile selection: a requirement outside the judged revision is never a pass."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest

from fixtures.report import TestOutcome, build_verdicts
from fixtures.requirements import (
    latest_revision,
    load_requirements,
    load_revisions,
    render_markdown,
    resolve_profile,
)

pytest_plugins = ["pytester"]

SPLIT_TESTS = """
import pytest

@pytest.mark.req("TCP-ACK-EMPTY")
def test_every_revision():
    assert True

@pytest.mark.parametrize("ack", [
    pytest.param("new", marks=pytest.mark.req("TCP-UNKNOWN-ENDPOINT"), id="rev1.6"),
    pytest.param("old", marks=pytest.mark.req("TCP-UNKNOWN-ENDPOINT-LEGACY"), id="rev0.7"),
])
def test_split(ack):
    assert ack == "new", "this implementation speaks the latest revision"
"""


def test_revisions_are_ordered_and_the_latest_is_last() -> None:
    revisions = load_revisions()
    keys = [r.key for r in revisions.values()]
    assert keys == sorted(keys)
    assert latest_revision(revisions) == list(revisions)[-1]


def test_a_release_line_resolves_to_the_revision_it_speaks() -> None:
    revisions = load_revisions()
    assert resolve_profile("1.5", revisions) == "1.4"
    assert resolve_profile("1.6", revisions) == "1.6"
    assert resolve_profile("1.2", revisions) == "0.8"
    assert resolve_profile("9.0", revisions) == latest_revision(revisions)
    with pytest.raises(ValueError, match="predates"):
        resolve_profile("0.6", revisions)
    with pytest.raises(ValueError, match="release line"):
        resolve_profile("latest", revisions)


SPLIT_REQUIREMENTS = (
    ("TCP-UNKNOWN-ENDPOINT", "TCP-UNKNOWN-ENDPOINT-LEGACY"),
    ("DISC-TCP-ADDRESS", "DISC-TCP-ADDRESS-LEGACY", "DISC-TCP-ADDRESS-ENDPOINT"),
    ("TCP-FRAME", "TCP-FRAME-NO-HEADERS"),
    ("TCP-SIZE-LIMIT", "TCP-SIZE-LIMIT-NO-HEADERS"),
    ("TCP-SIZE-AT-LIMIT", "TCP-SIZE-AT-LIMIT-NO-HEADERS"),
    ("TCP-CALLER-FRAME", "TCP-CALLER-FRAME-NO-HEADERS"),
    ("DISC-FILE-NAME", "DISC-FILE-NAME-FLAT"),
)


def test_each_split_requirement_has_one_side_per_revision() -> None:
    requirements, revisions = load_requirements(), load_revisions()
    for sides in SPLIT_REQUIREMENTS:
        for revision in revisions:
            applying = [rid for rid in sides if requirements[rid].applies_to(revision)]
            assert len(applying) == 1, (sides, revision, applying)


def test_revision_0_7_drops_what_its_wire_does_not_have() -> None:
    """No headers block, so nothing about headers; records never refreshed, so no liveness."""
    requirements = load_requirements()
    for rid in ("TCP-HEADERS-LENIENT", "DISC-LIVENESS"):
        assert not requirements[rid].applies_to("0.7") and requirements[rid].applies_to("0.8"), rid


def test_a_requirement_without_since_or_until_applies_to_every_revision(tmp_path: Path) -> None:
    source = Path("conformance/requirements.toml").read_text()
    extra = (
        '\n[[requirement]]\nid = "NEW-UNVERSIONED"\nlevel = "MUST"\narea = "discovery"\nroles = ["worker"]\n'
        'title = "t"\ntext = "x"\nevidence = "e"\n'
    )
    path = tmp_path / "requirements.toml"
    path.write_text(source + extra)
    requirement = load_requirements(path)["NEW-UNVERSIONED"]
    assert all(requirement.applies_to(r) for r in load_revisions(path))


def test_since_without_evidence_is_refused(tmp_path: Path) -> None:
    source = Path("conformance/requirements.toml").read_text()
    extra = (
        '\n[[requirement]]\nid = "NEW-VERSIONED"\nlevel = "MUST"\narea = "discovery"\nroles = ["worker"]\n'
        'title = "t"\ntext = "x"\nevidence = "e"\nsince = "1.6"\n'
    )
    path = tmp_path / "requirements.toml"
    path.write_text(source + extra)
    with pytest.raises(ValueError, match="revision_evidence"):
        load_requirements(path)


def test_an_outcome_outside_the_profile_is_never_a_pass() -> None:
    requirements = load_requirements()
    outcome = TestOutcome("t::x", ("TCP-UNKNOWN-ENDPOINT",), "worker", "tcp", "passed")
    verdicts = {v.id: v for v in build_verdicts(requirements, [outcome], profile="1.4")}
    assert verdicts["TCP-UNKNOWN-ENDPOINT"].verdict == "not-applicable"
    assert "not in protocol revision 1.4" in verdicts["TCP-UNKNOWN-ENDPOINT"].reasons[0]
    verdicts = {v.id: v for v in build_verdicts(requirements, [outcome], profile="1.6")}
    assert verdicts["TCP-UNKNOWN-ENDPOINT"].verdict == "pass"


def test_the_rendered_requirements_show_the_revision_history() -> None:
    text = render_markdown(load_requirements())
    assert "## Protocol revisions" in text
    for revision in load_revisions():
        assert f"\n| {revision} |" in text
    assert "Applies to: up to revision 1.4" in text


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, object]]:
    pytester.makepyfile(test_sample=SPLIT_TESTS)
    report_dir = pytester.path / "reports"
    result = pytester.runpytest_subprocess("-p", "fixtures.plugin", "--report-dir", str(report_dir), *args)
    return result, json.loads((report_dir / "conformance-reference.json").read_text())


def test_an_implementation_that_names_no_profile_is_judged_on_the_latest(pytester: pytest.Pytester) -> None:
    result, document = _run(pytester)
    assert result.ret == 0
    result.assert_outcomes(passed=2)  # the legacy variant is deselected, not run
    verdicts = {r["id"]: r["verdict"] for r in document["requirements"]}  # type: ignore[attr-defined]
    assert document["implementation"]["profile"] == latest_revision(load_revisions())  # type: ignore[index]
    assert verdicts["TCP-UNKNOWN-ENDPOINT"] == "pass"
    assert verdicts["TCP-UNKNOWN-ENDPOINT-LEGACY"] == "not-applicable"


def test_profile_option_selects_the_older_revision(pytester: pytest.Pytester) -> None:
    result, document = _run(pytester, "--profile", "1.5")
    result.assert_outcomes(passed=1, failed=1)  # the legacy variant ran and failed: this implementation is 1.6
    verdicts = {r["id"]: r["verdict"] for r in document["requirements"]}  # type: ignore[attr-defined]
    assert document["implementation"]["profile"] == "1.4"  # type: ignore[index]
    assert verdicts["TCP-UNKNOWN-ENDPOINT"] == "not-applicable"
    assert verdicts["TCP-UNKNOWN-ENDPOINT-LEGACY"] == "fail"
    assert verdicts["TCP-ACK-EMPTY"] == "pass"


def test_an_unknown_profile_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sample=SPLIT_TESTS)
    result = pytester.runpytest_subprocess("-p", "fixtures.plugin", "--profile", "0.1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bad profile '0.1'*predates*"])


# Every revision in requirements.toml is judged now; a run sees revision 0.8 as one the judge does not speak.
NOT_JUDGED_CONFTEST = textwrap.dedent(
    """
    from fixtures.requirements import Revision

    Revision.judged = property(lambda revision: revision.id != "0.8")
    """
)


def test_a_revision_the_judge_does_not_speak_is_an_error_naming_why(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(NOT_JUDGED_CONFTEST)
    pytester.makepyfile(test_sample=SPLIT_TESTS)
    result = pytester.runpytest_subprocess("-p", "fixtures.plugin", "--profile", "1.2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*speaks protocol revision 0.8*documents but does not judge*"])
    result.assert_outcomes()  # nothing ran, so nothing reads pass


def test_every_documented_revision_is_judged() -> None:
    assert [r.id for r in load_revisions().values() if not r.judged] == []


def test_a_revision_marked_not_judged_must_say_why(tmp_path: Path) -> None:
    source = Path("conformance/requirements.toml").read_text()
    path = tmp_path / "requirements.toml"
    extra = '\n[[revision]]\nid = "9.9"\nreleases = "9.9.0"\njudged = false\nchanges = "c"\nevidence = "e"\n'
    path.write_text(source + extra)
    with pytest.raises(ValueError, match="judged = false needs not_judged_because"):
        load_revisions(path)


def test_the_rendered_history_marks_a_revision_not_judged() -> None:
    revisions = load_revisions()
    revision = revisions["0.7"] = dataclasses.replace(revisions["0.7"], not_judged_because="no judge for it")
    lines = render_markdown(load_requirements(), revisions).splitlines()
    row = next(line for line in lines if line.startswith(f"| {revision.id} |"))
    assert "Documented, not judged" in row
