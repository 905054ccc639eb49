"""Compatibility matrix: ``python -m conformance.matrix [TARGET ...]``.

Runs the conformance suite against each target (default: the reference
implementation and the latest patch of every Dynamo release line with
selectable request planes, each Dynamo in its own cached virtualenv) and
writes ``matrix.json``, ``matrix.md`` and a self-contained ``matrix.html``.
Targets: ``reference``, ``dynamo==VERSION``, ``NAME=COMMAND`` (an adapter
command, as ``--impl-cmd``), ``report:LABEL=PATH`` (reuse a report).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fixtures.matrix.document import build_document, column_verdict
from fixtures.matrix.html import render_html
from fixtures.matrix.markdown import render_markdown
from fixtures.matrix.runner import error_column, run_target
from fixtures.matrix.targets import DEFAULT_VENV_DIR, Target, TargetError, default_targets, parse_target
from fixtures.requirements import load_requirements, load_revisions


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m conformance.matrix", description=__doc__)
    parser.add_argument("targets", nargs="*", help="implementations to run (default: reference and every Dynamo line)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where matrix.* and each run go")
    parser.add_argument("--venv-dir", type=Path, default=DEFAULT_VENV_DIR, help="cache of per-release virtualenvs")
    parser.add_argument("--jobs", type=int, default=1, help="implementations run at the same time")
    parser.add_argument(
        "--pytest-args", default="", help='extra pytest arguments for every run, e.g. "--planes tcp" (quoted)'
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extra = shlex.split(args.pytest_args)
    targets: list[Target | tuple[str, str]] = []
    for spec in args.targets or []:
        try:
            targets.append(parse_target(spec))
        except TargetError as exc:
            targets.append((spec, str(exc)))  # a bad spec is an error column, the rest still runs
    if not args.targets:
        targets = list(default_targets())
    for target in targets:
        if isinstance(target, Target):
            target.pytest_args = list(extra)

    def run(target: Target | tuple[str, str]) -> dict[str, Any]:
        if isinstance(target, tuple):
            return error_column(Target(label=target[0], impl=target[0]), target[1])
        column = run_target(target, args.out / "matrix-runs", args.venv_dir, log=sys.stderr)
        print(f"[matrix] {column['label']}: {column_verdict(column)} {column['error'] or ''}", file=sys.stderr)
        return column

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        columns = list(pool.map(run, targets))
    document = build_document(load_requirements(), load_revisions(), columns)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "matrix.json").write_text(json.dumps(document, indent=2) + "\n")
    (args.out / "matrix.md").write_text(render_markdown(document))
    (args.out / "matrix.html").write_text(render_html(document))
    print(f"matrix: {args.out / 'matrix.html'} ({len(columns)} implementations)")
    return 0 if all(c["status"] == "ran" for c in columns) else 1


if __name__ == "__main__":
    raise SystemExit(main())
