"""Sans-IO state machines for the call-home response stream.

Worker to caller, one TCP connection per request::

    handshake (header-only JSON) -> prologue (header-only JSON)
    -> item* (data-only wrapper, complete_final=false)
    -> final (data-only {"complete_final":true}) -> "sentinel" (header-only)

Caller to worker on the same connection: ``"stop"`` or ``"kill"``.

:class:`CallerStream` is the caller's end (it consumes frames and emits
events); :class:`WorkerStream` is the worker's end (it produces frames and
refuses to produce them out of order).  Both are pure: bytes in, events or
bytes out, in the style of h11.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from reference_impl.errors import LocalProtocolError, MalformedMessage, ProtocolError
from reference_impl.protocol.messages import (
    RESPONSE_STREAM,
    SENTINEL,
    CallHomeHandshake,
    Cancel,
    ResponseStreamPrologue,
    control_word,
    decode_wrapper,
    encode_final,
    encode_item,
)
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.wire import two_part
from reference_impl.wire.two_part import MessageKind, TwoPartDecoder, TwoPartMessage

_CANCEL_WORDS = frozenset(Cancel)

# --- events --------------------------------------------------------------------


class Event:
    """Something a state machine observed on the wire."""


@dataclass(frozen=True, slots=True)
class HandshakeReceived(Event):
    subject: str
    stream_type: str


@dataclass(frozen=True, slots=True)
class PrologueReceived(Event):
    error: str | None
    typed_error: Any = None


@dataclass(frozen=True, slots=True)
class ItemReceived(Event):
    data: Any


@dataclass(frozen=True, slots=True)
class FinalReceived(Event):
    pass


@dataclass(frozen=True, slots=True)
class SentinelReceived(Event):
    pass


@dataclass(frozen=True, slots=True)
class StreamClosed(Event):
    """End of the byte stream. ``complete`` is True only after ``complete_final``."""

    complete: bool
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class ProtocolViolation(Event):
    """The peer broke the protocol; the stream is over."""

    reason: str


@dataclass(frozen=True, slots=True)
class CancelReceived(Event):
    """``"stop"`` or ``"kill"`` from the caller."""

    kind: Cancel


# --- caller side ----------------------------------------------------------------


class CallerState(enum.Enum):
    AWAIT_HANDSHAKE = "await_handshake"
    AWAIT_PROLOGUE = "await_prologue"
    STREAMING = "streaming"
    COMPLETE = "complete"  # complete_final seen, sentinel not yet
    DONE = "done"  # sentinel or EOF seen
    FAILED = "failed"  # prologue error or violation


class CallerStream:
    """The caller's end of one call-home connection."""

    def __init__(
        self,
        codec: PayloadCodec = PayloadCodec.JSON,
        *,
        expect_handshake: bool = True,
        max_message_size: int | None = two_part.DEFAULT_MAX_MESSAGE_SIZE,
        verify_checksum: bool = False,
    ) -> None:
        self.codec = codec
        self.state = CallerState.AWAIT_HANDSHAKE if expect_handshake else CallerState.AWAIT_PROLOGUE
        self.decoder = TwoPartDecoder(max_message_size=max_message_size, verify_checksum=verify_checksum)
        self.cancel_sent: Cancel | None = None
        self.items_received = 0
        self._saw_final = False

    @property
    def complete(self) -> bool:
        """True once ``complete_final`` arrived: the stream ended normally."""
        return self._saw_final

    def _violation(self, reason: str) -> ProtocolViolation:
        self.state = CallerState.FAILED
        return ProtocolViolation(reason)

    def receive_data(self, data: bytes) -> Iterator[Event]:
        """Events for the frames completed by ``data``, decoded lazily.

        Lazy so that a consumer can react to the handshake (e.g. set
        ``codec`` for the call it names) before the next frame is decoded.
        """
        if self.state is CallerState.FAILED:
            return
        try:
            self.decoder.feed(data)
            for message in self.decoder:
                event = self.receive_message(message)
                yield event
                if self.state is CallerState.FAILED:
                    return
        except ProtocolError as exc:
            yield self._violation(f"undecodable frame on the response stream: {exc}")

    def receive_message(self, message: TwoPartMessage) -> Event:
        state = self.state
        kind = message.kind
        if state is CallerState.AWAIT_HANDSHAKE:
            if kind is not MessageKind.HEADER_ONLY:
                return self._violation(f"first frame must be a header-only handshake, got {kind.value}")
            try:
                handshake = CallHomeHandshake.from_json_bytes(message.header)
            except MalformedMessage as exc:
                return self._violation(str(exc))
            self.state = CallerState.AWAIT_PROLOGUE
            return HandshakeReceived(handshake.subject, handshake.stream_type)
        if state is CallerState.AWAIT_PROLOGUE:
            if kind is not MessageKind.HEADER_ONLY:
                return self._violation(f"malformed prologue: expected a header-only frame, got {kind.value}")
            try:
                prologue = ResponseStreamPrologue.from_json_bytes(message.header)
            except MalformedMessage as exc:
                return self._violation(f"malformed prologue: {exc}")
            self.state = CallerState.STREAMING if prologue.error is None else CallerState.FAILED
            return PrologueReceived(prologue.error, prologue.typed_error)
        if state in (CallerState.STREAMING, CallerState.COMPLETE):
            if kind is MessageKind.HEADER_ONLY:
                word = control_word(message.header)
                if word == "sentinel":
                    self.state = CallerState.DONE
                    return SentinelReceived()
                if word in _CANCEL_WORDS:
                    return self._violation(f"worker sent {word!r}, which only a caller may send")
                return self._violation(f"unknown control message {message.header[:64]!r}")
            if kind is not MessageKind.DATA_ONLY:
                return self._violation(f"response items must be data-only frames, got {kind.value}")
            try:
                wrapper = decode_wrapper(self.codec, message.data)
            except MalformedMessage as exc:
                return self._violation(f"undecodable response item: {exc}")
            if state is CallerState.COMPLETE:
                return self._violation("response received after complete_final")
            if wrapper.complete_final:
                if wrapper.has_data:
                    return self._violation("the final frame carries data; items must precede complete_final")
                self.state = CallerState.COMPLETE
                self._saw_final = True
                return FinalReceived()
            if not wrapper.has_data:
                return self._violation("empty response item (no data and complete_final=false)")
            self.items_received += 1
            return ItemReceived(wrapper.data)
        if state is CallerState.DONE:
            return self._violation("frame received after the sentinel")
        return self._violation("frame received after the stream failed")

    def receive_eof(self) -> Event:
        """The worker closed the connection."""
        if self.state is CallerState.FAILED:
            return StreamClosed(complete=False)
        if self.decoder.buffered:
            self.state = CallerState.FAILED
            return ProtocolViolation(f"connection closed inside a frame ({self.decoder.buffered} bytes buffered)")
        complete = self._saw_final
        cancelled = self.cancel_sent is not None
        if self.state is not CallerState.DONE:
            self.state = CallerState.DONE if (complete or cancelled) else CallerState.FAILED
        return StreamClosed(complete=complete, cancelled=cancelled and not complete)

    def send_cancel(self, kind: str) -> bytes:
        """Frame for ``"stop"`` (graceful) or ``"kill"``; each is sent at most once, never a stop after a kill."""
        try:
            word = Cancel(kind)
        except ValueError:
            raise LocalProtocolError(f"unknown cancellation {kind!r}") from None
        if not word.overrides(self.cancel_sent):
            return b""
        self.cancel_sent = word
        return two_part.encode(word.frame_header)


# --- worker side ----------------------------------------------------------------


class WorkerState(enum.Enum):
    IDLE = "idle"
    HANDSHAKE_SENT = "handshake_sent"
    STREAMING = "streaming"
    FINAL_SENT = "final_sent"
    CLOSED = "closed"  # sentinel sent, or stream ended after an error/cancel


# Frames that are the same on every stream (checksum 0), encoded once: one stream per request.
_PROLOGUE_OK_FRAME = two_part.encode(ResponseStreamPrologue().to_json_bytes())
_SENTINEL_FRAME = two_part.encode(SENTINEL)
_FINAL_FRAMES = {codec: two_part.encode(data=encode_final(codec)) for codec in PayloadCodec}
CALLER_FRAME_LIMIT = 64 * 1024  # the caller only ever sends "stop" and "kill"


class WorkerStream:
    """The worker's end of one call-home connection."""

    def __init__(self, subject: str, codec: PayloadCodec = PayloadCodec.JSON, *, write_checksum: bool = False) -> None:
        self.subject = subject
        self.codec = codec
        self.write_checksum = write_checksum
        self.state = WorkerState.IDLE
        self._decoder: TwoPartDecoder | None = None  # made when the caller first sends something (rarely)
        self.cancelled: Cancel | None = None  # the strongest word received

    @property
    def decoder(self) -> TwoPartDecoder:
        if self._decoder is None:
            self._decoder = TwoPartDecoder(max_message_size=CALLER_FRAME_LIMIT)
        return self._decoder

    def _frame(self, header: bytes = b"", data: bytes = b"") -> bytes:
        return two_part.encode(header, data, write_checksum=self.write_checksum)

    def _expect(self, *states: WorkerState) -> None:
        if self.state not in states:
            raise LocalProtocolError(f"cannot do that in state {self.state.value}")

    def handshake(self) -> bytes:
        self._expect(WorkerState.IDLE)
        self.state = WorkerState.HANDSHAKE_SENT
        return self._frame(CallHomeHandshake(self.subject, RESPONSE_STREAM).to_json_bytes())

    def prologue(self, error: str | None = None, typed_error: Any = None) -> bytes:
        self._expect(WorkerState.HANDSHAKE_SENT)
        self.state = WorkerState.STREAMING if error is None else WorkerState.FINAL_SENT
        if error is None and typed_error is None and not self.write_checksum:
            return _PROLOGUE_OK_FRAME
        return self._frame(ResponseStreamPrologue(error, typed_error).to_json_bytes())

    def item(self, data: Any) -> bytes:
        self._expect(WorkerState.STREAMING)
        if data is None:
            raise LocalProtocolError("an item must carry data; None would read as an empty response")
        return self._frame(data=encode_item(self.codec, data))

    def final(self) -> bytes:
        self._expect(WorkerState.STREAMING)
        self.state = WorkerState.FINAL_SENT
        if not self.write_checksum:
            return _FINAL_FRAMES[self.codec]
        return self._frame(data=encode_final(self.codec))

    def sentinel(self) -> bytes:
        self._expect(WorkerState.FINAL_SENT)
        self.state = WorkerState.CLOSED
        if not self.write_checksum:
            return _SENTINEL_FRAME
        return self._frame(SENTINEL)

    def receive_data(self, data: bytes) -> list[Event]:
        """Frames from the caller: only ``"stop"`` and ``"kill"`` are legal."""
        events: list[Event] = []
        try:
            self.decoder.feed(data)
            for message in self.decoder:
                word = control_word(message.header) if message.kind is MessageKind.HEADER_ONLY else None
                if word in _CANCEL_WORDS:
                    cancel = Cancel(word)
                    if cancel.overrides(self.cancelled):
                        self.cancelled = cancel
                    events.append(CancelReceived(cancel))
                else:
                    events.append(ProtocolViolation(f"caller sent an unexpected {message.kind.value} frame"))
                    break
        except ProtocolError as exc:
            events.append(ProtocolViolation(f"undecodable frame from the caller: {exc}"))
        return events
