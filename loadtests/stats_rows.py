"""Read Locust's statistics as :class:`~loadtests.gate.RowStats`, from wherever they are.

Three sources, one shape: the live ``RequestStats`` of a running Locust, the
``<prefix>_stats.csv`` that ``--csv`` writes, and the list that ``--json`` /
``--json-file`` write (one object per row, with the response-time histogram
``response_times``: ``{bucket_ms: count}``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from loadtests.gate import RowStats

AGGREGATED = "Aggregated"


def percentile_of_histogram(histogram: Mapping[float, int], count: int, percent: float) -> float | None:
    """Locust's own rule (``calculate_response_time_percentile``) on a ``{bucket: count}`` histogram."""
    if not histogram or count <= 0:
        return None
    wanted = int(count * percent)
    processed = 0
    for bucket in sorted(histogram, reverse=True):
        processed += histogram[bucket]
        if count - processed <= wanted:
            return bucket
    return 0.0


def rows_from_stats(stats: Any) -> list[RowStats]:
    """From a live ``locust.stats.RequestStats``."""
    rows = []
    for entry in stats.entries.values():
        if not entry.num_requests:
            continue
        rows.append(
            RowStats(
                kind=entry.method or "",
                name=entry.name,
                requests=entry.num_requests,
                failures=entry.num_failures,
                p50_ms=float(entry.get_response_time_percentile(0.5)),
                p99_ms=float(entry.get_response_time_percentile(0.99)),
                per_second=float(entry.total_rps),
            )
        )
    return rows


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "N/A") else None
    except ValueError:
        return None


def rows_from_csv(path: str | Path) -> list[RowStats]:
    """From ``<prefix>_stats.csv`` (pass the file or the prefix)."""
    file = Path(path)
    if not file.name.endswith("_stats.csv"):
        file = file.with_name(file.name + "_stats.csv")
    with file.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    rows = []
    for record in records:
        if record.get("Name") == AGGREGATED and not record.get("Type"):
            continue
        rows.append(
            RowStats(
                kind=record.get("Type") or "",
                name=record.get("Name") or "",
                requests=int(record.get("Request Count") or 0),
                failures=int(record.get("Failure Count") or 0),
                p50_ms=_float_or_none(record.get("50%")),
                p99_ms=_float_or_none(record.get("99%")),
                per_second=_float_or_none(record.get("Requests/s")) or 0.0,
            )
        )
    return rows


def rows_from_json(path: str | Path) -> list[RowStats]:
    """From the file ``--json-file NAME`` writes (``NAME.json``) or captured ``--json`` output."""
    data = json.loads(Path(path).read_text())
    return rows_from_json_entries(data)


def rows_from_json_entries(entries: Iterable[Mapping[str, Any]]) -> list[RowStats]:
    rows = []
    for entry in entries:
        histogram = {float(bucket): int(count) for bucket, count in (entry.get("response_times") or {}).items()}
        requests = int(entry.get("num_requests") or 0)
        timed = requests - int(entry.get("num_none_requests") or 0)
        start, last = entry.get("start_time"), entry.get("last_request_timestamp")
        span = (last - start) if start and last else 0.0
        rows.append(
            RowStats(
                kind=entry.get("method") or "",
                name=entry.get("name") or "",
                requests=requests,
                failures=int(entry.get("num_failures") or 0),
                p50_ms=percentile_of_histogram(histogram, timed, 0.5),
                p99_ms=percentile_of_histogram(histogram, timed, 0.99),
                per_second=requests / span if span > 0 else 0.0,
            )
        )
    return rows
