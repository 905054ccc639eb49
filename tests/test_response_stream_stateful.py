"""A stateful model of the call-home response stream, checked against the reference's sans-IO machines.

Hypothesis plays a worker that may misbehave and a caller that may cancel; the bytes go through
``WorkerStream`` (when it agrees to write them) and reach ``CallerStream`` in arbitrary chunks.
The model, written from the protocol rather than from the reference, says after every step
which events the caller must have reported (each item in order, exactly once), which frames are
violations (anything after the sentinel, items after ``complete_final``, garbage), what the end
of the connection means (complete, cancelled, or an error when ``complete_final`` never came),
and what the worker hears of ``stop`` and ``kill``.

``test_response_stream_machine.py`` checks fixed scenarios and single-shot properties; this
explores interleavings of sends, partial deliveries, cancellations and EOF.
"""

from __future__ import annotations

import enum
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from reference_impl.errors import LocalProtocolError
from reference_impl.protocol.messages import Cancel
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.protocol.response_stream import (
    CallerState,
    CallerStream,
    CancelReceived,
    Event,
    FinalReceived,
    HandshakeReceived,
    ItemReceived,
    PrologueReceived,
    ProtocolViolation,
    SentinelReceived,
    StreamClosed,
    WorkerStream,
)
from reference_impl.wire import two_part
from reference_impl.wire.checksum import xxh3_64
from tests.strategies import item_data

SUBJECT = "call-home-subject"
CALLER_LIMIT = 4096  # items drawn here stay far below it; the oversized frame declares it plus one
WORKER_LIMIT = 64 * 1024  # what WorkerStream accepts from the caller


class Phase(enum.Enum):
    """Where the caller is, as the protocol defines it."""

    AWAIT_HANDSHAKE = "await_handshake"
    AWAIT_PROLOGUE = "await_prologue"
    STREAMING = "streaming"
    COMPLETE = "complete"  # complete_final seen
    DONE = "done"  # sentinel seen
    PROLOGUE_FAILED = "prologue_failed"  # the worker reported an error: nothing more is read
    VIOLATED = "violated"  # the worker broke the protocol: nothing more is read


CALLER_STATE = {
    Phase.AWAIT_HANDSHAKE: CallerState.AWAIT_HANDSHAKE,
    Phase.AWAIT_PROLOGUE: CallerState.AWAIT_PROLOGUE,
    Phase.STREAMING: CallerState.STREAMING,
    Phase.COMPLETE: CallerState.COMPLETE,
    Phase.DONE: CallerState.DONE,
    Phase.PROLOGUE_FAILED: CallerState.FAILED,
    Phase.VIOLATED: CallerState.FAILED,
}
ENDED = (Phase.PROLOGUE_FAILED, Phase.VIOLATED)

# What a well-behaved worker may write next (the WorkerStream contract), from the protocol.
WORKER_OPERATIONS = ("handshake", "prologue", "prologue_error", "item", "final", "sentinel")
WORKER_NEXT = {
    "idle": {"handshake": "handshake_sent"},
    "handshake_sent": {"prologue": "streaming", "prologue_error": "final_sent"},
    "streaming": {"item": "streaming", "final": "final_sent"},
    "final_sent": {"sentinel": "closed"},
    "closed": {},
}


@dataclass(frozen=True)
class Frame:
    """One frame on the wire and what it means to the model."""

    wire: bytes
    meaning: str  # handshake, prologue, item, final, sentinel, garbage, oversized, bad_checksum
    value: Any = None  # the item, or the prologue's error text
    trigger: int = -1  # bytes of the frame after which the caller must react (default: all of them)

    @property
    def reacts_after(self) -> int:
        return len(self.wire) if self.trigger < 0 else self.trigger


def garbage_frames(codec: PayloadCodec) -> dict[str, tuple[bytes, bytes]]:
    """Frames that are a violation wherever the stream is still being read."""
    return {
        "empty frame": (b"", b""),
        "header and data": (b"{}", b"x"),
        "stop from the worker": (b'"stop"', b""),
        "kill from the worker": (b'"kill"', b""),
        "unknown control word": (b'"pause"', b""),
        "item not a map": (b"", codec.encode([1, 2])),
        "item without data": (b"", codec.encode({"data": None, "complete_final": False})),
        "final carrying data": (b"", codec.encode({"data": 1, "complete_final": True})),
        "complete_final not a boolean": (b"", codec.encode({"data": 1, "complete_final": "yes"})),
        "undecodable item": (b"", b"\xc1"),
        "deeply nested header": (b"[" * 3000, b""),
        "lone surrogate in a handshake": (b'{"subject":"\\ud800","stream_type":"response"}', b""),
    }


GARBAGE = sorted(garbage_frames(PayloadCodec.JSON))
deliveries = st.integers(min_value=0, max_value=120)  # bytes delivered right after a write


def expected_reaction(phase: Phase, frame: Frame, verify: bool) -> tuple[Phase, tuple[Any, ...] | None]:
    """The caller's next phase and the event it reports for one frame (normalised, see ``normalise``)."""
    if phase in ENDED:
        return phase, None
    meaning = frame.meaning
    if meaning == "bad_checksum":
        meaning = "garbage" if verify else "item"
    violation = (Phase.VIOLATED, ("violation",))
    if meaning in ("garbage", "oversized") or phase is Phase.DONE:
        return violation
    if phase is Phase.AWAIT_HANDSHAKE:
        return (Phase.AWAIT_PROLOGUE, ("handshake", SUBJECT)) if meaning == "handshake" else violation
    if phase is Phase.AWAIT_PROLOGUE:
        # Any JSON object is a prologue; its "error" says whether the call failed.  A repeated
        # handshake is such an object, without an error (serde ignores unknown fields).
        if meaning == "handshake" or (meaning == "prologue" and frame.value is None):
            return Phase.STREAMING, ("prologue", None)
        if meaning == "prologue":
            return Phase.PROLOGUE_FAILED, ("prologue", frame.value)
        return violation
    if meaning == "sentinel":
        return Phase.DONE, ("sentinel",)
    if phase is Phase.STREAMING and meaning == "item":
        return Phase.STREAMING, ("item", frame.value)
    if phase is Phase.STREAMING and meaning == "final":
        return Phase.COMPLETE, ("final",)
    return violation  # control frames while streaming, anything but the sentinel after the final


def serde_json(value: Any) -> bytes:
    """JSON as serde_json writes it: field order kept, no spaces, UTF-8 rather than escapes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def normalise(event: Event, codec: PayloadCodec) -> tuple[Any, ...]:
    """Events as comparable tuples; items compared by their encoding, so True never passes for 1."""
    if isinstance(event, HandshakeReceived):
        assert event.stream_type == "response"
        return ("handshake", event.subject)
    if isinstance(event, PrologueReceived):
        return ("prologue", event.error)
    if isinstance(event, ItemReceived):
        return ("item", codec.encode(event.data))
    if isinstance(event, FinalReceived):
        return ("final",)
    if isinstance(event, SentinelReceived):
        return ("sentinel",)
    if isinstance(event, ProtocolViolation):
        assert event.reason.strip(), "a violation must say why"
        return ("violation",)
    raise AssertionError(f"unexpected caller event {event!r}")


def outcome(events: list[tuple[Any, ...]], cancelled: bool) -> str:
    """How a consumer reads the stream's end, the way the call-home transport does."""
    if any(e[0] == "prologue" and e[1] is not None for e in events):
        return "prologue error"
    if ("violation",) in events:
        return "violation"
    if ("final",) in events:
        return "complete"
    return "cancelled" if cancelled else "incomplete"


class ResponseStreamModel(RuleBasedStateMachine):
    @initialize(codec=st.sampled_from(PayloadCodec), write_checksum=st.booleans(), verify=st.booleans())
    def start(self, codec: PayloadCodec, write_checksum: bool, verify: bool) -> None:
        self._connect(codec, write_checksum, verify)

    @precondition(lambda self: not self.open)
    @rule(codec=st.sampled_from(PayloadCodec), write_checksum=st.booleans(), verify=st.booleans())
    def next_call(self, codec: PayloadCodec, write_checksum: bool, verify: bool) -> None:
        """The stream ended: the next call gets a new connection and fresh state on both ends."""
        self._connect(codec, write_checksum, verify)

    def _connect(self, codec: PayloadCodec, write_checksum: bool, verify: bool) -> None:
        self.codec = codec
        self.write_checksum = write_checksum
        self.verify = verify
        self.worker = WorkerStream(SUBJECT, codec, write_checksum=write_checksum)
        self.caller = CallerStream(codec, max_message_size=CALLER_LIMIT, verify_checksum=verify)
        # the wire, worker to caller
        self.pending = bytearray()
        self.sent = 0
        self.delivered = 0
        self.in_flight: deque[tuple[int, Frame]] = deque()  # (offset at which the caller reacts, frame)
        self.truncated = False
        # the model
        self.worker_phase = "idle"
        self.phase = Phase.AWAIT_HANDSHAKE
        self.expected: list[tuple[Any, ...]] = []
        self.observed: list[tuple[Any, ...]] = []
        self.final_seen = False
        self.cancel_sent: str | None = None
        self.worker_cancelled: str | None = None
        self.worker_poisoned = False
        self.open = True

    # -- frames, encoded from the protocol ----------------------------------------------------------

    def _encode(self, header: bytes = b"", data: bytes = b"") -> bytes:
        return two_part.encode(header, data, write_checksum=self.write_checksum)

    def _frame(self, operation: str, value: Any = None) -> Frame:
        codec = self.codec
        if operation == "handshake":
            return Frame(self._encode(serde_json({"subject": SUBJECT, "stream_type": "response"})), "handshake")
        if operation in ("prologue", "prologue_error"):
            return Frame(self._encode(serde_json({"error": value})), "prologue", value)
        if operation == "item":
            return Frame(self._encode(data=codec.encode({"data": value, "complete_final": False})), "item", value)
        if operation == "final":
            return Frame(self._encode(data=codec.encode({"complete_final": True})), "final")
        assert operation == "sentinel"
        return Frame(self._encode(b'"sentinel"'), "sentinel")

    def _worker_writes(self, operation: str, value: Any = None) -> None:
        """WorkerStream writes the frame if the protocol allows it now; a misbehaving worker writes it anyway."""
        frame = self._frame(operation, value)
        calls = {
            "handshake": lambda: self.worker.handshake(),
            "prologue": lambda: self.worker.prologue(),
            "prologue_error": lambda: self.worker.prologue(value),
            "item": lambda: self.worker.item(value),
            "final": lambda: self.worker.final(),
            "sentinel": lambda: self.worker.sentinel(),
        }
        allowed = WORKER_NEXT[self.worker_phase]
        if operation in allowed:
            assert calls[operation]() == frame.wire, f"WorkerStream wrote other bytes for {operation}"
            self.worker_phase = allowed[operation]
        else:
            with pytest.raises(LocalProtocolError):
                calls[operation]()
        self._put(frame)

    def _put(self, frame: Frame) -> None:
        self.in_flight.append((self.sent + frame.reacts_after, frame))
        self.pending += frame.wire
        self.sent += len(frame.wire)

    # -- the worker -----------------------------------------------------------------------------------
    # Each write is followed by a partial delivery of a drawn size (0 keeps the bytes in flight).

    @precondition(lambda self: self.open and not self.truncated)
    @rule(
        steps=st.integers(1, 4),
        values=st.lists(item_data, min_size=4, max_size=4),
        finish=st.integers(0, 3),
        fail=st.integers(0, 5),
        error=st.text(min_size=1, max_size=12),
        deliver=deliveries,
    )
    def worker_steps_forward(
        self, steps: int, values: list[Any], finish: int, fail: int, error: str, deliver: int
    ) -> None:
        """The next frames of a worker that follows the protocol, so that runs get deep into it; at the end,
        a buggy one may go on past ``complete_final`` or the sentinel."""
        for value in values[:steps]:
            phase = self.worker_phase
            if phase == "idle":
                self._worker_writes("handshake")
            elif phase == "handshake_sent":
                self._worker_writes("prologue_error" if fail == 0 else "prologue", error if fail == 0 else None)
            elif phase == "streaming":
                self._worker_writes("final" if finish == 0 else "item", value)
            elif phase == "final_sent":  # the sentinel, a pause, or a buggy worker going on
                operation = ("sentinel", None, "item", "final")[finish]
                if operation is not None:
                    self._worker_writes(operation, value)
            elif finish:  # after the sentinel, a buggy worker goes on
                self._worker_writes(("item", "sentinel", "final")[finish - 1], value)
        self._deliver(deliver)

    @precondition(lambda self: self.open and not self.truncated)
    @rule(
        kind=st.sampled_from(WORKER_OPERATIONS)
        | st.sampled_from(GARBAGE)
        | st.sampled_from(["oversized", "wrong checksum", "cut short"]),
        value=item_data,
        keep=st.integers(min_value=1, max_value=200),
        deliver=deliveries,
    )
    def worker_misbehaves(self, kind: str, value: Any, keep: int, deliver: int) -> None:
        """A frame out of turn (WorkerStream refuses it, a buggy worker sends it anyway), garbage, or a cut."""
        if kind in WORKER_OPERATIONS:
            texts = {"prologue": None, "prologue_error": "failed"}
            self._worker_writes(kind, texts.get(kind, value))
        elif kind == "oversized":  # one byte over the caller's limit: refused from the prelude, before any body
            prelude = two_part.PRELUDE.pack(0, CALLER_LIMIT - two_part.PRELUDE_SIZE + 1, 0)
            self._put(Frame(prelude + b"x" * 10, "oversized", trigger=two_part.PRELUDE_SIZE))
        elif kind == "wrong checksum":
            data = self.codec.encode({"data": value, "complete_final": False})
            wrong = (xxh3_64(b"", data) ^ 1) or 2
            self._put(Frame(two_part.PRELUDE.pack(0, len(data), wrong) + data, "bad_checksum", value))
        elif kind == "cut short":  # the worker dies inside a frame: only EOF can follow
            wire = self._frame("item", value).wire
            self.pending += wire[: min(keep, len(wire) - 1)]
            self.truncated = True
        else:
            header, data = garbage_frames(self.codec)[kind]
            self._put(Frame(self._encode(header, data), "garbage", kind))
        self._deliver(deliver)

    # -- the network ----------------------------------------------------------------------------------

    def _deliver(self, size: int) -> None:
        if not size or not self.pending:
            return
        chunk = bytes(self.pending[:size])
        del self.pending[:size]
        self.observed += [normalise(e, self.codec) for e in self.caller.receive_data(chunk)]
        self.delivered += len(chunk)
        while self.in_flight and self.in_flight[0][0] <= self.delivered:
            _, frame = self.in_flight.popleft()
            self.phase, event = expected_reaction(self.phase, frame, self.verify)
            if event is not None:
                self.expected.append(("item", self.codec.encode(frame.value)) if event[0] == "item" else event)
                self.final_seen = self.final_seen or event == ("final",)

    @precondition(lambda self: self.open)
    @rule(size=st.integers(min_value=1, max_value=80), close=st.integers(0, 2))
    def deliver_or_close(self, size: int, close: int) -> None:
        """Bytes arrive; one time in three the worker then closes: everything it wrote arrives, then EOF."""
        if close:
            self._deliver(size)
            return
        while self.pending:
            self._deliver(size)
        end = self.caller.receive_eof()
        self.open = False
        if self.phase in ENDED:
            assert end == StreamClosed(complete=False)
            return
        if self.truncated:
            assert isinstance(end, ProtocolViolation) and end.reason.strip()
            self.expected.append(("violation",))
            self.observed.append(("violation",))
            return
        assert isinstance(end, StreamClosed)
        assert end.complete == self.final_seen
        assert end.cancelled == (self.cancel_sent is not None and not self.final_seen)
        if not end.complete and not end.cancelled:
            assert outcome(self.observed, cancelled=False) in ("incomplete", "prologue error", "violation")

    # -- the caller -----------------------------------------------------------------------------------

    @precondition(lambda self: self.open)
    @rule(
        kind=st.sampled_from(["stop", "kill", "stop", "kill", "unexpected frame", "oversized frame"]),
        cut=st.integers(min_value=0, max_value=40),
    )
    def caller_sends(self, kind: str, cut: int) -> None:
        if kind in ("stop", "kill"):
            self._cancel(kind, cut)
        elif not self.worker_poisoned:
            self._caller_garbage(oversized=kind == "oversized frame")

    def _cancel(self, kind: str, cut: int) -> None:
        """Stop or kill, each sent at most once and nothing after kill; the worker reads it in two pieces."""
        wire = self.caller.send_cancel(kind)
        repeat = self.cancel_sent == kind or self.cancel_sent == "kill"
        assert wire == (b"" if repeat else two_part.encode(f'"{kind}"'.encode()))
        if not repeat:
            self.cancel_sent = kind
        events = self.worker.receive_data(wire[:cut]) + self.worker.receive_data(wire[cut:])
        if self.worker_poisoned:
            assert events and all(isinstance(e, ProtocolViolation) for e in events)
            return
        assert events == ([] if repeat else [CancelReceived(Cancel(kind))])
        if not repeat and self.worker_cancelled != "kill":
            self.worker_cancelled = kind

    def _caller_garbage(self, *, oversized: bool) -> None:
        """Only stop and kill may travel to the worker; an oversized frame ends its reading for good."""
        wire = two_part.PRELUDE.pack(WORKER_LIMIT, 0, 0) if oversized else two_part.encode(b'"sentinel"')
        events = self.worker.receive_data(wire)
        assert len(events) == 1 and isinstance(events[0], ProtocolViolation) and events[0].reason.strip()
        self.worker_poisoned = oversized

    # -- what must hold after every step ----------------------------------------------------------------

    @invariant()
    def caller_reported_what_the_model_expects(self) -> None:
        assert self.observed == self.expected
        items = [e for e in self.observed if e[0] == "item"]
        assert self.caller.items_received == len(items)
        assert self.caller.complete == self.final_seen
        assert self.caller.cancel_sent == self.cancel_sent
        assert self.worker.cancelled == self.worker_cancelled
        if self.open:
            assert self.caller.state is CALLER_STATE[self.phase]
        assert self.observed.count(("violation",)) <= 1
        if ("violation",) in self.observed:
            assert self.observed[-1] == ("violation",), "nothing is accepted after a violation"
        sentinels = [i for i, e in enumerate(self.observed) if e == ("sentinel",)]
        assert all(i >= len(self.observed) - 2 for i in sentinels), "nothing but a violation follows the sentinel"


ResponseStreamModel.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_response_stream_model = ResponseStreamModel.TestCase
