"""The suite as a package: its data found through the package, its settings in step, its command's errors."""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path

import pytest

import conformance
from conformance import cli
from fixtures.expectations import EXPECTED_FAILURES_DIR, find_expectations_file
from fixtures.golden import GOLDEN_DIR
from fixtures.requirements import REQUIREMENTS_FILE

REPO = Path(__file__).resolve().parents[1]
# Settings the repository's pyproject.toml gives to every run, and suite.ini to runs outside it.
SHARED_SETTINGS = (
    "asyncio_mode",
    "asyncio_default_fixture_loop_scope",
    "asyncio_default_test_loop_scope",
    "markers",
    "filterwarnings",
    "timeout",
)


def _as_lines(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(line) for line in value]
    return [line.strip() for line in str(value).strip().splitlines() if line.strip()]


def test_suite_data_is_found_through_the_conformance_package() -> None:
    assert REQUIREMENTS_FILE == conformance.SUITE_DIR / "requirements.toml"
    assert REQUIREMENTS_FILE.is_file()
    assert EXPECTED_FAILURES_DIR == conformance.SUITE_DIR / "expected_failures"
    assert find_expectations_file("dynamo", "1.6.1") == EXPECTED_FAILURES_DIR / "dynamo-1.6.1.toml"
    assert (GOLDEN_DIR / "dynamo-1.6.1.json").is_file()


def test_suite_ini_has_the_repositorys_pytest_settings() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    parser = configparser.ConfigParser()
    parser.read(conformance.PYTEST_SETTINGS)
    packaged = parser["pytest"]
    for name in SHARED_SETTINGS:
        assert _as_lines(packaged[name]) == _as_lines(project[name]), f"{name} differs: suite.ini vs pyproject.toml"


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == cli.EXIT_USAGE
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_rp_conformance_refuses_a_bad_impl_cmd_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert _usage_error(capsys, ["--impl-cmd", "no-such-adapter --serve"]) == (
        "rp-conformance: error: --impl-cmd: 'no-such-adapter' is not an executable program"
        " (not found on PATH, or not executable)"
    )
    assert _usage_error(capsys, ["--impl-cmd", "python -m 'unclosed"]).startswith(
        'rp-conformance: error: --impl-cmd "python -m \'unclosed": No closing quotation'
    )
    assert _usage_error(capsys, ["--impl-cmd", " "]) == "rp-conformance: error: --impl-cmd is empty"
    assert "give --impl-cmd" in _usage_error(capsys, ["--planes", "tcp"])


def test_rp_conformance_runs_the_packaged_suite_with_its_own_settings(tmp_path: Path) -> None:
    command = cli.pytest_command("mine", "./adapter --fast", tmp_path, ["--planes", "tcp", "-x"])
    assert command[command.index("-c") + 1] == str(conformance.PYTEST_SETTINGS)
    assert str(conformance.SUITE_DIR) in command
    assert command[-5:] == ["--impl-cmd", "./adapter --fast", "--planes", "tcp", "-x"]
    assert command[command.index("--impl") + 1] == "mine"
    assert command[command.index("--report-dir") + 1] == str(tmp_path)


def test_an_old_report_does_not_count_for_a_new_run(tmp_path: Path) -> None:
    report = tmp_path / "conformance-mine.json"
    report.write_text('{"summary": {"certified": true}}')
    assert cli.read_report(report, not_before=report.stat().st_mtime + 1) is None
    assert cli.read_report(report, not_before=report.stat().st_mtime) == {"summary": {"certified": True}}
