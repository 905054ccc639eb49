"""The caller's call-home listener bounds what one worker can make it buffer."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest

from reference_impl.caller import CallerConfig
from reference_impl.protocol.messages import (
    SENTINEL,
    CallHomeHandshake,
    ResponseStreamPrologue,
    encode_final,
    encode_item,
)
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.routing import parse_callhome_address
from reference_impl.transport.callhome.server import PendingResponse, ResponseStreamServer
from reference_impl.wire import two_part

LIMIT = 4096
CODEC = PayloadCodec.JSON


@pytest.fixture
async def listener() -> AsyncIterator[ResponseStreamServer]:
    server = ResponseStreamServer(max_message_size=LIMIT)
    await server.start()
    yield server
    await server.close()


async def _call_home(pending: PendingResponse) -> asyncio.StreamWriter:
    host, port = parse_callhome_address(pending.info.address)
    _, writer = await asyncio.open_connection(host, port)
    writer.write(two_part.encode(CallHomeHandshake(pending.info.subject).to_json_bytes()))
    writer.write(two_part.encode(ResponseStreamPrologue().to_json_bytes()))
    return writer


def _item(value: object) -> bytes:
    return two_part.encode(data=encode_item(CODEC, {"data": value}))


async def test_a_frame_over_the_limit_fails_its_stream_at_once_and_no_other(listener: ResponseStreamServer) -> None:
    hostile = listener.register("ctx-hostile", CODEC)
    honest = listener.register("ctx-honest", CODEC)
    hostile_writer = await _call_home(hostile)
    honest_writer = await _call_home(honest)
    hostile_writer.write(_item(0) + struct.pack(">QQQ", 0, LIMIT, 0) + b"x" * 100)  # declares more than the limit
    await hostile_writer.drain()
    first = await asyncio.wait_for(hostile.next_item(), 5.0)
    with pytest.raises(Exception) as caught:
        await asyncio.wait_for(hostile.next_item(), 5.0)  # fails from the prelude, without waiting for the body
    assert first == {"data": 0}
    assert not isinstance(caught.value, TimeoutError), "the listener waited for the oversized body"
    assert "too large" in str(caught.value) and str(LIMIT) in str(caught.value), caught.value

    for seq in range(3):
        honest_writer.write(_item(seq))
    honest_writer.write(two_part.encode(data=encode_final(CODEC)) + two_part.encode(SENTINEL))
    await honest_writer.drain()
    items = [await asyncio.wait_for(honest.next_item(), 5.0) for _ in range(3)]
    assert items == [{"data": 0}, {"data": 1}, {"data": 2}]
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(honest.next_item(), 5.0)
    for writer in (hostile_writer, honest_writer):
        writer.close()


def test_the_caller_bounds_call_home_frames_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CallerConfig().callhome_max_message_size == two_part.DEFAULT_MAX_FRAME_SIZE
    monkeypatch.setenv("RP_CALLHOME_MAX_MESSAGE_SIZE", "0")
    assert CallerConfig.from_env().callhome_max_message_size is None
    monkeypatch.setenv("RP_CALLHOME_MAX_MESSAGE_SIZE", "1048576")
    assert CallerConfig.from_env().callhome_max_message_size == 1048576
