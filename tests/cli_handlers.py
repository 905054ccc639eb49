"""Handlers the command-line tests serve with ``--handler tests.cli_handlers:HANDLERS``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any


async def watched(request: Any, context: Any) -> AsyncIterator[Any]:
    """An item every ``interval`` s; at the end writes to ``marker`` whether it was stopped or killed."""
    sent = 0
    try:
        for seq in range(int(request.get("count", 400))):
            if context.is_stopped():
                return
            yield {"seq": seq}
            sent += 1
            await asyncio.sleep(float(request.get("interval", 0.05)))
    finally:
        _write(request["marker"], {"sent": sent, "stopped": context.is_stopped(), "killed": context.is_killed()})


def _write(path: str, value: Any) -> None:
    """Small and local: written once, at the end of a test stream."""
    Path(path).write_text(json.dumps(value))


async def echo(request: Any, context: Any) -> AsyncIterator[Any]:
    yield request


HANDLERS = {"watched": watched, "echo": echo}
NOT_A_HANDLER = 42
