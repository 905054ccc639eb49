"""Per-request context handed to handlers: identity and cancellation.

Its method names mirror ``dynamo.runtime.Context`` (``is_stopped``,
``is_killed``, ``async_killed_or_stopped``, ``id``) so one handler can be
served by either runtime.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping


class RequestContext:
    def __init__(
        self, request_id: str, headers: Mapping[str, str] | None = None, metadata: Mapping[str, str] | None = None
    ) -> None:
        self._id = request_id
        self.headers = dict(headers or {})
        self.metadata = dict(metadata or {})
        self._stopped = False
        self._killed = False
        self._cancelled: asyncio.Future[None] | None = None  # made on first use: needs the running loop

    def id(self) -> str:
        return self._id

    def is_stopped(self) -> bool:
        return self._stopped

    def is_killed(self) -> bool:
        return self._killed

    def stop_generating(self) -> None:
        self._stopped = True
        self._wake()

    def kill(self) -> None:
        self._killed = True
        self._stopped = True
        self._wake()

    def _wake(self) -> None:
        if self._cancelled is not None and not self._cancelled.done():
            self._cancelled.set_result(None)

    def cancelled(self) -> asyncio.Future[None]:
        """Done at the first stop or kill.  The worker races its item pump against it (a future, not a task)."""
        if self._cancelled is None:
            self._cancelled = asyncio.get_running_loop().create_future()
            if self._stopped:
                self._cancelled.set_result(None)
        return self._cancelled

    async def async_killed_or_stopped(self) -> bool:
        await asyncio.shield(self.cancelled())  # a cancelled waiter must not cancel the shared future
        return True
