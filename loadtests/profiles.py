"""The load profiles and their pass/fail thresholds, in one table.

Why one table: the Locust users, the in-process gate, the CSV/JSON checker
and the smoke runner all read the same numbers, so a threshold changes in
one place.  The figures are for one Locust process against one worker on
loopback (see README.md for the machine they were set on) and leave room for
a loaded CI runner; tighten them per machine with ``--rp-p99-ms``.

Stats rows: a profile's requests are the rows whose *Type* is the plane
(``tcp``, ``nats``, ``http``) and whose *Name* starts with ``<profile>/``.
Rows of type :data:`ITEMS` count streamed items (their Requests/s column is
items/s); rows of type :data:`FIRST_ITEM` time the first item of each
multi-item stream.  Neither counts towards the thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

ITEMS = "items"
FIRST_ITEM = "1st-item"
NON_REQUEST_TYPES = frozenset({ITEMS, FIRST_ITEM})


@dataclass(frozen=True)
class Thresholds:
    max_fail_ratio: float  # failures / requests
    p99_ms: float  # every request row of the profile
    min_requests: int  # a run that did (almost) nothing must not pass

    def overridden(
        self, *, p99_ms: float | None = None, max_fail_ratio: float | None = None, min_requests: int | None = None
    ) -> Thresholds:
        return replace(
            self,
            p99_ms=self.p99_ms if p99_ms is None else p99_ms,
            max_fail_ratio=self.max_fail_ratio if max_fail_ratio is None else max_fail_ratio,
            min_requests=self.min_requests if min_requests is None else min_requests,
        )


@dataclass(frozen=True)
class Profile:
    name: str
    user_class: str
    description: str
    thresholds: Thresholds
    smoke_users: int  # concurrency of the CI smoke run


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "unary",
            "UnaryUser",
            "small request, one small item back (echo, 64 B), closed loop",
            Thresholds(max_fail_ratio=0.0, p99_ms=50.0, min_requests=200),
            smoke_users=8,
        ),
        Profile(
            "stream",
            "LongStreamUser",
            "long streams: 1,000 items of 32 B per request",
            Thresholds(max_fail_ratio=0.0, p99_ms=1500.0, min_requests=10),
            smoke_users=4,
        ),
        Profile(
            "large",
            "LargePayloadUser",
            "1 MiB request body (sink, SHA-256 checked) and 1 MiB item back",
            Thresholds(max_fail_ratio=0.0, p99_ms=250.0, min_requests=20),
            smoke_users=4,
        ),
        Profile(
            "soak",
            "SoakUser",
            "ramping soak: echo, 100-item streams, streams cancelled with stop and with kill",
            Thresholds(max_fail_ratio=0.001, p99_ms=500.0, min_requests=200),
            smoke_users=16,
        ),
    )
}
PROFILE_OF_USER_CLASS = {p.user_class: p for p in PROFILES.values()}


def profile_of_row(name: str) -> str | None:
    """The profile a stats row belongs to, from its ``<profile>/<operation>`` name."""
    prefix, slash, _ = name.partition("/")
    return prefix if slash and prefix in PROFILES else None
