"""Which event loop runs a reference process: asyncio's own (default) or uvloop (optional).

Why a setting: uvloop (libuv under asyncio's API, as Dynamo's Python components use it)
runs the same transports and protocols with less CPU per event-loop callback; it is an
optional dependency (``pip install '.[uvloop]'``), so the default loop must do everything
on its own.  ``RP_EVENT_LOOP=uvloop`` picks it for processes started with :func:`run`
(the reference adapter); an unknown name, or uvloop asked for and not installed, is a
clear error rather than a silent fallback that would mislabel a benchmark.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

EVENT_LOOP_ENV = "RP_EVENT_LOOP"
ASYNCIO = "asyncio"
UVLOOP = "uvloop"
EVENT_LOOPS = (ASYNCIO, UVLOOP)


class EventLoopError(RuntimeError):
    """The event loop asked for cannot be used."""


def configured_loop(environ: dict[str, str] | None = None) -> str:
    """The loop named by ``RP_EVENT_LOOP`` (empty or unset: asyncio)."""
    value = (os.environ if environ is None else environ).get(EVENT_LOOP_ENV, "").strip().lower() or ASYNCIO
    if value not in EVENT_LOOPS:
        raise EventLoopError(f"{EVENT_LOOP_ENV}={value!r}: expected one of {', '.join(EVENT_LOOPS)}")
    return value


def run(main: Coroutine[Any, Any, T], environ: dict[str, str] | None = None) -> T:
    """``asyncio.run(main)`` on the configured loop."""
    if configured_loop(environ) == UVLOOP:
        try:
            import uvloop
        except ImportError:
            main.close()
            raise EventLoopError(
                f"{EVENT_LOOP_ENV}=uvloop but uvloop is not installed: pip install 'request-plane-conformance[uvloop]'"
            ) from None
        return uvloop.run(main)
    return asyncio.run(main)


def running_loop_name() -> str:
    """``uvloop`` or ``asyncio``: what actually runs the current coroutine (for logs and reports)."""
    return UVLOOP if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else ASYNCIO
