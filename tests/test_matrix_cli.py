"""``python -m conformance.matrix`` on bad input: every target is a column, a broken one an ``error`` with why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.matrix import cli as matrix
from fixtures.requirements import load_requirements


def _report(path: Path) -> Path:
    requirements = [
        {"id": rid, "level": r.level, "area": r.area, "title": r.title, "verdict": "pass", "reasons": [], "tests": []}
        for rid, r in load_requirements().items()
    ]
    requirements[0]["verdict"], requirements[0]["reasons"] = "fail", ["AssertionError: checksum 0xdead"]
    document = {
        "generated_at": "2026-01-01T00:00:00+00:00",
        "implementation": {"name": "good", "version": "3.1", "profile": "1.6"},
        "summary": {
            "MUST": {"fail": 1, "pass": len(requirements) - 1},
            "SHOULD": {},
            "certified": False,
            "covers": {"planes": ["tcp"], "roles": ["worker"]},
        },
        "requirements": requirements,
    }
    path.write_text(json.dumps(document))
    return path


def test_broken_targets_are_error_columns_and_the_rest_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the install fails at once, offline, as for a wheel that does not exist
    monkeypatch.setenv("UV_OFFLINE", "1")  # the same when the venv is made by uv
    report = _report(tmp_path / "good.json")
    targets = [
        f"report:good={report}",
        f"report:gone={tmp_path / 'missing.json'}",
        "broken=/nonexistent/adapter --flag",  # an adapter that cannot start
        "dynamo==0.0.0",  # a wheel that cannot be installed
        "not a target",
    ]
    status = matrix.main([*targets, "--out", str(tmp_path / "out"), "--venv-dir", str(tmp_path / "venvs")])
    assert status == 1
    document = json.loads((tmp_path / "out" / "matrix.json").read_text())
    columns = {c["label"]: c for c in document["columns"]}
    assert list(columns) == ["good 3.1", "gone", "broken", "dynamo 0.0.0", "not a target"]
    good = columns["good 3.1"]
    assert good["status"] == "ran" and good["profile"] == "1.6" and good["version"] == "3.1"
    assert good["verdicts"]["TP-LAYOUT"] == {"verdict": "fail", "message": "AssertionError: checksum 0xdead"}
    assert "cannot read report" in columns["gone"]["error"]
    assert "cannot start the adapter" in columns["broken"]["error"]
    assert "cannot install ai-dynamo-runtime==0.0.0" in columns["dynamo 0.0.0"]["error"]
    assert "bad target" in columns["not a target"]["error"]
    html = (tmp_path / "out" / "matrix.html").read_text()
    assert html.count('class="col-error"') == 4
    assert "<script>" in html and "http://" not in html and "https://" not in html  # self-contained
    assert "| broken | error: " in (tmp_path / "out" / "matrix.md").read_text()


def test_a_column_whose_must_divergences_are_all_listed_reads_explained() -> None:
    from fixtures.matrix.document import column_verdict

    def column(certified: bool, **must: int) -> dict[str, object]:
        return {"status": "ran", "certified": certified, "summary": {"MUST": must}}

    assert column_verdict(column(True, **{"pass": 60})) == "certified"
    assert column_verdict(column(False, **{"pass": 50, "expected-fail": 10})) == "explained"
    assert column_verdict(column(False, **{"pass": 50, "expected-fail": 9, "fail": 1})) == "not certified"
    assert column_verdict(column(False, **{"pass": 50, "expected-fail": 9, "not-run": 1})) == "not certified"
    assert column_verdict({"status": "error"}) == "error"
