"""Gate CI on a finished Locust run: exit 1 when a profile misses its thresholds.

Reads what Locust wrote, so it also works on runs made elsewhere::

    locust -f loadtests/ --headless -t 30s -u 8 UnaryUser --json-file out/unary
    python -m loadtests.check --json out/unary.json --profile unary

    locust -f loadtests/ --headless -t 30s -u 8 UnaryUser --csv out/unary
    python -m loadtests.check --csv out/unary

Prefer ``--json``: Locust writes it once, after every user stopped, while the
CSV is rewritten every second and may miss the last one.  Without
``--profile``, every profile with rows in the file is judged.
"""

from __future__ import annotations

import argparse
import sys

from loadtests.gate import RowStats, Verdict, evaluate, profiles_in
from loadtests.profiles import PROFILES
from loadtests.stats_rows import rows_from_csv, rows_from_json


def judge(
    rows: list[RowStats],
    profiles: list[str] | None = None,
    *,
    p99_ms: float | None = None,
    max_fail_ratio: float | None = None,
    min_requests: int | None = None,
) -> list[Verdict]:
    """Verdicts for ``profiles`` (default: those present in ``rows``)."""
    names = profiles or profiles_in(rows)
    return [
        evaluate(
            name,
            rows,
            PROFILES[name].thresholds.overridden(
                p99_ms=p99_ms, max_fail_ratio=max_fail_ratio, min_requests=min_requests
            ),
        )
        for name in names
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--json", help="file written by locust --json-file NAME (NAME.json) or --json > FILE")
    source.add_argument("--csv", help="prefix given to locust --csv (or the <prefix>_stats.csv file)")
    parser.add_argument("--profile", action="append", choices=sorted(PROFILES), help="profile(s) to judge (repeat)")
    parser.add_argument("--p99-ms", type=float, default=None, help="override the p99 limit (ms)")
    parser.add_argument("--max-fail-ratio", type=float, default=None, help="override the failure-ratio limit")
    parser.add_argument("--min-requests", type=int, default=None, help="override the minimum request count")
    args = parser.parse_args(argv)
    rows = rows_from_json(args.json) if args.json else rows_from_csv(args.csv)
    verdicts = judge(
        rows, args.profile, p99_ms=args.p99_ms, max_fail_ratio=args.max_fail_ratio, min_requests=args.min_requests
    )
    if not verdicts:
        print("no profile rows found (names must start with '<profile>/')", file=sys.stderr)
        return 1
    for verdict in verdicts:
        print(verdict.summary())
    return 0 if all(v.passed for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
