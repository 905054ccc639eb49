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
        self._cancelled = asyncio.Event()

    def id(self) -> str:
        return self._id

    def is_stopped(self) -> bool:
        return self._stopped

    def is_killed(self) -> bool:
        return self._killed

    def stop_generating(self) -> None:
        self._stopped = True
        self._cancelled.set()

    def kill(self) -> None:
        self._killed = True
        self._stopped = True
        self._cancelled.set()

    def cancel(self, kind: str) -> None:
        """Apply a caller's ``"stop"`` or ``"kill"``."""
        if kind == "kill":
            self.kill()
        else:
            self.stop_generating()

    async def async_killed_or_stopped(self) -> bool:
        await self._cancelled.wait()
        return True
