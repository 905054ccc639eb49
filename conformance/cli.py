"""``rp-conformance``: certify an implementation with the installed suite, from any directory.

::

    rp-conformance --impl-cmd "python -m my_adapter"                  # every plane, both roles
    rp-conformance --impl mine --impl-cmd "./adapter" --planes tcp --report-dir out

It runs pytest on this package with the suite's own settings (``suite.ini``, so the
caller's directory and its pytest configuration play no part), passes every other
option through to the suite's plugin or to pytest (``--planes``, ``--expected-failures``,
``--impl-python``, ``-k``, ``-x`` ...), prints where the reports are, and exits 0 only
when the run passed and its report says ``certified: true``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conformance import PYTEST_SETTINGS, SUITE_DIR

# The name a run gets when --impl-cmd is given without --impl: it names the report files
# (conformance-<name>.json) and the expected-failures file looked for (<name>-<version>.toml).
DEFAULT_CUSTOM_NAME = "custom"
BUILTIN_IMPLEMENTATIONS = ("reference", "dynamo")
# What `pip install <wheel>[suite]` brings; without it the suite cannot run.
SUITE_MODULES = ("pytest", "pytest_asyncio", "pytest_timeout")
EXIT_USAGE = 2
EXIT_NOT_CERTIFIED = 1

EPILOG = """\
Every other option goes to the suite's pytest plugin or to pytest itself, e.g.
  --planes tcp,nats,http     request planes to test (default: all)
  --expected-failures FILE   known divergences (default: the suite's expected_failures/<impl>-<version>.toml)
  --impl-python PATH         Python interpreter for a built-in adapter (--impl reference|dynamo)
  --profile REV              protocol revision to judge against (default: the adapter's hello, else the latest)
  --req ID[,ID...]           only the tests citing these requirements
  -k EXPR, -m robustness, -x, --durations N
A -k/-m/--req subset is never certified. Exit status: 0 only when certified; 1 when not
certified; 2 for a usage error; pytest's own status when the run broke (4: the adapter
did not start).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rp-conformance",
        description="Certify a request-plane implementation with the installed conformance suite.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--impl-cmd",
        help="command that starts the implementation's adapter (JSON lines on stdin/stdout; see"
        " fixtures.adapters.protocol)",
    )
    parser.add_argument(
        "--impl",
        help=f"name of the implementation: {' or '.join(BUILTIN_IMPLEMENTATIONS)} (built-in adapters), or any name"
        f" for --impl-cmd (default {DEFAULT_CUSTOM_NAME!r})",
    )
    parser.add_argument("--report-dir", default="reports", help="where the reports are written (default: ./reports)")
    return parser


def _check_impl_command(parser: argparse.ArgumentParser, command: str) -> list[str]:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        parser.error(f"--impl-cmd {command!r}: {exc}")
    if not argv:
        parser.error("--impl-cmd is empty")
    program = argv[0]
    if shutil.which(program) is None:
        parser.error(f"--impl-cmd: {program!r} is not an executable program (not found on PATH, or not executable)")
    return argv


def _missing_suite_modules() -> list[str]:
    return [name for name in SUITE_MODULES if importlib.util.find_spec(name) is None]


def pytest_command(name: str, impl_cmd: str | None, report_dir: Path, passthrough: list[str]) -> list[str]:
    """The pytest run: this package, its settings, the caller's directory as rootdir, no cache files left there."""
    command = [sys.executable, "-m", "pytest", "-c", str(PYTEST_SETTINGS), "--rootdir", os.getcwd()]
    command += ["-p", "no:cacheprovider", str(SUITE_DIR), "--impl", name, "--report-dir", str(report_dir)]
    if impl_cmd is not None:
        command += ["--impl-cmd", impl_cmd]
    return command + passthrough


def read_report(path: Path, not_before: float) -> dict[str, Any] | None:
    """This run's report, or None when the run wrote none (an older file does not count)."""
    if not path.is_file() or path.stat().st_mtime < not_before:
        return None
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, passthrough = parser.parse_known_args(argv)
    if args.impl_cmd is None and args.impl not in BUILTIN_IMPLEMENTATIONS:
        parser.error(
            "give --impl-cmd (the implementation's adapter), or --impl"
            f" {'|'.join(BUILTIN_IMPLEMENTATIONS)} for a built-in adapter"
        )
    if args.impl_cmd is not None:
        _check_impl_command(parser, args.impl_cmd)
    missing = _missing_suite_modules()
    if missing:
        parser.error(
            f"the suite's dependencies are not installed ({', '.join(missing)}):"
            " pip install 'request-plane-conformance[suite]'"
        )
    name = args.impl or DEFAULT_CUSTOM_NAME
    report_dir = Path(args.report_dir).resolve()
    json_path, xml_path = report_dir / f"conformance-{name}.json", report_dir / f"conformance-{name}.xml"
    started = time.time()
    status = subprocess.call(pytest_command(name, args.impl_cmd, report_dir, passthrough))
    report = read_report(json_path, started)
    if report is None:
        print(f"rp-conformance: no report written (pytest exit status {status})", file=sys.stderr)
        return status or EXIT_NOT_CERTIFIED
    summary = report["summary"]
    certified = bool(summary.get("certified"))
    covers = summary.get("covers") or {}
    planes, roles = ", ".join(covers.get("planes") or []) or "-", ", ".join(covers.get("roles") or []) or "-"
    print(f"rp-conformance: {name}: certified: {str(certified).lower()} (planes: {planes}; roles: {roles})")
    print(f"rp-conformance: report: {json_path}  junit: {xml_path}")
    if certified and status == 0:
        return 0
    return status or EXIT_NOT_CERTIFIED


if __name__ == "__main__":
    raise SystemExit(main())
