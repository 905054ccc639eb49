"""The kernel's TCP table read right: addresses as it prints them, and the bytes a peer has not read yet.

Every reading test (``source``) runs on both sources: the socket-diagnostics interface, and the text tables it
falls back on.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from fixtures import proc_tcp, sock_diag
from fixtures.proc_tcp import proc_address, tcp_sockets, unread_by_peer


@pytest.fixture(params=["sock_diag", "tables"])
def source(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The source the readings come from: the netlink interface, or (where it refuses) the text tables."""
    if request.param == "tables":

        def refused(family: int) -> Iterator[sock_diag.DiagSocket]:
            raise PermissionError("socket diagnostics refused here")

        monkeypatch.setattr(sock_diag, "dump", refused)
    else:
        assert list(sock_diag.dump(socket.AF_INET)) is not None  # the interface answers on this machine
    yield request.param


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


@pytest.mark.usefixtures("source")
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


@pytest.mark.usefixtures("source")
def test_nothing_is_concluded_about_a_connection_the_table_does_not_show() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    assert unread_by_peer(("127.0.0.1", port), ("127.0.0.1", port)) is None


@pytest.mark.usefixtures("source")
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


def test_both_sources_list_the_same_open_sockets_and_queues() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sender = socket.create_connection(listener.getsockname()[:2])
        receiver, _ = listener.accept()
        with sender, receiver:
            sender.sendall(b"x" * 1000)
            port = {listener.getsockname()[1]}
            deadline = time.monotonic() + 5.0
            diagnosed = proc_tcp._diagnosed(port, set(proc_tcp.FAMILIES))
            while diagnosed != proc_tcp._from_tables(port, set(proc_tcp.FAMILIES)) and time.monotonic() < deadline:
                time.sleep(0.01)
                diagnosed = proc_tcp._diagnosed(port, set(proc_tcp.FAMILIES))
            assert diagnosed == proc_tcp._from_tables(port, set(proc_tcp.FAMILIES))
            assert len(diagnosed) == 3, "the listener and both ends of the connection"
            assert {entry.state for entry in diagnosed.values()} == {proc_tcp.TCP_ESTABLISHED, sock_diag.TCP_LISTEN}


@pytest.mark.usefixtures("source")
def test_a_connection_closed_at_both_ends_is_not_listed() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sender = socket.create_connection(listener.getsockname()[:2])
        receiver, _ = listener.accept()
        ends = (proc_address(*sender.getsockname()), proc_address(*sender.getpeername()))
        assert ends in tcp_sockets((sender.getsockname()[1],))
        sender.close()  # the active closer's end goes to TIME_WAIT
        receiver.recv(1)
        receiver.close()
        deadline = time.monotonic() + 5.0
        while ends in tcp_sockets((int(ends[0].rsplit(":", 1)[1], 16),)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ends not in tcp_sockets((int(ends[0].rsplit(":", 1)[1], 16),))
        assert ends[::-1] not in tcp_sockets((int(ends[0].rsplit(":", 1)[1], 16),))


@pytest.mark.usefixtures("source")
def test_only_the_families_asked_for_are_listed() -> None:
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as listener:
        port = listener.getsockname()[1]
        assert tcp_sockets((port,), families=(socket.AF_INET6,)), "the IPv6 listener"
        assert not tcp_sockets((port,), families=(socket.AF_INET,))
