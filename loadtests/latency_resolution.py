"""Keep Locust's response times below one millisecond.

Why: a loopback round trip takes a fraction of a millisecond, and Locust
(checked on 2.47) loses that twice.  ``StatsEntry._log_response_time`` files
each sample under ``locust.stats.bucket_response_time(rt)``, which rounds to
whole milliseconds below 100 ms, so every percentile of a 0.3 ms request
reads 0; and ``StatsCSV._percentile_fields`` casts percentiles to ``int``
before writing the CSV.  The console tables format times with ``%d``.

:func:`install` replaces those four pieces, once per process:

* ``locust.stats.bucket_response_time``: 3 significant figures, never finer
  than 1 µs (so at most 0.01 ms apart below 10 ms, at most 0.5 % relative
  error above).  Locust documents this function as the hook for custom
  bucketing; ``_log_response_time`` looks it up as a module global at every
  call, so replacing the global is enough.
* ``StatsCSV._percentile_fields``: percentiles as floats (3 decimals).
* ``StatsEntry.to_string`` / ``StatsEntry.percentile``: console rows with
  fractional milliseconds.

:func:`install` then runs :func:`verify`, which exercises the patched
classes; if a Locust upgrade moved any of this, it raises
:class:`LocustInternalsChanged` instead of silently reporting zeros.
"""

from __future__ import annotations

import math
from typing import Any

import locust
import locust.stats as locust_stats

SIGNIFICANT_DIGITS = 3
FINEST_DECIMALS = 3  # 1 µs
CSV_DECIMALS = 3


class LocustInternalsChanged(RuntimeError):
    """The installed Locust no longer works the way this patch expects."""


def bucket_ms(response_time: float) -> float:
    """Round a response time (ms) to 3 significant figures, at most 3 decimals."""
    if response_time <= 0:
        return 0
    decimals = min(FINEST_DECIMALS, SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(response_time)))
    return round(response_time, decimals)


def _fmt_ms(value: float | None, width: int) -> str:
    """Fixed-width milliseconds that keep fractions when they matter."""
    value = value or 0
    if value < 10:
        text = f"{value:.3f}"
    elif value < 1000:
        text = f"{value:.1f}"
    else:
        text = f"{value:.0f}"
    return text.rjust(width)


def _percentile_fields(self: Any, stats_entry: Any, use_current: bool = False) -> list[str] | list[float]:
    if not stats_entry.num_requests:
        return list(self.percentiles_na)
    if use_current and stats_entry.use_response_times_cache:
        get = stats_entry.get_current_response_time_percentile
    else:
        get = stats_entry.get_response_time_percentile
    return [round(float(get(p) or 0), CSV_DECIMALS) for p in self.percentiles_to_report]


def _to_string(self: Any, current: bool = True) -> str:
    rps, fail_per_sec = (
        (self.current_rps, self.current_fail_per_sec) if current else (self.total_rps, self.total_fail_per_sec)
    )
    type_width = locust_stats.STATS_TYPE_WIDTH
    name_width = locust_stats.STATS_NAME_WIDTH - type_width + 4
    failures = f"{self.num_failures}({self.fail_ratio * 100:.2f}%)"
    times = (self.avg_response_time, self.min_response_time, self.max_response_time, self.median_response_time)
    return (
        f"{self.method or '':<{type_width}}  {self.name:<{name_width}} {self.num_requests:7d} {failures:>12} |"
        f"{_fmt_ms(times[0], 7)} {_fmt_ms(times[1], 7)} {_fmt_ms(times[2], 7)}{_fmt_ms(times[3], 7)} |"
        f" {rps or 0:7.2f} {fail_per_sec or 0:11.2f}"
    )


def _percentile(self: Any) -> str:
    """Same columns as Locust's: the first percentile 8 wide, then 6 wide, the request count last."""
    if not self.num_requests:
        raise ValueError("Can't calculate percentile on url with no successful requests")
    first, *rest = (self.get_response_time_percentile(p) for p in locust_stats.PERCENTILES_TO_REPORT)
    columns = " ".join([_fmt_ms(first, 8), *(_fmt_ms(value, 6) for value in rest), f"{self.num_requests:6d}"])
    return (
        f"{self.method or '':<{locust_stats.STATS_TYPE_WIDTH}} {self.name:<{locust_stats.STATS_NAME_WIDTH}} {columns}"
    )


def install() -> None:
    """Patch Locust for sub-millisecond response times (idempotent), then verify."""
    if getattr(locust_stats, "_rp_submillisecond", False):
        return
    for owner, name in (
        (locust_stats, "bucket_response_time"),
        (locust_stats.StatsCSV, "_percentile_fields"),
        (locust_stats.StatsEntry, "to_string"),
        (locust_stats.StatsEntry, "percentile"),
        (locust_stats.StatsEntry, "_log_response_time"),
    ):
        if not callable(getattr(owner, name, None)):
            raise LocustInternalsChanged(
                f"locust {locust.__version__}: {getattr(owner, '__name__', owner)}.{name} is gone; "
                "update loadtests/latency_resolution.py"
            )
    locust_stats.bucket_response_time = bucket_ms  # type: ignore[assignment]
    locust_stats.StatsCSV._percentile_fields = _percentile_fields  # type: ignore[assignment,method-assign]
    locust_stats.StatsEntry.to_string = _to_string  # type: ignore[method-assign]
    locust_stats.StatsEntry.percentile = _percentile  # type: ignore[method-assign]
    locust_stats._rp_submillisecond = True  # type: ignore[attr-defined]
    verify()


def verify() -> None:
    """Log sub-millisecond samples through Locust's own classes and read them back."""
    stats = locust_stats.RequestStats(use_response_times_cache=False)
    samples = (0.123, 0.123, 0.456, 0.789)
    for sample in samples:
        stats.log_request("tcp", "probe", sample, 0)  # type: ignore[arg-type]  # annotated int, takes floats
    entry = stats.get("probe", "tcp")
    problems = []
    if entry.get_response_time_percentile(0.5) != 0.456 or entry.get_response_time_percentile(1.0) != 0.789:
        problems.append(f"percentiles kept {sorted(entry.response_times)} (bucketing not applied)")
    if entry.median_response_time != 0.456:
        problems.append(f"median read {entry.median_response_time}")

    class _Environment:
        pass

    environment = _Environment()
    environment.stats = stats  # type: ignore[attr-defined]
    csv = locust_stats.StatsCSV(environment, [0.5, 0.99])  # type: ignore[arg-type]
    fields = csv._percentile_fields(entry)
    if fields != [0.456, 0.789]:
        problems.append(f"CSV percentiles read {fields}")
    if "0.456" not in entry.to_string(current=False) or "0.789" not in entry.percentile():
        problems.append("console rows lost the fractions")
    if problems:
        raise LocustInternalsChanged(
            f"locust {locust.__version__}: sub-millisecond patch does not hold: {'; '.join(problems)}; "
            "update loadtests/latency_resolution.py"
        )
