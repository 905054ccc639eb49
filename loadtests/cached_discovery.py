"""A file-store discovery that re-reads the store at most every ``refresh`` seconds.

Why: ``Caller._pick`` asks discovery for records on every request, and
``FileDiscovery.records`` lists the directory, stats and parses every
instance file each time: syscalls and JSON per request that a load generator
must not spend (measured in README.md).  Records change rarely; one read per
``refresh`` keeps a worker that disappears visible within that time.
"""

from __future__ import annotations

import time

from reference_impl.discovery.file_store import FileDiscovery
from reference_impl.discovery.records import InstanceRecord
from reference_impl.routing import EndpointId

DEFAULT_REFRESH = 1.0


class CachedDiscovery(FileDiscovery):
    def __init__(self, root: str, *, refresh: float = DEFAULT_REFRESH) -> None:
        super().__init__(root)
        self.refresh = refresh
        self._cache: dict[tuple[EndpointId | None, bool], tuple[float, list[InstanceRecord]]] = {}

    def records(self, endpoint: EndpointId | None = None, *, include_stale: bool = False) -> list[InstanceRecord]:
        key = (endpoint, include_stale)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self.refresh:
            return cached[1]
        records = super().records(endpoint, include_stale=include_stale)
        if records:  # an empty answer is not cached, so waiting for a worker sees it at once
            self._cache[key] = (now, records)
        else:
            self._cache.pop(key, None)
        return records
