"""Mutation run of reference_impl with cosmic-ray, outside CI: ``python -m tests.power.mutation``.

cosmic-ray enumerates the mutations of each module (``cosmic-ray init``); a deterministic sample of
them (``--per-module``, seed ``--seed``) is applied one at a time to a fresh copy of reference_impl
(``cosmic-ray apply``) and judged by the conformance suite, filtered to the requirements that
module serves (``MODULES``) on the TCP plane, against ``faulty_adapter.py`` pointed at the copy.  The
suite process itself keeps importing the unmutated package, so the judge is never mutated with the
judged.  A mutant is killed when the run fails (a suite run cut by ``--timeout`` counts as killed:
the mutant hangs the implementation), survives when it passes.

Bounded: ``--budget`` seconds of wall time in all (mutants not started by then are reported as not
run), ``--jobs`` runs at a time, and the process lowers its own priority (``nice`` 10).  Writes
``reports/mutation.json`` and ``reports/mutation.md`` (score and every survivor with its diff).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.power.catalogue import REPOSITORY, failures_of, run_suite

CR = str(Path(sys.executable).with_name("cosmic-ray"))
# Module -> the requirements that exercise it.  The filter keeps one mutant's run to seconds.
MODULES: dict[str, tuple[str, ...]] = {
    "wire/two_part.py": ("TP-LAYOUT", "TP-CHECKSUM-ZERO", "TP-CHECKSUM-VALID", "RS-ITEMS", "RS-CALLER-ITEMS"),
    "wire/request_frame.py": ("TCP-FRAME", "TCP-SIZE-LIMIT", "TCP-SIZE-AT-LIMIT", "TCP-TRUNCATED", "TCP-CALLER-FRAME"),
    "protocol/ack.py": ("TCP-CALLER-REJECT", "TCP-CALLER-REJECT-OTHER", "TCP-UNKNOWN-ENDPOINT", "TCP-OVERLOAD"),
    "protocol/annotated.py": ("RS-ERROR-BEFORE", "RS-ERROR-MID", "RS-CALLER-ERROR-ITEM", "RS-CALLER-ITEMS"),
    "transport/tcp/server.py": ("TCP-ACK-EMPTY", "TCP-ACK-ORDER", "TCP-SIZE-LIMIT", "TCP-ISOLATION", "TCP-TRUNCATED"),
    "admission.py": ("TCP-OVERLOAD", "TCP-ACK-EMPTY"),
    "discovery/file_store.py": ("DISC-FILE-NAME", "DISC-RECORD", "DISC-LIVENESS", "DISC-CALLER-FINDS"),
}
MUTANT_TIMEOUT_S = 240.0


@dataclass
class Mutant:
    module: str
    operator: str
    occurrence: int
    line: int
    diff: str = ""
    status: str = "not-run"  # killed, survived, timeout (counted as killed), no-change, not-run
    failed: tuple[str, ...] = ()
    elapsed_s: float = 0.0


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
    return [Mutant(module, operator, int(occurrence), int(row)) for operator, occurrence, row in rows]


def run_mutant(mutant: Mutant, scratch: Path, deadline: float, index: int) -> Mutant:
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
        return mutant
    returncode, output, elapsed, report = run_suite(
        directory,
        impl_root=root,
        planes=("tcp",),
        requirements=MODULES[mutant.module],
        timeout=MUTANT_TIMEOUT_S,
        extra_args=("-x",),
    )
    mutant.elapsed_s = round(elapsed, 1)
    musts, shoulds, _ = failures_of(report)
    mutant.failed = tuple(musts + shoulds)
    if returncode == -1:
        mutant.status = "timeout"
    elif returncode == 0 and not musts and not shoulds:
        mutant.status = "survived"
    elif report is None:
        mutant.status = "error"  # the suite itself could not run: reported, not counted
        mutant.failed = tuple((output.strip().splitlines() or ["?"])[-1:])
    else:
        mutant.status = "killed"
    shutil.rmtree(directory, ignore_errors=True)
    return mutant


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-module", type=int, default=12, help="mutants sampled per module (0: all)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--budget", type=float, default=3000.0, help="seconds of wall time for the whole run")
    parser.add_argument("--modules", default=",".join(MODULES), help="comma-separated modules under reference_impl/")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "reports")
    options = parser.parse_args(argv)
    os.nice(10)
    started = time.monotonic()
    deadline = started + options.budget
    modules = [m for m in options.modules.split(",") if m]
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown modules {unknown}; known: {sorted(MODULES)}")
    with tempfile.TemporaryDirectory(prefix="rp-mutation-") as scratch_name:
        scratch = Path(scratch_name)
        population: dict[str, int] = {}
        sample: list[Mutant] = []
        for module in modules:
            mutants = enumerate_mutants(module, scratch)
            population[module] = len(mutants)
            rng = random.Random(f"{options.seed}:{module}")
            chosen = mutants if not options.per_module else rng.sample(mutants, min(options.per_module, len(mutants)))
            sample += sorted(chosen, key=lambda m: (m.line, m.operator, m.occurrence))
        print(f"{len(sample)} mutants sampled from {sum(population.values())}: {population}", flush=True)
        with ThreadPoolExecutor(max_workers=options.jobs) as pool:
            done = list(pool.map(lambda pair: run_mutant(pair[1], scratch, deadline, pair[0]), enumerate(sample)))
    for mutant in done:
        print(f"{mutant.status:9} {mutant.module}:{mutant.line} {mutant.operator} #{mutant.occurrence}", flush=True)
    write_reports(done, population, options, time.monotonic() - started)
    return 0


def score(mutants: list[Mutant]) -> tuple[int, int]:
    """(killed, judged): timeouts count as killed; no-change, errors and unrun mutants are not judged."""
    killed = sum(m.status in ("killed", "timeout") for m in mutants)
    judged = killed + sum(m.status == "survived" for m in mutants)
    return killed, judged


def write_reports(mutants: list[Mutant], population: dict[str, int], options: argparse.Namespace, wall: float) -> None:
    killed, judged = score(mutants)
    options.out.mkdir(parents=True, exist_ok=True)
    document = {
        "tool": "cosmic-ray",
        "seed": options.seed,
        "per_module": options.per_module,
        "population": population,
        "wall_s": round(wall, 1),
        "killed": killed,
        "judged": judged,
        "score": round(killed / judged, 3) if judged else None,
        "mutants": [asdict(m) for m in mutants],
    }
    (options.out / "mutation.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        f"Mutation score: {killed}/{judged} killed"
        + (f" ({100 * killed / judged:.0f} %)" if judged else "")
        + f"; {len(mutants)} sampled of {sum(population.values())} mutants, wall {wall / 60:.0f} min",
        "",
        "| Module | Sampled | Killed | Survived | Timeout | Other |",
        "|---|---|---|---|---|---|",
    ]
    for module in population:
        own = [m for m in mutants if m.module == module]
        count = {s: sum(m.status == s for m in own) for s in ("killed", "survived", "timeout")}
        other = len(own) - sum(count.values())
        lines.append(
            f"| `{module}` | {len(own)} | {count['killed']} | {count['survived']} | {count['timeout']} | {other} |"
        )
    lines += ["", "Survivors:", ""]
    for mutant in mutants:
        if mutant.status == "survived":
            change = " / ".join(
                line[1:].strip() for line in mutant.diff.splitlines() if line[:1] in "+-" and line[:3] not in "+++---"
            )
            lines.append(f"* `{mutant.module}:{mutant.line}` {mutant.operator}: `{change[:160]}`")
    (options.out / "mutation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
