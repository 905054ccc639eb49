"""The catalogue of known-bad implementations (``catalogue.toml``) and how one is run.

Each entry is a planted bug in a copy of ``reference_impl`` (one exact find/replace on one file) or
a fault of :mod:`tests.power.faulty_adapter`, and names the requirements that must catch it.  Running
an entry means: copy and patch, then run the conformance suite in a child pytest against
``faulty_adapter.py`` pointed at the copy, and read the JSON report it writes.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[2]
CATALOGUE = Path(__file__).with_name("catalogue.toml")
ADAPTER = Path(__file__).with_name("faulty_adapter.py")
ROLES = ("worker", "caller")
PLANES = ("tcp", "nats", "http")
CATCH_LEVELS = ("MUST", "SHOULD")
RUN_TIMEOUT_S = 1800.0  # one child suite run; a hang is a failure naming the entry, never a stalled run.  A worker that
# never closes its call-homes makes the whole worker-role suite take ~17 min (its lingering connections slow every
# DoS scenario), past the 15 min this once was.
INDEX_TIMEOUT_S = 120.0  # one collection of the whole suite (about 1 s; start-up under a loaded machine)


class CatalogueError(ValueError):
    """A malformed entry, or a patch that no longer applies to today's reference_impl."""


@dataclass(frozen=True)
class Entry:
    id: str
    description: str
    role: str
    planes: tuple[str, ...]
    requirements: tuple[str, ...]
    catch: str  # MUST: the run must end certified: false; SHOULD: a declared SHOULD-level catch
    file: str | None = None  # path under reference_impl/ of the planted bug
    find: str | None = None
    replace: str | None = None
    fault: str | None = None  # or: a fault of the faulty adapter

    @property
    def kind(self) -> str:
        return "patch" if self.file else "fault"


def load(path: Path = CATALOGUE) -> list[Entry]:
    document = tomllib.loads(path.read_text())
    entries = [_entry(raw) for raw in document.get("entry", [])]
    ids = [e.id for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise CatalogueError(f"duplicate entry ids {duplicates}")
    return entries


def _entry(raw: dict[str, Any]) -> Entry:
    name = raw.get("id", "<no id>")
    entry = Entry(
        id=name,
        description=raw.get("description", ""),
        role=raw.get("role", ""),
        planes=tuple(raw.get("planes", ())),
        requirements=tuple(raw.get("requirements", ())),
        catch=raw.get("catch", "MUST"),
        file=raw.get("file"),
        find=raw.get("find"),
        replace=raw.get("replace"),
        fault=raw.get("fault"),
    )
    problems = []
    if not entry.description:
        problems.append("no description")
    if entry.role not in ROLES:
        problems.append(f"role {entry.role!r} is not one of {ROLES}")
    if not entry.planes or set(entry.planes) - set(PLANES):
        problems.append(f"planes {entry.planes} must be a non-empty subset of {PLANES}")
    if not entry.requirements:
        problems.append("names no requirement")
    if entry.catch not in CATCH_LEVELS:
        problems.append(f"catch {entry.catch!r} is not one of {CATCH_LEVELS}")
    if bool(entry.file) == bool(entry.fault):
        problems.append("needs exactly one of file (+find/replace) or fault")
    if entry.file and (entry.find is None or entry.replace is None or entry.find == entry.replace):
        problems.append("a patch needs find and a different replace")
    if problems:
        raise CatalogueError(f"catalogue entry {name}: {'; '.join(problems)}")
    return entry


def patched_source(entry: Entry, source_root: Path = REPOSITORY) -> str:
    """The patched text of the entry's file; the find text must occur exactly once in today's file."""
    assert entry.file and entry.find is not None and entry.replace is not None
    path = source_root / "reference_impl" / entry.file
    if not path.is_file():
        raise CatalogueError(f"entry {entry.id}: reference_impl/{entry.file} does not exist")
    text = path.read_text()
    count = text.count(entry.find)
    if count != 1:
        raise CatalogueError(
            f"entry {entry.id}: its find text occurs {count} times in reference_impl/{entry.file} "
            f"(must be exactly once): update the entry to today's code\n--- find ---\n{entry.find}"
        )
    return text.replace(entry.find, entry.replace)


def make_copy(entry: Entry, directory: Path) -> Path | None:
    """A patched copy of reference_impl under ``directory`` (None for a fault entry): the import root."""
    if entry.file is None:
        return None
    root = directory / "impl"
    shutil.copytree(
        REPOSITORY / "reference_impl", root / "reference_impl", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "reference_impl" / entry.file).write_text(patched_source(entry))
    return root


@dataclass
class RunResult:
    entry: Entry
    report: dict[str, Any] | None
    returncode: int
    elapsed_s: float
    output_tail: str
    copy_root: Path | None = None
    failed_musts: list[str] = field(default_factory=list)
    failed_shoulds: list[str] = field(default_factory=list)
    failing_tests: list[str] = field(default_factory=list)

    @property
    def certified(self) -> bool | None:
        """Certified within the run's scope (its role and planes): no MUST failed or errored.

        The report's own ``certified`` is false for any run limited by ``--planes`` or ``--req`` (the rest
        reads not-run), so it cannot tell a caught entry from a missed one here.
        """
        return None if self.report is None or not self.ran_anything else not self.failed_musts

    @property
    def ran_anything(self) -> bool:
        """Whether any test ran: an adapter that never started (or a broken session) leaves every test not-run."""
        requirements = (self.report or {}).get("requirements") or []
        if isinstance(requirements, dict):
            requirements = list(requirements.values())
        not_ran = ("skipped", "deselected", "not-applicable")
        return any(test["outcome"] not in not_ran for r in requirements for test in r.get("tests", []))

    @property
    def imported_from(self) -> str:
        return str(((self.report or {}).get("implementation") or {}).get("reported_name") or "")

    def caught(self) -> list[str]:
        """The entry's requirements that this run failed."""
        return [r for r in self.entry.requirements if r in self.failed_musts + self.failed_shoulds]


FAILED_VERDICTS = ("fail", "error")


def run(
    entry: Entry,
    directory: Path,
    *,
    requirements: tuple[str, ...] | None = None,
    index: dict[str, list[str]] | None = None,
    python: str = sys.executable,
    timeout: float = RUN_TIMEOUT_S,
) -> RunResult:
    """Run the suite (only ``requirements``, or all of it) against the entry, on its planes and role.

    With ``index`` (:func:`requirement_index`), a run of some requirements collects only the modules citing them.
    """
    root = make_copy(entry, directory)
    returncode, output, elapsed, report = run_suite(
        directory,
        impl_root=root,
        fault=entry.fault,
        roles=(entry.role,),
        planes=entry.planes,
        requirements=requirements,
        paths=suite_paths(requirements, index),
        python=python,
        timeout=timeout,
    )
    result = RunResult(entry, report, returncode, elapsed, "\n".join(output.splitlines()[-25:]), root)
    result.failed_musts, result.failed_shoulds, result.failing_tests = failures_of(report)
    return result


def requirement_index(directory: Path, python: str = sys.executable) -> dict[str, list[str]]:
    """``{requirement: [module path, ...]}`` of the suite's tests, from one child collection of the whole suite."""
    out = directory / "requirement-index.json"
    command = [python, "-m", "pytest", "conformance", "--collect-only", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "no:xdist", "-p", "tests.power.requirement_index"]
    env = {**os.environ, "RP_POWER_INDEX_OUT": str(out)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    completed = subprocess.run(
        command, cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=INDEX_TIMEOUT_S, check=False
    )
    if completed.returncode != 0 or not out.is_file():
        raise RuntimeError(f"collecting the suite failed (exit {completed.returncode}):\n{completed.stdout[-3000:]}")
    index: dict[str, list[str]] = json.loads(out.read_text())
    return index


def suite_paths(requirements: tuple[str, ...] | None, index: dict[str, list[str]] | None) -> tuple[str, ...]:
    """What a child run collects: the modules citing ``requirements`` per ``index``; the whole suite otherwise.

    A requirement no module cites (or no index, or no requirements) collects the whole suite, as before: the run then
    reads it ``not-run`` and the entry is not rejected, which fails loudly rather than hiding an entry.
    """
    if not requirements or index is None or any(r not in index for r in requirements):
        return ("conformance",)
    return tuple(sorted({module for r in requirements for module in index[r]}))


def run_suite(
    directory: Path,
    *,
    impl_root: Path | None,
    fault: str | None = None,
    roles: tuple[str, ...] = ROLES,
    planes: tuple[str, ...] = PLANES,
    requirements: tuple[str, ...] | None = None,
    paths: tuple[str, ...] = ("conformance",),
    python: str = sys.executable,
    timeout: float = RUN_TIMEOUT_S,
    extra_args: tuple[str, ...] = (),
) -> tuple[int, str, float, dict[str, Any] | None]:
    """One child pytest of the suite against the faulty adapter: exit code, output, seconds, JSON report."""
    report_dir = directory / "reports"
    command = [
        python,
        "-m",
        "pytest",
        *paths,
        "-q",
        "-p",
        "no:cacheprovider",
        # A child run is serial: xdist's plugin (with execnet) would be imported for nothing, 0.1 CPU-s a run
        "-p",
        "no:xdist",
        "--impl",
        "faulty",
        "--impl-cmd",
        shlex.join([python, str(ADAPTER)]),
        "--planes",
        ",".join(planes),
        "--report-dir",
        str(report_dir),
        "--basetemp",
        str(directory / "tmp"),
        *extra_args,
    ]
    if requirements:
        command += ["--req", ",".join(requirements)]
    env = {
        **os.environ,
        "RP_POWER_ROLES": ",".join(roles),
        "RP_POWER_FAULT": fault or "",
        "RP_POWER_IMPL_ROOT": str(impl_root) if impl_root else "",
    }
    # Bytecode is written: each entry's copy starts without any (its __pycache__ is not copied) and is patched
    # before its first import, so nothing stale can be read, and the adapters a run starts compile it once.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.monotonic()
    try:
        completed = subprocess.run(
            command, cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        output, returncode = completed.stdout + completed.stderr, completed.returncode
    except subprocess.TimeoutExpired as exc:
        output = f"{_text(exc.stdout)}{_text(exc.stderr)}\nTIMEOUT after {timeout}s"
        returncode = -1
    elapsed = time.monotonic() - started
    report_path = report_dir / "conformance-faulty.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    return returncode, output, elapsed, report


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def failures_of(report: dict[str, Any] | None) -> tuple[list[str], list[str], list[str]]:
    """Failed MUST requirements, failed SHOULD requirements, and the tests that failed them."""
    musts: list[str] = []
    shoulds: list[str] = []
    tests: set[str] = set()
    for verdict in (report or {}).get("requirements", []):
        if verdict["verdict"] in FAILED_VERDICTS:
            (musts if verdict["level"] == "MUST" else shoulds).append(verdict["id"])
            tests.update(t["nodeid"] for t in verdict["tests"] if t["outcome"] in ("failed", "error") and t["nodeid"])
    return musts, shoulds, sorted(tests)


def rejected_as_declared(result: RunResult, *, full_suite: bool) -> str | None:
    """None when the run rejected the entry as it declares; otherwise why not.

    Always: the report exists and the patched copy (or the fault) is what ran.  With ``--req`` (CI): every
    named requirement failed, a MUST among them for a MUST-level entry.  On the full suite: a MUST-level
    entry ends not certified (some MUST failed), a SHOULD-level one fails a SHOULD it names (or a MUST).
    """
    entry = result.entry
    if result.report is None:
        return f"no report (exit {result.returncode}):\n{result.output_tail}"
    if result.copy_root is not None and f"impl={result.copy_root}{os.sep}" not in result.imported_from:
        return f"the adapter did not run the patched copy under {result.copy_root}: {result.imported_from!r}"
    if entry.fault is not None and f"fault={entry.fault} " not in result.imported_from:
        return f"the adapter did not run with fault {entry.fault}: {result.imported_from!r}"
    if not result.ran_anything:  # not a pass of the entry: the run never got to judge it
        return f"nothing ran (no plane covered; exit {result.returncode}):\n{result.output_tail}"
    if full_suite:  # the whole suite ran: what counts is how it ended, whichever tests caught it
        if entry.catch == "MUST" and not result.failed_musts:
            return f"declared a MUST-level catch, but no MUST failed (SHOULDs failed: {result.failed_shoulds})"
        named_shoulds = set(entry.requirements) & set(result.failed_shoulds)
        if entry.catch == "SHOULD" and not (result.failed_musts or named_shoulds):
            return f"declared a SHOULD-level catch on {list(entry.requirements)}, but none of them failed"
        return None
    missed = [r for r in entry.requirements if r not in result.caught()]
    if missed:
        return (
            f"requirements {missed} were not failed (failed MUST {result.failed_musts}, "
            f"SHOULD {result.failed_shoulds})\n{result.output_tail}"
        )
    if entry.catch == "MUST" and not set(entry.requirements) & set(result.failed_musts):
        return f"declared a MUST-level catch, but only SHOULDs failed: {result.failed_shoulds}"
    return None
