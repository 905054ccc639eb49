"""Judge a run against its profile's thresholds.

Why separate: the same judgement runs inside Locust (from its live stats,
setting the exit code) and afterwards in ``loadtests.check`` (from Locust's
CSV or JSON files), so the two can never disagree on what "pass" means.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from loadtests.profiles import FIRST_ITEM, ITEMS, NON_REQUEST_TYPES, PROFILES, Thresholds, profile_of_row


@dataclass(frozen=True)
class RowStats:
    """One Locust stats row, whatever it was read from."""

    kind: str  # Locust's "Type" (request_type): the plane, or ITEMS / FIRST_ITEM
    name: str
    requests: int
    failures: int
    p50_ms: float | None
    p99_ms: float | None
    per_second: float


@dataclass
class Verdict:
    profile: str
    thresholds: Thresholds
    requests: int = 0
    failures: int = 0
    requests_per_s: float = 0.0
    items_per_s: float = 0.0
    worst_p50_ms: float | None = None
    worst_p99_ms: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def summary(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        figures = (
            f"{self.requests} req, {self.failures} failed ({self.fail_ratio:.4%}), {self.requests_per_s:.1f} req/s, "
            f"{self.items_per_s:.1f} items/s, p50 {_ms(self.worst_p50_ms)}, p99 {_ms(self.worst_p99_ms)}"
        )
        limits = (
            f"limits: fail ratio <= {self.thresholds.max_fail_ratio}, p99 <= {self.thresholds.p99_ms} ms, "
            f">= {self.thresholds.min_requests} req"
        )
        lines = [f"[{status}] {self.profile}: {figures} ({limits})"]
        lines.extend(f"    - {problem}" for problem in self.problems)
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "passed": self.passed,
            "requests": self.requests,
            "failures": self.failures,
            "fail_ratio": self.fail_ratio,
            "requests_per_s": self.requests_per_s,
            "items_per_s": self.items_per_s,
            "p50_ms": self.worst_p50_ms,
            "p99_ms": self.worst_p99_ms,
            "thresholds": vars(self.thresholds),
            "problems": self.problems,
        }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def evaluate(profile: str, rows: Iterable[RowStats], thresholds: Thresholds | None = None) -> Verdict:
    """Apply ``thresholds`` (default: the profile's own) to the profile's rows."""
    limits = thresholds or PROFILES[profile].thresholds
    verdict = Verdict(profile, limits)
    for row in rows:
        if profile_of_row(row.name) != profile:
            continue
        if row.kind == ITEMS:
            verdict.items_per_s += row.per_second
            continue
        if row.kind in NON_REQUEST_TYPES:
            continue
        verdict.requests += row.requests
        verdict.failures += row.failures
        verdict.requests_per_s += row.per_second
        for attribute, value in (("worst_p50_ms", row.p50_ms), ("worst_p99_ms", row.p99_ms)):
            if value is not None:
                current = getattr(verdict, attribute)
                setattr(verdict, attribute, value if current is None else max(current, value))
        if row.p99_ms is not None and row.requests and row.p99_ms > limits.p99_ms:
            verdict.problems.append(f"{row.kind} {row.name}: p99 {row.p99_ms:.3f} ms > {limits.p99_ms} ms")
    if verdict.requests < limits.min_requests:
        verdict.problems.append(f"only {verdict.requests} requests (need >= {limits.min_requests})")
    if verdict.requests and verdict.fail_ratio > limits.max_fail_ratio:
        verdict.problems.append(f"failure ratio {verdict.fail_ratio:.4%} > {limits.max_fail_ratio:.4%}")
    return verdict


def profiles_in(rows: Iterable[RowStats]) -> list[str]:
    """Profiles that have at least one request row, in table order."""
    seen = {profile_of_row(row.name) for row in rows if row.kind not in (ITEMS, FIRST_ITEM)}
    return [name for name in PROFILES if name in seen]
