"""Run every catalogue entry against the whole suite: ``python -m tests.power.run_catalogue``.

Each entry runs every test of the suite for its role on its planes (``--everything``: both roles, all
three planes), not only the requirements it names, so the table shows what else catches it and how
many tests do.  ``certified`` is judged within that scope (no MUST failed), since a run limited to
some planes leaves the others not-run.  Every entry must end ``certified: false`` through a MUST, or be a declared
SHOULD-level catch; the exit status says whether all did.  Writes ``power.json`` and ``power.md``
(``--out``, default ``reports/``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.power import catalogue
from tests.power.catalogue import Entry, RunResult


def run_entry(entry: Entry, scratch: Path, everything: bool) -> RunResult:
    directory = scratch / entry.id
    directory.mkdir()
    if everything:
        entry = dataclasses.replace(entry, planes=catalogue.PLANES)
    result = catalogue.run(entry, directory)
    tests = len(result.failing_tests)
    verdict = f"certified {result.certified}" if result.ran_anything else "NOTHING RAN"
    print(f"{entry.id}: {verdict}, {tests} tests, {result.elapsed_s:.0f}s", flush=True)
    return result


def row(result: RunResult, problem: str | None) -> dict[str, object]:
    entry = result.entry
    return {
        "id": entry.id,
        "description": entry.description,
        "kind": entry.kind,
        "role": entry.role,
        "planes": list(entry.planes),
        "declared": {"requirements": list(entry.requirements), "catch": entry.catch},
        "certified": result.certified,
        "failed_musts": result.failed_musts,
        "failed_shoulds": result.failed_shoulds,
        "failing_tests": result.failing_tests,
        "elapsed_s": round(result.elapsed_s, 1),
        "rejected_as_declared": problem is None,
        "problem": problem,
    }


def markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        "| Entry | Role | Planes | Declared catch | certified | MUSTs failed | SHOULDs failed | Tests |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        declared = r["declared"]
        assert isinstance(declared, dict)
        musts = ", ".join(r["failed_musts"]) or "-"  # type: ignore[arg-type]
        shoulds = ", ".join(r["failed_shoulds"]) or "-"  # type: ignore[arg-type]
        planes = ", ".join(r["planes"])  # type: ignore[arg-type]
        mark = "" if r["rejected_as_declared"] else " **NOT AS DECLARED**"
        description = str(r["description"]).replace("|", "&#124;")  # a bare | would split the cell
        lines.append(
            f"| `{r['id']}`: {description} | {r['role']} | {planes} | {declared['catch']}: "
            f"{', '.join(declared['requirements'])} | {r['certified']}{mark} | {musts} | {shoulds} | "
            f"{len(r['failing_tests'])} |"  # type: ignore[arg-type]
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4, help="entries run at a time (the runs mostly wait)")
    parser.add_argument("--entries", default="", help="comma-separated entry ids (default: all)")
    parser.add_argument("--everything", action="store_true", help="both roles and all planes for every entry")
    parser.add_argument("--out", type=Path, default=catalogue.REPOSITORY / "reports")
    parser.add_argument("--render", type=Path, default=None, help="only rewrite the table of an earlier power.json")
    options = parser.parse_args(argv)
    if options.render is not None:
        earlier: list[dict[str, Any]] = json.loads(options.render.read_text())["entries"]
        for r in earlier:
            r["certified"] = not r["failed_musts"]  # in the run's scope: no MUST failed
        print(markdown(earlier))
        return 0
    entries = catalogue.load()
    if options.entries:
        chosen = set(options.entries.split(","))
        entries = [e for e in entries if e.id in chosen]
    if options.everything:
        entries = [dataclasses.replace(e, role="worker,caller") for e in entries]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rp-power-full-") as scratch, ThreadPoolExecutor(options.jobs) as pool:
        results = list(pool.map(lambda e: run_entry(e, Path(scratch), options.everything), entries))
    rows = [row(r, catalogue.rejected_as_declared(r, full_suite=True)) for r in results]
    options.out.mkdir(parents=True, exist_ok=True)
    wall = time.monotonic() - started
    rejected = sum(bool(r["rejected_as_declared"]) for r in rows)
    summary = {
        "entries": len(rows),
        "rejected_as_declared": rejected,
        "certified_false_by_a_must": sum(r["certified"] is False and bool(r["failed_musts"]) for r in rows),
        "should_level_catches": sum(r["certified"] is not False and bool(r["failed_shoulds"]) for r in rows),
        "caught_by_one_test": sum(len(r["failing_tests"]) == 1 for r in rows),  # type: ignore[arg-type]
        "wall_s": round(wall, 1),
    }
    (options.out / "power.json").write_text(json.dumps({"summary": summary, "entries": rows}, indent=2) + "\n")
    table = markdown(rows)
    (options.out / "power.md").write_text(table)
    print(table)
    print(json.dumps(summary))
    for r in rows:
        if r["problem"]:
            print(f"NOT REJECTED AS DECLARED: {r['id']}: {r['problem']}", file=sys.stderr)
    return 0 if rejected == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
