"""What every fuzz target asserts: findings are exceptions that are not the code's documented errors."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class FuzzFinding(AssertionError):
    """An invariant of the code under test does not hold for this input."""


def require(condition: bool, message: str) -> None:
    """Like ``assert``, but kept under ``python -O`` and named so a finding reads as one."""
    if not condition:
        raise FuzzFinding(message)


def require_clear_error(exc: BaseException, allowed: tuple[type[BaseException], ...]) -> None:
    """A documented error type with a message a person can act on."""
    require(isinstance(exc, allowed), f"undocumented error {type(exc).__name__}: {exc}")
    require(bool(str(exc).strip()), f"{type(exc).__name__} without a message")


def require_poisoned(operation: Callable[[], Any], error: BaseException) -> None:
    """After a wire error every further operation raises that same error (no resynchronisation)."""
    try:
        operation()
    except BaseException as again:
        require(again is error, f"a poisoned decoder raised {again!r} instead of {error!r}")
        return
    raise FuzzFinding(f"decoder accepted more input after {error!r}")


def safe_repr(value: object) -> str:
    """``repr`` that survives hostile nesting depth: equal values give equal text, or both give the marker."""
    try:
        return repr(value)
    except RecursionError:
        return "<too deep to show>"


class FuzzHang(FuzzFinding):
    """The target was still running long after any input of this size should be done."""


@contextmanager
def hang_guard(seconds: float) -> Iterator[None]:
    """Turn a target that does not return within ``seconds`` into a finding (main thread only).

    A hang guard, not a timing assertion: the bound is far above what any input needs.
    """

    def expired(signum: int, frame: FrameType | None) -> None:
        raise FuzzHang(f"the target was still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
