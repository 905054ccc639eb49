"""Mutation run of reference_impl with cosmic-ray, outside CI: ``python -m tests.power.mutation``.

cosmic-ray enumerates the mutations of each module (``cosmic-ray init``); a deterministic sample of
them (``--per-module``, seed ``--seed``) is applied one at a time to a fresh copy of reference_impl
(``cosmic-ray apply``) and judged by the conformance suite, filtered to the requirements and planes
that module serves (``MODULES``), against ``faulty_adapter.py`` pointed at the copy.  The suite
process itself keeps importing the unmutated package, so the judge is never mutated with the judged.

Before its mutants, each module's filtered run is made once on the unmutated copy (the baseline): a
module whose baseline does not pass is reported and its mutants are not run, so a flaky or broken
filter can never pass for a kill.

A mutant that hangs the implementation must cost seconds, not the run's budget: the filtered run gets
the suite's own per-test limit (pytest-timeout, ``--test-timeout``), so a hang fails a named test; the
whole run's limit (``--run-timeout``) is only a backstop.  Each mutant ends as one of:

``killed-by-test``          a test failed (or errored) for a reason of its own
``killed-by-test-timeout``  the only failures were tests cut by the per-test limit
``killed-by-run-timeout``   the whole filtered run was cut by the backstop (no report)
``killed-at-start``         the adapter could not start on the mutant (an import or a setting's check broke):
                            the suite refuses it before any test (exit 4)
``survived``                every selected test passed
``no-change``, ``error``, ``not-run``  not judged: no textual change, the suite could not run, budget spent

Bounded: ``--budget`` seconds of wall time in all (mutants not started by then are reported as not
run), ``--jobs`` runs at a time, and the process lowers its own priority (``nice`` 10).  Modules are
interleaved, so a budget cut leaves every module partly judged rather than the last ones untouched.
Each judged mutant is appended to ``reports/mutation.jsonl`` as it ends; at the end the run writes
``reports/mutation.json`` and ``reports/mutation.md`` (score, per-module table, every survivor's diff).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import itertools
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.power.catalogue import REPOSITORY, failures_of, run_suite

CR = str(Path(sys.executable).with_name("cosmic-ray"))


@dataclass(frozen=True)
class Target:
    """The requirements (and planes) that exercise one module: the filter keeps one mutant's run short."""

    requirements: tuple[str, ...]
    planes: tuple[str, ...] = ("tcp",)


_TCP_WORKER_FRAME = ("TCP-FRAME", "TCP-FRAME-NO-HEADERS", "TCP-TRUNCATED", "TCP-INVALID-PATH", "TCP-HEADERS-LENIENT")
_TCP_WORKER_LIMIT = ("TCP-SIZE-LIMIT", "TCP-SIZE-LIMIT-NO-HEADERS", "TCP-SIZE-AT-LIMIT", "TCP-SIZE-AT-LIMIT-NO-HEADERS")
_RS_WORKER = ("RS-HANDSHAKE", "RS-PROLOGUE", "RS-ITEMS", "RS-FINAL", "RS-SENTINEL", "RS-WORKER-CLOSE")
_RS_WORKER_ERRORS = ("RS-ERROR-BEFORE", "RS-ERROR-MID")
_RS_WORKER_CANCEL = ("RS-CANCEL-STOP", "RS-CANCEL-KILL", "RS-CANCEL-NO-SENTINEL")
_RS_CALLER = (
    "RS-CALLER-ITEMS",
    "RS-CALLER-PROLOGUE-ERROR",
    "RS-CALLER-ERROR-ITEM",
    "RS-CALLER-INCOMPLETE",
    "RS-CALLER-SENTINEL-NO-FINAL",
    "RS-CALLER-ITEM-AFTER-FINAL",
    "RS-CALLER-BAD-FRAME",
    "RS-CALLER-FRAME-LIMIT",
    "RS-CALLER-FIN",
)
_RS_CALLER_CANCEL = ("RS-CALLER-STOP", "RS-CALLER-KILL", "RS-CALLER-DROP", "RS-CALLER-TASK-CANCEL")
_TCP_CALLER = ("TCP-CALLER-FRAME", "TCP-CALLER-FRAME-NO-HEADERS", "TCP-CALLER-REJECT", "TCP-CALLER-REJECT-OTHER")

# Module under reference_impl/ -> the requirements that exercise it, on the planes that reach it.
MODULES: dict[str, Target] = {
    "wire/two_part.py": Target(
        (
            "TP-LAYOUT",
            "TP-CHECKSUM-ZERO",
            "TP-CHECKSUM-VALID",
            "TP-CHECKSUM-SEND",
            "RS-ITEMS",
            "RS-CALLER-ITEMS",
            "RS-CALLER-BAD-FRAME",
            "RS-CALLER-FRAME-LIMIT",
        )
    ),
    "wire/request_frame.py": Target(  # TCP-ACK-ORDER: pipelined frames, decoded from inside one read's buffer
        (*_TCP_WORKER_FRAME, *_TCP_WORKER_LIMIT, "TCP-ACK-ORDER", "TCP-CALLER-FRAME", "TCP-CALLER-FRAME-NO-HEADERS")
    ),
    "wire/checksum.py": Target(("TP-CHECKSUM-VALID", "TP-CHECKSUM-SEND")),
    "protocol/ack.py": Target(
        (
            "TCP-CALLER-REJECT",
            "TCP-CALLER-REJECT-OTHER",
            "TCP-UNKNOWN-ENDPOINT",
            "TCP-INVALID-PATH",
            "TCP-OVERLOAD",
            "TCP-ACK-EMPTY",
        )
    ),
    "protocol/annotated.py": Target(
        (*_RS_WORKER_ERRORS, "RS-ITEMS", "RS-CALLER-ITEMS", "RS-CALLER-ERROR-ITEM", "ERR-ITEM-SHAPE")
    ),
    "protocol/envelope.py": Target(
        (
            "TP-LAYOUT",
            "ENV-CONTROL",
            "ENV-CONTEXT-CHECK",
            "CODEC-NEGOTIATION",
            "CALLER-HEADERS",
            "TCP-CALLER-FRAME",
            "TCP-ACK-EMPTY",
            "CODEC-JSON",
            "CODEC-MSGPACK",
        )
    ),
    "protocol/messages.py": Target(
        (
            "RS-HANDSHAKE",
            "RS-PROLOGUE",
            "RS-FINAL",
            "RS-SENTINEL",
            "ENV-CONTROL",
            "ENV-CONTEXT-CHECK",
            "RS-CALLER-PROLOGUE-ERROR",
            "RS-CALLER-SENTINEL-NO-FINAL",
            "RS-CALLER-BAD-FRAME",
            *_RS_WORKER_CANCEL,
            "RS-CALLER-STOP",
            "RS-CALLER-KILL",
        )
    ),
    "protocol/payload_codec.py": Target(
        ("CODEC-JSON", "CODEC-MSGPACK", "CODEC-NEGOTIATION", "RS-ITEMS", "RS-CALLER-ITEMS")
    ),
    "protocol/response_stream.py": Target(_RS_WORKER + _RS_WORKER_ERRORS + _RS_WORKER_CANCEL + _RS_CALLER),
    "protocol/error_kinds.py": Target(("ERR-ITEM-SHAPE", "ERR-ITEM-CLASS", "RS-CALLER-ERROR-CLASS")),
    "transport/tcp/server.py": Target(
        (
            "TCP-ACK-EMPTY",
            "TCP-ACK-ORDER",
            "TCP-UNKNOWN-ENDPOINT",
            "TCP-OVERLOAD",
            "TCP-ISOLATION",
            *_TCP_WORKER_FRAME,
            *_TCP_WORKER_LIMIT,
            "ROB-HALF-OPEN",
            "ROB-DOS-TCP-FRAME-DEADLINE",
            "ROB-DOS-TCP-IDLE",
        )
    ),
    "transport/tcp/client.py": Target(
        (*_TCP_CALLER, "CALLER-HEADERS", "CALLER-ACK-TIMEOUT", "CALLER-UNREACHABLE", "RS-CALLER-CONCURRENT")
    ),
    "transport/callhome/client.py": Target(
        _RS_WORKER
        + _RS_WORKER_ERRORS
        + _RS_WORKER_CANCEL
        + ("ROB-CALLER-GONE", "ROB-SLOW-READER")
        + ("ROB-HANDSHAKE-RESET",)
    ),
    "transport/callhome/server.py": Target(
        _RS_CALLER + _RS_CALLER_CANCEL + ("CALLER-CALLHOME-TIMEOUT", "ROB-CALLHOME-INTRUDERS", "ROB-WORKER-DIES")
    ),
    "transport/http/limits.py": Target(
        (
            "HTTP-BODY-LIMIT",
            "HTTP-H2-FLOW",
            "HTTP-H2-CONCURRENT",
            "ROB-DOS-H1-SLOWLORIS",
            "ROB-DOS-H2-CONTINUATION",
            "ROB-DOS-H2-RAPID-RESET",
            "ROB-DOS-H2-CONTROL-FLOOD",
        ),
        ("http",),
    ),
    "transport/http/routing.py": Target(
        (
            "HTTP-URL",
            "HTTP-ACK-202",
            "HTTP-HTTP1",
            "HTTP-H2C",
            "HTTP-UNKNOWN-ENDPOINT",
            "HTTP-METHOD",
            "HTTP-BODY-LIMIT",
            "HTTP-ACK-BEFORE-DECODE",
            "HTTP-HEADERS-ACCEPTED",
        ),
        ("http",),
    ),
    "routing.py": Target(
        (
            "TCP-ROUTE",
            "TCP-UNKNOWN-ENDPOINT",
            "DISC-TCP-ADDRESS",
            "DISC-CALLER-FINDS",
            "HTTP-URL",
            "HTTP-CALLER-REQUEST",
            "HTTP-UNKNOWN-ENDPOINT",
            "TCP-CALLER-FRAME",
        ),
        ("tcp", "http"),
    ),
    "admission.py": Target(("TCP-OVERLOAD", "TCP-ACK-EMPTY", "TCP-ACK-ORDER", "ROB-DOS-ADMISSION-FAIR")),
    "discovery/file_store.py": Target(
        ("DISC-FILE-NAME", "DISC-FILE-NAME-FLAT", "DISC-RECORD", "DISC-LIVENESS", "DISC-CALLER-FINDS")
    ),
    "discovery/records.py": Target(("DISC-RECORD", "DISC-TCP-ADDRESS", "DISC-CALLER-FINDS", "CODEC-NEGOTIATION")),
}
# The suite's per-test limit in a mutant's run: well above what any selected test needs on the unmutated copy
# on a loaded machine (the baselines print their slowest test), well below the backstop.  Tests that declare
# their own limit (``@pytest.mark.timeout``) keep it.
TEST_TIMEOUT_S = 30.0
# Backstop for a whole filtered run (pytest itself wedged): a mutant cut by it is killed-by-run-timeout.
RUN_TIMEOUT_S = 300.0
PYTEST_TIMEOUT_TEXT = "from pytest-timeout"
START_REFUSAL = "cannot start the adapter"  # fixtures/plugin.py: no test runs against an adapter that dies at start

KILLED = ("killed-by-test", "killed-by-test-timeout", "killed-by-run-timeout", "killed-at-start")
JUDGED = (*KILLED, "survived")


@dataclass
class Mutant:
    module: str
    operator: str
    occurrence: int
    line: int
    diff: str = ""
    status: str = "not-run"  # one of JUDGED, or no-change, error, not-run
    failed: tuple[str, ...] = ()  # requirements failed
    tests: tuple[str, ...] = ()  # tests that failed, with their reason
    elapsed_s: float = 0.0
    annotation_only: bool = False  # the change is in annotations only (see annotation_only())
    first_status: str = ""  # when re-judged (--rejudge): the status the recorded run gave


@dataclass
class Baseline:
    module: str
    passed: bool
    elapsed_s: float
    slowest: list[tuple[str, float]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _copy_reference(root: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPOSITORY / "reference_impl", root / "reference_impl", ignore=ignore)


def enumerate_mutants(module: str, scratch: Path) -> list[Mutant]:
    """Every mutation cosmic-ray's core operators make in ``module``."""
    work = scratch / ("init-" + module.replace("/", "_"))
    _copy_reference(work)
    config = work / "cr.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "reference_impl/{module}"\n'
        "timeout = 60.0\nexcluded-modules = []\n"
        'test-command = "true"\n'
        '[cosmic-ray.distributor]\nname = "local"\n'
    )
    subprocess.run([CR, "init", str(config), str(work / "session.sqlite")], cwd=work, check=True, capture_output=True)
    with sqlite3.connect(work / "session.sqlite") as db:
        rows = db.execute("SELECT operator_name, occurrence, start_pos_row FROM mutation_specs").fetchall()
    shutil.rmtree(work, ignore_errors=True)
    return [Mutant(module, operator, int(occurrence), int(row)) for operator, occurrence, row in rows]


def _judge(
    module: str, directory: Path, root: Path, options: argparse.Namespace
) -> tuple[int, dict[str, Any] | None, float, str]:
    target = MODULES[module]
    returncode, output, elapsed, report = run_suite(
        directory,
        impl_root=root,
        planes=target.planes,
        requirements=target.requirements,
        timeout=options.run_timeout,
        extra_args=("-x", "--timeout", f"{options.test_timeout:g}"),
    )
    return returncode, report, elapsed, output


def _failed_tests(report: dict[str, Any] | None) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for verdict in (report or {}).get("requirements", []):
        for test in verdict["tests"]:
            if test["outcome"] in ("failed", "error") and test["nodeid"]:
                seen[test["nodeid"]] = test["reason"]
    return sorted(seen.items())


def run_baseline(module: str, scratch: Path, options: argparse.Namespace) -> Baseline:
    """The module's filtered run on the unmutated copy: it must pass, or no mutant of it is judged."""
    directory = scratch / ("baseline-" + module.replace("/", "_"))
    root = directory / "impl"
    _copy_reference(root)
    returncode, report, elapsed, output = _judge(module, directory, root, options)
    durations = sorted(
        {
            (t["nodeid"], t["duration_s"])
            for v in (report or {}).get("requirements", [])
            for t in v["tests"]
            if t["outcome"] == "passed"
        },
        key=lambda pair: -pair[1],
    )
    failed = [f"{nodeid}: {reason}" for nodeid, reason in _failed_tests(report)]
    if report is None:
        failed.append(f"no report (exit {returncode}): " + " / ".join(output.strip().splitlines()[-3:]))
    musts, shoulds, _ = failures_of(report)
    passed = returncode == 0 and report is not None and not musts and not shoulds
    shutil.rmtree(directory, ignore_errors=True)
    return Baseline(module, passed, round(elapsed, 1), [(n, round(d, 1)) for n, d in durations[:3]], failed)


def run_mutant(mutant: Mutant, scratch: Path, deadline: float, index: int, options: argparse.Namespace) -> Mutant:
    if time.monotonic() > deadline:
        return mutant
    directory = scratch / f"m{index:04d}"
    root = directory / "impl"
    _copy_reference(root)
    target = root / "reference_impl" / mutant.module
    before = target.read_text()
    subprocess.run(
        [CR, "apply", f"reference_impl/{mutant.module}", mutant.operator, str(mutant.occurrence)],
        cwd=root,
        check=True,
        capture_output=True,
    )
    after = target.read_text()
    mutant.diff = "".join(
        difflib.unified_diff(before.splitlines(True), after.splitlines(True), mutant.module, mutant.module, n=0)
    )
    if before == after:
        mutant.status = "no-change"
        shutil.rmtree(directory, ignore_errors=True)
        return mutant
    mutant.annotation_only = annotation_only(before, after)
    returncode, report, elapsed, output = _judge(mutant.module, directory, root, options)
    mutant.elapsed_s = round(elapsed, 1)
    musts, shoulds, _ = failures_of(report)
    mutant.failed = tuple(musts + shoulds)
    failures = _failed_tests(report)
    mutant.tests = tuple(f"{nodeid}: {reason[:200]}" for nodeid, reason in failures)
    mutant.status = classify(returncode, report, failures, output)
    if mutant.status in ("error", "killed-at-start"):
        mutant.tests = tuple(_start_failure(output) or (output.strip().splitlines() or ["?"])[-3:])
    shutil.rmtree(directory, ignore_errors=True)
    return mutant


def _start_failure(output: str) -> list[str]:
    """The suite's refusal of an adapter that could not start, and the last line of the adapter's log."""
    lines = output.strip().splitlines()
    at = next((i for i, line in enumerate(lines) if START_REFUSAL in line), None)
    return [] if at is None else [lines[at].strip()[:300], *(line.strip()[:300] for line in lines[-1:])]


def classify(returncode: int, report: dict[str, Any] | None, failures: list[tuple[str, str]], output: str = "") -> str:
    """How a mutant's filtered run ended (see the module docstring)."""
    if returncode == -1:
        return "killed-by-run-timeout"
    if START_REFUSAL in output and not failures:
        # The suite refuses, before any test, an implementation whose adapter cannot start (exit 4): the mutant
        # broke start-up (an import, a setting's validation).
        return "killed-at-start"
    if report is None:
        return "error"  # the suite itself could not run
    if not failures:
        musts, shoulds, _ = failures_of(report)
        # -x stops at the first failure; a run with no failed test and a non-zero exit is pytest's own
        # trouble (collection, internal error), not a verdict on the mutant
        return "survived" if returncode == 0 and not musts and not shoulds else "error"
    if all(PYTEST_TIMEOUT_TEXT in reason for _, reason in failures):
        return "killed-by-test-timeout"
    return "killed-by-test"


class _DropAnnotations(ast.NodeTransformer):
    """Removes every annotation; an annotated assignment keeps its value."""

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.returns = None
        self.generic_visit(node)
        return node

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AsyncFunctionDef:
        node.returns = None
        self.generic_visit(node)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        node.annotation = ast.Constant(None)
        return node


def annotation_only(before: str, after: str) -> bool:
    """True when two sources differ in annotations only, in a module whose annotations are never evaluated.

    With ``from __future__ import annotations`` an annotation is a string nobody evaluates (the reference
    never calls ``get_typing_hints``): such a mutant is equivalent by construction, and said so in the report.
    """
    try:
        trees = [ast.parse(text) for text in (before, after)]
    except SyntaxError:
        return False
    postponed = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(a.name == "annotations" for a in node.names)
        for node in trees[0].body
    )
    stripped = [ast.dump(_DropAnnotations().visit(tree)) for tree in trees]
    return postponed and stripped[0] == stripped[1]


def apply_diff(before: str, diff: str) -> str:
    """``before`` with a zero-context unified diff (as recorded per mutant) applied."""
    lines = before.splitlines(True)
    out: list[str] = []
    position = 0
    hunks = [h for h in diff.split("@@ -")[1:]]
    for hunk in hunks:
        header, _, body = hunk.partition("\n")
        old = header.split(" ")[0]
        start, _, count = old.partition(",")
        first, length = int(start), int(count or "1")
        begin = first - 1 if length else first  # an insertion after line ``first``
        out += lines[position:begin]
        out += [line[1:] + ("" if line.endswith("\n") else "\n") for line in body.splitlines() if line[:1] == "+"]
        position = begin + length
    return "".join(out + lines[position:])


def interleave(per_module: list[list[Mutant]]) -> list[Mutant]:
    """One mutant of each module in turn, so a budget cut spreads over every module."""
    return [m for group in itertools.zip_longest(*per_module) for m in group if m is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--per-module", type=int, default=12, help="mutants sampled per module (0: all)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--budget", type=float, default=3000.0, help="seconds of wall time for the whole run")
    parser.add_argument("--test-timeout", type=float, default=TEST_TIMEOUT_S, help="per-test limit (pytest-timeout)")
    parser.add_argument("--run-timeout", type=float, default=RUN_TIMEOUT_S, help="backstop for one filtered run")
    parser.add_argument("--modules", default=",".join(MODULES), help="comma-separated modules under reference_impl/")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "reports")
    parser.add_argument(
        "--render",
        type=Path,
        help="only re-render mutation.md from this mutation.json (annotation-only survivors judged on --source)",
    )
    parser.add_argument("--source", type=Path, default=REPOSITORY, help="with --render: the tree the run mutated")
    parser.add_argument("--rejudge-only", default="", help="with --rejudge: only these module:line (comma-separated)")
    parser.add_argument(
        "--rejudge",
        default="",
        help="with --render: statuses (e.g. error,survived) whose mutants run again against today's suite and tree "
        "(the same diff required; annotation-only survivors are skipped); the recorded status is kept as first_status",
    )
    options = parser.parse_args(argv)
    if options.render:
        return render(options)
    os.nice(10)
    started = time.monotonic()
    deadline = started + options.budget
    modules = [m for m in options.modules.split(",") if m]
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown modules {unknown}; known: {sorted(MODULES)}")
    options.out.mkdir(parents=True, exist_ok=True)
    log = options.out / "mutation.jsonl"
    log.write_text("")
    lock = threading.Lock()

    def record(kind: str, item: Any) -> None:
        with lock, log.open("a") as stream:
            stream.write(json.dumps({"kind": kind, **asdict(item)}) + "\n")

    with tempfile.TemporaryDirectory(prefix="rp-mutation-") as scratch_name:
        scratch = Path(scratch_name)
        population: dict[str, int] = {}
        groups: list[list[Mutant]] = []
        for module in modules:
            mutants = enumerate_mutants(module, scratch)
            population[module] = len(mutants)
            rng = random.Random(f"{options.seed}:{module}")
            chosen = mutants if not options.per_module else rng.sample(mutants, min(options.per_module, len(mutants)))
            groups.append(sorted(chosen, key=lambda m: (m.line, m.operator, m.occurrence)))
        sample = interleave(groups)
        print(f"{len(sample)} mutants sampled from {sum(population.values())}: {population}", flush=True)

        def baseline(module: str) -> Baseline:
            result = run_baseline(module, scratch, options)
            if not result.passed:  # once more: a shared machine's load is not the module's fault
                result = run_baseline(module, scratch, options)
            record("baseline", result)
            print(f"baseline {'pass' if result.passed else 'FAIL'} {module} {result.elapsed_s}s", flush=True)
            return result

        with ThreadPoolExecutor(max_workers=options.jobs) as pool:
            baselines = {b.module: b for b in pool.map(baseline, modules)}
        runnable = [m for m in sample if baselines[m.module].passed]

        def judge(pair: tuple[int, Mutant]) -> Mutant:
            mutant = run_mutant(pair[1], scratch, deadline, pair[0], options)
            if mutant.status != "not-run":
                record("mutant", mutant)
                print(
                    f"{mutant.status:22} {mutant.elapsed_s:6.1f}s {mutant.module}:{mutant.line} "
                    f"{mutant.operator} #{mutant.occurrence}",
                    flush=True,
                )
            return mutant

        with ThreadPoolExecutor(max_workers=options.jobs) as pool:
            judged = {id(m): m for m in pool.map(judge, enumerate(runnable))}
    done = [judged.get(id(m), m) for m in sample]
    write_reports(done, population, list(baselines.values()), options, time.monotonic() - started)
    return 0


def render(options: argparse.Namespace) -> int:
    """Rewrite the reports from a finished run's JSON, e.g. one written before annotation_only existed."""
    document = json.loads(options.render.read_text())
    mutants = [Mutant(**{**m, "failed": tuple(m["failed"]), "tests": tuple(m["tests"])}) for m in document["mutants"]]
    for mutant in mutants:
        if mutant.diff:
            before = (options.source / "reference_impl" / mutant.module).read_text()
            mutant.annotation_only = annotation_only(before, apply_diff(before, mutant.diff))
    if options.rejudge:
        rejudge(mutants, set(options.rejudge.split(",")), options)
    baselines = [Baseline(**b) for b in document.get("baselines", [])]
    for name in ("seed", "per_module"):
        setattr(options, name, document[name])
    options.test_timeout = document.get("test_timeout_s", options.test_timeout)
    options.run_timeout = document.get("run_timeout_s", options.run_timeout)
    write_reports(mutants, document["population"], baselines, options, document["wall_s"])
    return 0


def rejudge(mutants: list[Mutant], statuses: set[str], options: argparse.Namespace) -> None:
    """Run the recorded mutants of ``statuses`` again, e.g. survivors once the suite gained the checks they lacked."""
    os.nice(10)
    only = {key for key in options.rejudge_only.split(",") if key}
    todo = [
        (i, m)
        for i, m in enumerate(mutants)
        if m.status in statuses and not m.annotation_only and (not only or f"{m.module}:{m.line}" in only)
    ]
    with tempfile.TemporaryDirectory(prefix="rp-mutation-") as scratch_name:

        def again(pair: tuple[int, Mutant]) -> tuple[int, Mutant]:
            index, old = pair
            fresh = Mutant(old.module, old.operator, old.occurrence, old.line)
            return index, run_mutant(fresh, Path(scratch_name), time.monotonic() + options.run_timeout, index, options)

        with ThreadPoolExecutor(max_workers=options.jobs) as pool:
            for index, fresh in pool.map(again, todo):
                old = mutants[index]
                if fresh.diff != old.diff:  # the module changed since: not the same mutant any more
                    print(f"{old.module}:{old.line} {old.operator}: today's source gives another mutant", flush=True)
                    continue
                fresh.first_status = old.first_status or old.status
                mutants[index] = fresh
                print(
                    f"{fresh.first_status} -> {fresh.status} {fresh.module}:{fresh.line} {fresh.tests[:1]}", flush=True
                )


def score(mutants: list[Mutant]) -> tuple[int, int]:
    """(killed, judged): no-change, errors and unrun mutants are not judged."""
    killed = sum(m.status in KILLED for m in mutants)
    return killed, sum(m.status in JUDGED for m in mutants)


def write_reports(
    mutants: list[Mutant],
    population: dict[str, int],
    baselines: list[Baseline],
    options: argparse.Namespace,
    wall: float,
) -> None:
    killed, judged = score(mutants)
    recorded = [Mutant(**{**asdict(m), "status": m.first_status or m.status}) for m in mutants]
    first_killed, first_judged = score(recorded)
    document = {
        "tool": "cosmic-ray",
        "seed": options.seed,
        "per_module": options.per_module,
        "test_timeout_s": options.test_timeout,
        "run_timeout_s": options.run_timeout,
        "population": population,
        "wall_s": round(wall, 1),
        "killed": killed,
        "judged": judged,
        "score": round(killed / judged, 3) if judged else None,
        "recorded_killed": first_killed,
        "recorded_judged": first_judged,
        "baselines": [asdict(b) for b in baselines],
        "mutants": [asdict(m) for m in mutants],
    }
    (options.out / "mutation.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        f"Mutation score: {killed}/{judged} killed"
        + (f" ({100 * killed / judged:.0f} %)" if judged else "")
        + f"; {len(mutants)} sampled of {sum(population.values())} mutants, wall {wall / 60:.0f} min"
        + (f"; as recorded before any re-judging: {first_killed}/{first_judged}" if recorded != mutants else ""),
        "",
        "| Module | Mutants | Sampled | Judged | Killed (by test / test timeout / run timeout / at start) "
        "| Survived | Other |",
        "|---|---|---|---|---|---|---|",
    ]
    for module in population:
        own = [m for m in mutants if m.module == module]
        count = {s: sum(m.status == s for m in own) for s in (*JUDGED, "no-change", "error", "not-run")}
        kills = sum(count[s] for s in KILLED)
        other = ", ".join(f"{count[s]} {s}" for s in ("no-change", "error", "not-run") if count[s])
        lines.append(
            f"| `{module}` | {population[module]} | {len(own)} | {sum(count[s] for s in JUDGED)} | {kills} "
            f"({count['killed-by-test']} / {count['killed-by-test-timeout']} / {count['killed-by-run-timeout']} / "
            f"{count['killed-at-start']}) "
            f"| {count['survived']} | {other or '-'} |"
        )
    failing = [b for b in baselines if not b.passed]
    if failing:
        lines += ["", "Baselines that did not pass (their mutants were not run):", ""]
        lines += [f"* `{b.module}`: {'; '.join(b.failed)[:300]}" for b in failing]
    lines += ["", "Survivors:", ""]
    for mutant in mutants:
        if mutant.status == "survived":
            note = " (annotation only)" if mutant.annotation_only else ""
            lines.append(
                f"* `{mutant.module}:{mutant.line}` {mutant.operator} #{mutant.occurrence}{note}: `{change_of(mutant)}`"
            )
    again = [m for m in mutants if m.first_status]
    if again:
        lines += ["", "Re-judged against a later suite (recorded status -> today's, first failing test):", ""]
        for mutant in again:
            test = mutant.tests[0].split(": ")[0] if mutant.tests else "-"
            lines.append(
                f"* `{mutant.module}:{mutant.line}` {mutant.operator} #{mutant.occurrence}: {mutant.first_status} -> "
                f"{mutant.status} (`{test}`): `{change_of(mutant)}`"
            )
    (options.out / "mutation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def change_of(mutant: Mutant) -> str:
    """The mutant's removed and added lines, on one line."""
    return " / ".join(
        line[1:].strip() for line in mutant.diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
    )[:200]


if __name__ == "__main__":
    sys.exit(main())
