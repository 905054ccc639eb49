"""The HTTP server's lingering close, over real sockets on 127.0.0.1.

A connection closed after an error answer (a 400, a GOAWAY) whose peer is
still sending must not be reset before the peer can read that answer: the
server shuts its write side, drops what still comes, and closes once the
peer stops, goes silent, has sent too much, or the linger time is up.  The
lingering connections are counted and bounded, and none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator

import h2.errors

from reference_impl.transport.http.limits import HttpGuards
from reference_impl.transport.http.server import HttpRequestServer
from tests.fuzz.http_targets import RecordingSink

WAIT = 5.0
CL_TE = b"POST /v1/rpc/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
ENHANCE_YOUR_CALM = int(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)


@contextlib.asynccontextmanager
async def _serving(
    guards: HttpGuards, sockets: int = 1
) -> AsyncIterator[tuple[HttpRequestServer, list[socket.socket]]]:
    """A server with these guards serving ``echo``, and ``sockets`` connected to it; all closed afterwards."""
    server = HttpRequestServer(RecordingSink(None), guards=guards)
    server.endpoints.add("echo")
    await server.start()
    socks: list[socket.socket] = []
    try:
        for _ in range(sockets):
            sock = socket.create_connection((server.host, server.port), timeout=WAIT)
            sock.setblocking(False)
            socks.append(sock)
        yield server, socks
    finally:
        for sock in socks:
            sock.close()
        await server.close()


async def _send_for(sock: socket.socket, seconds: float, chunk: bytes, pause: float = 0.0) -> tuple[int, bool]:
    """Keep sending ``chunk`` for ``seconds`` (as a flood or a dribble); bytes sent, and whether a send was refused."""
    loop = asyncio.get_running_loop()
    sent, ends = 0, time.monotonic() + seconds
    while time.monotonic() < ends:
        try:
            await asyncio.wait_for(loop.sock_sendall(sock, chunk), 0.2)
        except TimeoutError:
            continue
        except OSError:
            return sent, True
        sent += len(chunk)
        await asyncio.sleep(pause)
    return sent, False


async def _read_all(sock: socket.socket, limit: float = WAIT) -> tuple[bytes, str]:
    """Everything the server sent, and how the connection ended: ``eof`` or ``reset`` (or ``open`` at the limit)."""
    loop = asyncio.get_running_loop()
    data = b""
    ends = time.monotonic() + limit
    while time.monotonic() < ends:
        try:
            part = await asyncio.wait_for(loop.sock_recv(sock, 65536), ends - time.monotonic())
        except TimeoutError:
            return data, "open"
        except ConnectionResetError:
            return data, "reset"
        if not part:
            return data, "eof"
        data += part
    return data, "open"


async def _until(condition: object, limit: float = WAIT) -> None:
    ends = time.monotonic() + limit
    while not condition() and time.monotonic() < ends:  # type: ignore[operator]
        await asyncio.sleep(0.01)


async def test_an_h1_400_ends_with_a_fin_under_a_body_the_server_did_not_read() -> None:
    """The request comes with 600 KB more than the server reads before its 400: a FIN follows the answer, no reset.

    Closed at once, the socket would still hold the unread bytes and the
    kernel would reset the connection, which can discard the answer at the
    peer before it is read.
    """
    async with _serving(HttpGuards(linger_time=2.0, linger_timeout=0.5)) as (server, (sock,)):
        await asyncio.get_running_loop().sock_sendall(sock, CL_TE + b"x" * 600_000)
        await asyncio.sleep(0.3)  # read only once the server has answered and closed
        data, ended = await _read_all(sock)
        assert data.startswith(b"HTTP/1.1 400 ") and b"connection: close" in data
        assert ended == "eof", f"the answer's connection ended with a {ended}"
        await _until(lambda: not server.connections)
        assert not server.connections and not server.lingering, "a lingering connection was left behind"


def _rapid_reset_flood(streams: int) -> bytes:
    """The preface, then HEADERS (a complete request) and RST_STREAM on ever new streams."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    block = bytes.fromhex("8386") + b"\x01\x01x" + b"\x04\x0c/v1/rpc/echo"  # POST, http, :authority x, :path
    frames = [preface]
    for stream_id in range(1, 2 * streams, 2):
        frames.append(len(block).to_bytes(3, "big") + b"\x01\x05" + struct.pack(">I", stream_id) + block)
        frames.append(b"\x00\x00\x04\x03\x00" + struct.pack(">I", stream_id) + struct.pack(">I", 8))
    return b"".join(frames)


def _goaway_codes(data: bytes) -> list[int]:
    codes = []
    position = 0
    while position + 9 <= len(data):
        length = int.from_bytes(data[position : position + 3], "big")
        if data[position + 3] == 0x7:
            codes.append(int.from_bytes(data[position + 13 : position + 17], "big"))
        position += 9 + length
    return codes


async def test_an_h2_goaway_reaches_a_rapid_reset_peer_whose_flood_was_not_read() -> None:
    """Rapid reset: the GOAWAY ENHANCE_YOUR_CALM is read after the fact, the flood's unread rest notwithstanding."""
    async with _serving(HttpGuards(h2_reset_burst=20, h2_reset_rate=0.0)) as (server, (sock,)):
        await asyncio.get_running_loop().sock_sendall(sock, _rapid_reset_flood(12_000))  # ~500 KB
        await asyncio.sleep(0.3)
        data, ended = await _read_all(sock)
        codes = _goaway_codes(data)
        assert codes == [ENHANCE_YOUR_CALM] and ended == "eof", f"GOAWAY codes read: {codes}, then a {ended}"
        await _until(lambda: not server.connections)
        assert not server.connections and not server.lingering


async def test_an_h2_goaway_is_read_while_the_peer_floods_on() -> None:
    async with _serving(HttpGuards(h2_reset_burst=20, h2_reset_rate=0.0)) as (server, (sock,)):
        sender = asyncio.ensure_future(_send_for(sock, 0.8, _rapid_reset_flood(200), pause=0.005))
        data, _ = await _read_all(sock)
        await sender
        assert ENHANCE_YOUR_CALM in _goaway_codes(data)
        await _until(lambda: not server.connections)
        assert not server.connections and not server.lingering


async def test_lingering_ends_when_the_peer_goes_silent() -> None:
    async with _serving(HttpGuards(linger_time=5.0, linger_timeout=0.2)) as (server, (sock,)):
        await asyncio.get_running_loop().sock_sendall(sock, CL_TE)
        started = time.monotonic()
        data, ended = await _read_all(sock)
        assert data.startswith(b"HTTP/1.1 400 ") and ended == "eof"
        assert server.connections_accepted == 1
        await _until(lambda: not server.connections)
        took = time.monotonic() - started
        assert not server.connections and 0.15 <= took < 2.0, f"closed after {took:.2f} s"


async def test_lingering_ends_at_its_time_for_a_peer_that_never_stops() -> None:
    async with _serving(HttpGuards(linger_time=0.5, linger_timeout=1.0)) as (server, (sock,)):
        await asyncio.get_running_loop().sock_sendall(sock, CL_TE)
        started = time.monotonic()
        dribble = asyncio.ensure_future(_send_for(sock, 3.0, b"y" * 64, pause=0.05))  # never silent for 1 s
        await _until(lambda: bool(server.lingering))
        await _until(lambda: not server.connections)
        took = time.monotonic() - started
        dribble.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dribble
        assert not server.connections and 0.4 <= took < 1.5, f"closed after {took:.2f} s"


async def test_lingering_ends_once_the_peer_sends_more_than_its_bytes() -> None:
    async with _serving(HttpGuards(linger_time=5.0, linger_timeout=5.0, linger_bytes=64 * 1024)) as (server, (sock,)):
        await asyncio.get_running_loop().sock_sendall(sock, CL_TE)
        started = time.monotonic()
        flood = asyncio.ensure_future(_send_for(sock, 3.0, b"z" * 16384))
        await _until(lambda: server.connections_accepted == 1)
        await _until(lambda: not server.connections)
        took = time.monotonic() - started
        flood.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flood
        assert not server.connections and took < 1.5, f"closed after {took:.2f} s"


async def test_lingering_connections_are_bounded_beyond_which_a_close_is_immediate() -> None:
    async with _serving(HttpGuards(linger_time=3.0, linger_timeout=3.0, max_lingering=2), sockets=4) as (server, socks):
        for sock in socks:
            await asyncio.get_running_loop().sock_sendall(sock, CL_TE)
        await _until(lambda: server.connections_accepted == 4 and len(server.connections) <= 2, limit=2.0)
        assert len(server.lingering) == 2 and len(server.connections) == 2, "lingering beyond max_lingering"
        for sock in socks:
            data, _ = await _read_all(sock, limit=0.2)
            assert data.startswith(b"HTTP/1.1 400 ")  # all answered; two of them closed at once
        await server.close()  # a closing server does not wait out the linger
        assert not server.connections and not server.lingering


async def test_lingering_off_closes_at_once() -> None:
    async with _serving(HttpGuards(linger_time=None, linger_timeout=3.0)) as (server, (sock,)):
        await asyncio.get_running_loop().sock_sendall(sock, CL_TE)
        await _until(lambda: server.connections_accepted == 1 and not server.connections, limit=1.0)
        assert server.connections_accepted == 1 and not server.connections and not server.lingering
