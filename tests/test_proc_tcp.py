"""The kernel's TCP table read right: addresses as it prints them, and the bytes a peer has not read yet."""

from __future__ import annotations

import socket
import time

import pytest

from fixtures.proc_tcp import proc_address, tcp_sockets, unread_by_peer


def test_proc_address_is_printed_as_proc_net_tcp_prints_it() -> None:
    little_endian = socket.htonl(1) != 1
    assert proc_address("127.0.0.1", 80) == ("0100007F:0050" if little_endian else "7F000001:0050")
    loopback6 = "00000000" * 3 + ("01000000" if little_endian else "00000001")
    assert proc_address("::1", 443) == f"{loopback6}:01BB"


def _unread_settled(sender: socket.socket, expected: int) -> int | None:
    """What the table says is unread, once it says ``expected`` (loopback delivers at once; bounded)."""
    deadline = time.monotonic() + 5.0
    unread = unread_by_peer(sender.getsockname(), sender.getpeername())
    while unread != expected and time.monotonic() < deadline:
        time.sleep(0.01)
        unread = unread_by_peer(sender.getsockname(), sender.getpeername())
    return unread


@pytest.mark.parametrize("loopback", ["127.0.0.1", "::1"])  # some Dynamo callers listen for the call-home on ::1
def test_bytes_the_peer_has_not_read_are_counted_until_it_reads_them(loopback: str) -> None:
    family = socket.AF_INET6 if ":" in loopback else socket.AF_INET
    with socket.create_server((loopback, 0), family=family) as listener:
        sender = socket.create_connection(listener.getsockname()[:2])
        receiver, _ = listener.accept()
        with sender, receiver:
            assert _unread_settled(sender, 0) == 0
            sender.sendall(b"x" * 1000)
            assert _unread_settled(sender, 1000) == 1000
            received = b""
            while len(received) < 1000:
                received += receiver.recv(1000)
            assert _unread_settled(sender, 0) == 0


def test_nothing_is_concluded_about_a_connection_the_table_does_not_show() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    assert unread_by_peer(("127.0.0.1", port), ("127.0.0.1", port)) is None


def test_asked_for_ports_only_the_sockets_at_them_are_listed() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener, socket.create_server(("127.0.0.1", 0)) as other:
        sender = socket.create_connection(listener.getsockname()[:2])
        receiver, _ = listener.accept()
        with sender, receiver:
            ends = (proc_address(*sender.getsockname()), proc_address(*sender.getpeername()))
            listed = tcp_sockets((sender.getsockname()[1],))
            assert ends in listed and ends[::-1] in listed, "both ends of the connection at the port asked for"
            assert all(sender.getsockname()[1] in _ports(pair) for pair in listed)
            assert ends not in tcp_sockets((other.getsockname()[1],))
            assert ends in tcp_sockets(), "without ports: every socket"


def _ports(pair: tuple[str, str]) -> set[int]:
    return {int(end.rsplit(":", 1)[1], 16) for end in pair}
