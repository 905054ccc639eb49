"""``unless_the_call_fails``: a wait for what a call brings ends at once when the call raises, and only then."""

from __future__ import annotations

import asyncio
import time

import pytest

from fixtures.adapter_process import AdapterError
from fixtures.roles import unless_the_call_fails


async def _raises_after(seconds: float) -> None:
    await asyncio.sleep(seconds)
    raise AdapterError("adapter custom: call failed: not implemented")


async def _answers_after(seconds: float) -> dict[str, str]:
    await asyncio.sleep(seconds)
    return {"outcome": "error"}


async def _arrives_after(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "request"


async def test_a_call_that_raises_ends_the_wait_with_its_exception() -> None:
    call = asyncio.ensure_future(_raises_after(0.01))
    started = time.monotonic()
    with pytest.raises(AdapterError, match="not implemented"):
        await unless_the_call_fails(call, _arrives_after(5.0))
    assert time.monotonic() - started < 2.0, "the wait was sat out"


async def test_a_call_that_answers_does_not_end_the_wait() -> None:
    call = asyncio.ensure_future(_answers_after(0.01))
    assert await unless_the_call_fails(call, _arrives_after(0.2)) == "request"
    assert call.result() == {"outcome": "error"}


async def test_what_arrives_before_the_call_ends_is_returned_and_the_call_goes_on() -> None:
    call = asyncio.ensure_future(_raises_after(0.2))
    assert await unless_the_call_fails(call, _arrives_after(0.01)) == "request"
    assert not call.done()
    with pytest.raises(AdapterError):
        await call


async def test_a_wait_that_times_out_still_fails_as_before() -> None:
    call = asyncio.ensure_future(_answers_after(5.0))

    async def times_out() -> None:
        await asyncio.wait_for(asyncio.sleep(5.0), 0.01)

    with pytest.raises(TimeoutError):
        await unless_the_call_fails(call, times_out())
    call.cancel()
