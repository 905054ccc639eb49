"""A lean, wire-level load generator for the TCP and NATS request planes (one process, no asyncio).

Why: the reference ``Caller`` costs about as much CPU per request as a worker does, so a
benchmark driven by it measures its own generator as much as the worker (issue 16).  This
generator speaks the same bytes with far less Python per request:

* every request frame is built once by the reference codecs (``encode_request``,
  ``build_envelope``) with a placeholder call number, and per call only that number is
  substituted (same length, so every length field stays right): the request id and the
  call-home subject are UUID-shaped strings ``<random prefix><12 hex digits of the call>``;
* one pipelined request connection; the requests started in one poll turn leave in one
  ``send``; TCP ACKs are matched first-in first-out, NATS replies by their inbox subject
  (``HPUB`` with the headers nats-py writes; a plain NATS client connection, no library);
* one call-home listener; each accepted connection is read with ``os.read`` on its raw
  descriptor from an ``epoll`` loop and closed (FIN) after the sentinel.

Every response is still checked as the Locust profiles check it: handshake subject and
``stream_type``, ``{"error": null}`` prologue, every item decoded and compared (echo equal to
the request; stream items numbered in order with the right size), ``complete_final`` before
the sentinel.  A call that fails any of this counts as an error, with its reason.

Run as a child of ``loadtests.benchmark``: once connected it prints ``{"ready": true}`` and
reads ``START STOP`` (monotonic instants, shared by every generator process of a run, so
several load one worker over the same window) from stdin, then prints one JSON line with what
it measured between them.  By hand, give the window on the command line::

    python -m loadtests.wire_load --discovery DIR --workload unary --concurrency 32 \
        --start-at T --stop-at T2
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import select
import socket
import struct
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from reference_impl.discovery.file_store import FileDiscovery
from reference_impl.planes import plane_of_transport
from reference_impl.protocol import annotated
from reference_impl.protocol.envelope import build_envelope
from reference_impl.protocol.messages import ConnectionInfo, RequestControlMessage, TcpStreamConnectionInfo
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.routing import EndpointId, parse_tcp_transport
from reference_impl.wire.request_frame import encode_request

PRELUDE = struct.Struct(">QQQ")
U32 = struct.Struct(">I")
CALL_DIGITS = 12
PLACEHOLDER = b"z" * CALL_DIGITS  # not hex: cannot occur in the rest of the frame by accident
READ_SIZE = 256 * 1024
LISTEN_BACKLOG = 4096
CONNECT_TIMEOUT = 5.0
POLL_INTERVAL = 0.05  # at most this late to notice the end of the window
PROLOGUE_OK = b'{"error":null}'
SENTINEL = b'"sentinel"'
FINAL_KEY = "complete_final"


class CallFailed(Exception):
    """The worker answered, but not what the standard endpoint must answer."""


@dataclass
class Workload:
    """What one call asks for and how its items are checked."""

    endpoint: str  # "echo" or "stream"
    request: Any
    items: int
    item_size: int = 0

    def check(self, index: int, value: Any) -> None:
        if self.endpoint == "echo":
            if value != self.request:
                raise CallFailed(f"echo returned {str(value)[:80]!r}")
        elif not isinstance(value, dict) or value.get("seq") != index or len(value.get("pad", "")) != self.item_size:
            raise CallFailed(f"stream item {index} was {str(value)[:80]!r}")


def workload_named(name: str, *, text: str = "x" * 64, items: int = 1000, item_size: int = 32) -> Workload:
    if name == "unary":
        return Workload("echo", {"text": text}, 1)
    if name == "stream":
        return Workload("stream", {"count": items, "size": item_size}, items, item_size)
    raise ValueError(f"unknown workload {name!r} (unary, stream)")


@dataclass
class Result:
    """What one generator process saw inside the measurement window."""

    requests: int = 0  # calls that ended inside the window, every check passed
    errors: int = 0
    items: int = 0  # items received and checked inside the window (of any call: long streams span windows)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process, user + system, over the window
    late_s: float = 0.0  # how long after the window opened this process started counting
    latencies_ms: list[float] = field(default_factory=list)
    first_error: str | None = None


class _CallHome:
    """The caller's end of one call-home connection, as a small state machine over raw frames."""

    __slots__ = ("buffer", "call", "frames", "items")

    def __init__(self) -> None:
        self.buffer = b""
        self.call = -1  # call number, known after the handshake
        self.frames = 0
        self.items = 0


class WireLoad:
    """Closed-loop load on one worker endpoint over the TCP or NATS request plane."""

    def __init__(
        self,
        discovery_dir: str,
        endpoint: EndpointId,
        workload: Workload,
        concurrency: int,
        *,
        nats_url: str | None = None,
        nats_credentials: tuple[str, str] | None = None,
    ) -> None:
        records = FileDiscovery(discovery_dir).records(endpoint)
        if not records:
            raise RuntimeError(f"no instance of {endpoint} in {discovery_dir}")
        record = records[0]
        plane = plane_of_transport(record.transport_kind)
        self.plane = plane.name if plane is not None else record.transport_kind
        if self.plane not in ("tcp", "nats"):
            raise RuntimeError(f"the wire generator speaks the TCP and NATS planes; {endpoint} serves {self.plane}")
        if self.plane == "nats" and not nats_url:
            raise RuntimeError(f"{endpoint} serves on NATS: give the NATS server's URL")
        self.codec = PayloadCodec.parse(record.request_plane_codec)
        self.workload = workload
        self.concurrency = concurrency
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(LISTEN_BACKLOG)
        self.listener.setblocking(False)
        self.callhome_address = "{}:{}".format(*self.listener.getsockname()[:2])
        self.id_prefix = str(uuid.uuid4())[: 36 - CALL_DIGITS]
        self.subject_prefix = str(uuid.uuid4())[: 36 - CALL_DIGITS]
        self.inbox = f"_INBOX.{uuid.uuid4().hex}"
        if self.plane == "tcp":
            target = parse_tcp_transport(record.transport_address)
            self.requests = socket.create_connection((target.host, target.port), timeout=CONNECT_TIMEOUT)
            self.template = self._tcp_template(target.path)
        else:
            assert nats_url is not None
            # Imported here: the NATS client module brings nats-py and aiohttp (about 0.5 s of CPU), which a
            # TCP generator, started once per measurement, never needs; the constant alone is wanted.
            from reference_impl.transport.nats.client import DYNAMO_DEFAULT_CREDENTIALS

            self.requests = self._nats_connect(nats_url, nats_credentials or DYNAMO_DEFAULT_CREDENTIALS)
            self.template = self._nats_template(record.transport_address)
        self.requests.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.requests.settimeout(None)  # blocking sends: at most `concurrency` small frames are ever unacknowledged
        self.epoll = select.epoll()
        self.epoll.register(self.listener.fileno(), select.EPOLLIN)
        self.epoll.register(self.requests.fileno(), select.EPOLLIN)
        self.next_call = 0
        self.started_ns: dict[int, int] = {}  # call -> perf_counter_ns when it was sent
        self.unacked: collections.deque[int] = collections.deque()
        self.ack_buffer = b""
        self.streams: dict[int, _CallHome] = {}  # fd -> call-home state
        self.to_send: list[bytes] = []

    def _envelope(self) -> tuple[str, bytes]:
        """The request id and envelope, built by the reference codecs, with :data:`PLACEHOLDER` for the call."""
        request_id = self.id_prefix + PLACEHOLDER.decode()
        subject = self.subject_prefix + PLACEHOLDER.decode()
        info = TcpStreamConnectionInfo(address=self.callhome_address, subject=subject, context=request_id)
        control = RequestControlMessage(
            id=request_id, connection_info=ConnectionInfo.for_tcp(info), payload_codec=self.codec.value
        )
        return request_id, build_envelope(control, self.workload.request)

    def _tcp_template(self, path: str) -> bytes:
        request_id, envelope = self._envelope()
        frame = encode_request(path, {"request-id": request_id, "x-endpoint-path": path}, envelope)
        if frame.count(PLACEHOLDER) != 4:  # id in the headers, the control message, its call-home context; subject
            raise RuntimeError("request template: placeholder not found where expected")
        return frame

    def _nats_template(self, subject: str) -> bytes:
        """``HPUB <subject> <inbox>.<call> <header bytes> <total bytes>``, the headers nats-py writes, the envelope."""
        request_id, envelope = self._envelope()
        headers = f"NATS/1.0\r\nrequest-id: {request_id}\r\n\r\n".encode()
        reply = f"{self.inbox}.{PLACEHOLDER.decode()}"
        line = f"HPUB {subject} {reply} {len(headers)} {len(headers) + len(envelope)}\r\n".encode()
        frame = line + headers + envelope + b"\r\n"
        if frame.count(PLACEHOLDER) != 5:  # the reply subject, the header, the control message twice, the subject
            raise RuntimeError("request template: placeholder not found where expected")
        return frame

    def _nats_connect(self, url: str, credentials: tuple[str, str]) -> socket.socket:
        """A plain NATS client connection: INFO, CONNECT (headers, no echo), a subscription to our inbox, PING/PONG."""
        host, _, port = url.removeprefix("nats://").rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT)
        reader = sock.makefile("rb")
        info = reader.readline()
        if not info.startswith(b"INFO "):
            raise RuntimeError(f"not a NATS server at {url}: {info[:80]!r}")
        options = {
            "verbose": False,
            "pedantic": False,
            "headers": True,
            "no_responders": True,
            "echo": False,
            "protocol": 1,
            "lang": "python-wire-load",
            "version": "0",
            "user": credentials[0],
            "pass": credentials[1],
        }
        sock.sendall(f"CONNECT {json.dumps(options)}\r\nSUB {self.inbox}.* 1\r\nPING\r\n".encode())
        answer = reader.readline()
        if answer != b"PONG\r\n":
            raise RuntimeError(f"NATS server at {url} refused the connection: {answer[:200]!r}")
        reader.close()  # the socket stays open (makefile holds a reference only)
        return sock

    # -- the loop -------------------------------------------------------------------------------

    def run(self, start_at: float, stop_at: float) -> Result:
        """Load from now until ``stop_at`` (monotonic); count what ends in ``[start_at, stop_at]``."""
        result = Result()
        self.measuring = False
        self.result = result
        for _ in range(self.concurrency):
            self._start_call()
        self._flush()
        cpu_at_start = 0.0
        listener_fd, requests_fd = self.listener.fileno(), self.requests.fileno()
        while True:
            now = time.monotonic()
            if not self.measuring and now >= start_at:
                self.measuring = True
                cpu_at_start = time.process_time()
                result.late_s = now - start_at
            if now >= stop_at:
                break
            for fd, _ in self.epoll.poll(POLL_INTERVAL):
                if fd == listener_fd:
                    self._accept()
                elif fd == requests_fd:
                    self._read_acks()
                else:
                    self._read_stream(fd)
            self._flush()
        result.cpu_seconds = time.process_time() - cpu_at_start
        result.seconds = stop_at - start_at
        return result

    def _start_call(self) -> None:
        call = self.next_call
        self.next_call += 1
        self.to_send.append(self.template.replace(PLACEHOLDER, b"%012x" % call))
        if self.plane == "tcp":
            self.unacked.append(call)  # TCP ACKs come back in request order; NATS replies name their call
        self.started_ns[call] = time.perf_counter_ns()

    def _flush(self) -> None:
        if self.to_send:
            frames, self.to_send = self.to_send, []
            self.requests.sendall(frames[0] if len(frames) == 1 else b"".join(frames))

    def _end_call(self, call: int, items: int, error: str | None) -> None:
        started = self.started_ns.pop(call, None)
        if started is None:
            return
        if self.measuring:
            result = self.result
            if error is None:
                result.requests += 1
                result.latencies_ms.append((time.perf_counter_ns() - started) / 1e6)
            else:
                result.errors += 1
                result.first_error = result.first_error or error
        self._start_call()

    def _read_acks(self) -> None:
        data = self.requests.recv(READ_SIZE)
        if not data:
            raise RuntimeError(
                f"the {'worker' if self.plane == 'tcp' else 'NATS server'} closed the request connection"
            )
        if self.plane == "nats":
            self._read_nats(self.ack_buffer + data)
            return
        buffer = self.ack_buffer + data
        position = 0
        while len(buffer) - position >= 4:
            size = U32.unpack_from(buffer, position)[0]
            end = position + 4 + size
            if end > len(buffer):
                break
            call = self.unacked.popleft()
            if size:  # a rejection: the call is over
                self._end_call(call, 0, f"rejected: {buffer[position + 4 : end][:120]!r}")
            position = end
        self.ack_buffer = buffer[position:]

    def _read_nats(self, buffer: bytes) -> None:
        """Replies on our inbox (``MSG``: empty payload = ACK; ``HMSG``: a service error), and the server's PINGs."""
        position = 0
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                break
            line = buffer[position:line_end]
            if line.startswith(b"MSG ") or line.startswith(b"HMSG "):
                fields = line.split()
                size = int(fields[-1])
                end = line_end + 2 + size
                if end + 2 > len(buffer):
                    break
                header_size = int(fields[-2]) if fields[0] == b"HMSG" else 0
                payload = buffer[line_end + 2 + header_size : end]
                call = int(fields[1][-CALL_DIGITS:], 16)
                if header_size or payload:  # a rejection or a service error (no responders): the call is over
                    self._end_call(call, 0, f"rejected: {buffer[line_end + 2 : end][:160]!r}")
                position = end + 2
                continue
            if line == b"PING":
                self.to_send.append(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise RuntimeError(f"NATS server error: {line[:200]!r}")
            position = line_end + 2
        self.ack_buffer = buffer[position:]

    def _accept(self) -> None:
        while True:
            try:
                fd, _ = self.listener._accept()  # type: ignore[attr-defined]  # raw descriptor, no socket object
            except BlockingIOError:
                return
            self.streams[fd] = _CallHome()
            self.epoll.register(fd, select.EPOLLIN)

    def _read_stream(self, fd: int) -> None:
        stream = self.streams[fd]
        try:
            data = os.read(fd, READ_SIZE)
        except OSError as exc:
            self._close_stream(fd, stream, f"call-home read failed: {exc!r}")
            return
        if not data:
            self._close_stream(fd, stream, "call-home closed before the sentinel")
            return
        buffer = stream.buffer + data if stream.buffer else data
        position, available = 0, len(buffer)
        try:
            while available - position >= 24:
                header_len, data_len, _ = PRELUDE.unpack_from(buffer, position)
                header_at = position + 24
                end = header_at + header_len + data_len
                if end > available:
                    break
                if self._frame(
                    stream, buffer[header_at : header_at + header_len], buffer[header_at + header_len : end]
                ):
                    self._close_stream(fd, stream, None)
                    return
                position = end
        except CallFailed as exc:
            self._close_stream(fd, stream, str(exc))
            return
        stream.buffer = buffer[position:]

    def _frame(self, stream: _CallHome, header: bytes, data: bytes) -> bool:
        """Check one frame; True after the sentinel of a complete stream."""
        number = stream.frames
        stream.frames += 1
        if number == 0:
            handshake = json.loads(header)
            subject = handshake.get("subject", "")
            if handshake.get("stream_type") != "response" or not subject.startswith(self.subject_prefix):
                raise CallFailed(f"unexpected handshake {header[:120]!r}")
            stream.call = int(subject[-CALL_DIGITS:], 16)
            return False
        if number == 1:
            if header != PROLOGUE_OK and json.loads(header).get("error") is not None:
                raise CallFailed(f"prologue error {header[:120]!r}")
            return False
        if data:
            wrapper = self.codec.decode(data)
            if wrapper.get(FINAL_KEY):
                if stream.items != self.workload.items:
                    raise CallFailed(f"complete_final after {stream.items} items, expected {self.workload.items}")
                stream.frames = -1_000_000  # only the sentinel may follow
                return False
            item = annotated.unwrap(wrapper.get("data"))
            if item.error is not None:
                raise CallFailed(f"error item: {item.error}")
            self.workload.check(stream.items, item.data)
            stream.items += 1
            if self.measuring:
                self.result.items += 1
            return False
        if header == SENTINEL and stream.frames < 0:
            return True
        raise CallFailed(f"unexpected frame {header[:80]!r} after {stream.items} items")

    def _close_stream(self, fd: int, stream: _CallHome, error: str | None) -> None:
        del self.streams[fd]
        os.close(fd)  # FIN to the worker; epoll forgets the descriptor
        if stream.call >= 0:
            self._end_call(stream.call, stream.items, error)

    def close(self) -> None:
        for fd in list(self.streams):
            os.close(fd)
        self.streams.clear()
        self.epoll.close()
        self.requests.close()
        self.listener.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--discovery", required=True, help="DYN_FILE_KV of the worker")
    parser.add_argument("--nats-url", default=None, help="NATS server, for a worker on the NATS plane")
    parser.add_argument("--namespace", default="loadtest")
    parser.add_argument("--component", default="backend")
    parser.add_argument("--workload", default="unary", help="unary (echo of 64 B) or stream")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight")
    parser.add_argument("--stream-items", type=int, default=1000)
    parser.add_argument("--stream-item-size", type=int, default=32)
    parser.add_argument(
        "--start-at",
        type=float,
        default=None,
        help="time.monotonic() at which counting starts (default: print a ready line, read 'START STOP' from stdin)",
    )
    parser.add_argument("--stop-at", type=float, default=None, help="time.monotonic() at which the run ends")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    workload = workload_named(args.workload, items=args.stream_items, item_size=args.stream_item_size)
    endpoint = EndpointId(args.namespace, args.component, workload.endpoint)
    load = WireLoad(args.discovery, endpoint, workload, args.concurrency, nats_url=args.nats_url)
    try:
        if args.start_at is None or args.stop_at is None:
            # Connected and ready: the window is set by the parent once every generator is (slow
            # starts on a loaded machine must not eat into it).
            sys.stdout.write(json.dumps({"ready": True}) + "\n")
            sys.stdout.flush()
            start_at, stop_at = (float(value) for value in sys.stdin.readline().split())
        else:
            start_at, stop_at = args.start_at, args.stop_at
        result = load.run(start_at, stop_at)
    finally:
        load.close()
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
