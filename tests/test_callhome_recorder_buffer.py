"""The call-home listener's fixed receive buffer (ROB-SLOW-READER): what a worker can park in the suite's kernel
while the suite reads nothing is that buffer, not whatever autotuning would grow it to."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from fixtures.judge import two_part
from fixtures.judge.control import CallHomeHandshake
from fixtures.probes.callhome_recorder import CallHomeRecorder

RECEIVE_BUFFER = 64 * 1024
KERNEL_DEFAULT_RECEIVE_BUFFER = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[1])
WRITER_SEND_BUFFER = 16 * 1024


async def _parked_bytes(recorder: CallHomeRecorder) -> tuple[int, int]:
    """(SO_RCVBUF of the accepted connection, bytes a writer got into the connection while nobody read it)."""
    _, future = recorder.expect("ctx", "subject-1")
    writer = socket.create_connection(("127.0.0.1", recorder.port))
    try:
        writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WRITER_SEND_BUFFER)
        writer.sendall(two_part.encode(CallHomeHandshake("subject-1").to_json_bytes()))
        session = await asyncio.wait_for(future, 5.0)
        session.writer.transport.pause_reading()  # type: ignore[attr-defined]
        accepted = session.writer.get_extra_info("socket")
        writer.setblocking(False)
        parked, chunk = 0, b"x" * 4096
        for _ in range(10_000):  # at most 40 MB: far more than any buffer here
            try:
                parked += writer.send(chunk)
            except BlockingIOError:
                await asyncio.sleep(0.05)  # let in-flight segments land, then try once more
                try:
                    parked += writer.send(chunk)
                except BlockingIOError:
                    break
        return accepted.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), parked
    finally:
        writer.close()


@pytest.mark.asyncio
async def test_a_receive_buffer_is_fixed_from_the_listening_socket_on():
    recorder = CallHomeRecorder(receive_buffer=RECEIVE_BUFFER)
    await recorder.start()
    try:
        rcvbuf, parked = await _parked_bytes(recorder)
    finally:
        await recorder.close()
    assert rcvbuf == 2 * RECEIVE_BUFFER  # Linux doubles the value asked for (its bookkeeping overhead)
    # What the worker side could hand over without being read: our receive buffer and its own send buffer.
    assert parked <= 2 * RECEIVE_BUFFER + 4 * WRITER_SEND_BUFFER, parked


@pytest.mark.asyncio
async def test_without_one_the_kernel_default_applies():
    recorder = CallHomeRecorder()
    await recorder.start()
    try:
        rcvbuf, _ = await _parked_bytes(recorder)
    finally:
        await recorder.close()
    assert rcvbuf >= KERNEL_DEFAULT_RECEIVE_BUFFER
