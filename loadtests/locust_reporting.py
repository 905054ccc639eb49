"""Turn a :class:`~loadtests.calls.CallOutcome` into Locust statistics.

Why not one request event per item: a 1,000-item stream would cost 1,000
event dispatches, more than the call itself.  The request goes through
Locust's ``request`` event as usual (Type = plane); its items are added to a
row of Type :data:`~loadtests.profiles.ITEMS` in one step, so that row's
Requests/s is items streamed per second in the console, the CSV and the
JSON, and merges across distributed workers like any row.  Its response time
is the stream's time per item.  Multi-item streams also log their time to
first item (Type :data:`~loadtests.profiles.FIRST_ITEM`).  Neither row is
added to Locust's "Aggregated" total, which stays a count of requests.

Must run on the gevent hub (a Locust greenlet): Locust's stats are not
thread-safe.
"""

from __future__ import annotations

from typing import Any

import locust.stats as locust_stats

from loadtests.calls import CallOutcome
from loadtests.profiles import FIRST_ITEM, ITEMS


def report(environment: Any, outcome: CallOutcome) -> None:
    environment.events.request.fire(
        request_type=outcome.plane,
        name=outcome.name,
        response_time=outcome.latency_ms,
        response_length=outcome.payload_bytes,
        exception=outcome.error,
        context={"items": outcome.items},
    )
    if outcome.items:
        log_items(environment.stats, outcome.name, outcome.items, outcome.latency_ms / outcome.items)
    if outcome.items > 1 and outcome.first_item_ms is not None:
        environment.stats.get(outcome.name, FIRST_ITEM).log(outcome.first_item_ms, 0)


def log_items(stats: Any, name: str, count: int, ms_per_item: float) -> None:
    """Add ``count`` samples of ``ms_per_item`` to the ITEMS row, as ``count`` calls of ``StatsEntry.log`` would."""
    entry = stats.get(name, ITEMS)
    entry.log(ms_per_item, 0)  # Locust's own path: timestamps, per-second counts, response-time cache
    extra = count - 1
    if extra:
        entry.num_requests += extra
        entry.num_reqs_per_sec[int(entry.last_request_timestamp)] += extra
        entry.response_times[locust_stats.bucket_response_time(ms_per_item)] += extra
        entry.total_response_time += ms_per_item * extra
