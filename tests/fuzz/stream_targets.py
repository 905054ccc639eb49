"""Fuzz targets for the response stream and its messages: whatever the peer sends, events, not exceptions.

``CallerStream`` must turn any byte stream into a well-formed event sequence (a prefix of
handshake, prologue, items, final, sentinel, with at most one violation and nothing after
it), the same whatever the chunking, and classify the end of the stream consistently.
The message parsers may fail only with :class:`MalformedMessage`, and whatever they
accept must be writable again.
"""

from __future__ import annotations

import re

from reference_impl.errors import MalformedMessage
from reference_impl.protocol import annotated
from reference_impl.protocol.envelope import parse_envelope
from reference_impl.protocol.messages import (
    CallHomeHandshake,
    RequestControlMessage,
    ResponseStreamPrologue,
    TcpStreamConnectionInfo,
    control_word,
    decode_wrapper,
)
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
from reference_impl.wire.two_part import PRELUDE_SIZE
from tests.fuzz.checks import require, require_clear_error, safe_repr
from tests.fuzz.fuzz_input import FuzzInput

CODECS = (PayloadCodec.JSON, PayloadCodec.MSGPACK)
CALLER_LIMITS = (64, 512, 4096)

# One letter per event; a legal sequence is a prefix of the protocol, then at most one violation.
_LETTERS = {
    HandshakeReceived: "H",
    PrologueReceived: "P",
    ItemReceived: "I",
    FinalReceived: "F",
    SentinelReceived: "S",
    ProtocolViolation: "V",
}
_WITH_HANDSHAKE = re.compile(r"(H(PI*F?S?|E)?)?V?")
_WITHOUT_HANDSHAKE = re.compile(r"(PI*F?S?|E)?V?")


def _letters(events: list[Event]) -> str:
    letters = []
    for event in events:
        letter = _LETTERS.get(type(event))
        require(letter is not None, f"unexpected event {event!r}")
        if isinstance(event, PrologueReceived) and event.error is not None:
            letter = "E"  # an error prologue ends the stream
        letters.append(letter or "?")
    return "".join(letters)


def _feed(caller: CallerStream, chunks: list[bytes], cancel: str | None) -> list[Event]:
    events: list[Event] = []
    for index, chunk in enumerate(chunks):
        events.extend(caller.receive_data(chunk))
        if cancel is not None and index == 0:
            require(bool(caller.send_cancel(cancel)), f"the first {cancel!r} produced no frame")
    return events


def fuzz_caller_stream(raw: bytes) -> None:
    fuzz = FuzzInput.parse(raw)
    codec = fuzz.choose(0, CODECS)
    limit = fuzz.choose(1, CALLER_LIMITS)
    expect_handshake = not fuzz.flag(2, 0)
    verify = fuzz.flag(2, 1)
    cancel = (None, "stop", "kill", None)[fuzz.options[2] >> 2 & 3]

    def new_caller() -> CallerStream:
        return CallerStream(codec, expect_handshake=expect_handshake, max_message_size=limit, verify_checksum=verify)

    caller = new_caller()
    events = _feed(caller, fuzz.chunks(), cancel)
    require(caller.cancel_sent == cancel, f"cancel_sent={caller.cancel_sent!r} after sending {cancel!r}")
    letters = _letters(events)
    grammar = _WITH_HANDSHAKE if expect_handshake else _WITHOUT_HANDSHAKE
    require(grammar.fullmatch(letters) is not None, f"illegal event sequence {letters}")
    for event in events:
        if isinstance(event, ProtocolViolation):
            require(bool(event.reason.strip()), "a violation without a reason")
    require(caller.items_received == letters.count("I"), "items_received disagrees with the items delivered")
    require(caller.complete == ("F" in letters), "complete disagrees with the final frame")
    failed = "V" in letters or "E" in letters
    require((caller.state is CallerState.FAILED) == failed, f"state {caller.state} after {letters}")
    if not failed:  # a failed stream reads no more, so what it holds is final
        require(caller.decoder.buffered < max(limit, PRELUDE_SIZE), f"{caller.decoder.buffered} bytes buffered")

    # The same bytes in one piece: the same events.
    whole = new_caller()
    same = _feed(whole, [fuzz.stream], None)
    require(_letters(same) == letters, f"chunking changed the events: {letters} vs {_letters(same)}")
    require(safe_repr(same) == safe_repr(events), "chunking changed what the events carry")

    end = caller.receive_eof()
    if failed:
        require(end == StreamClosed(complete=False), f"end of a failed stream read as {end!r}")
    elif caller.decoder.buffered:
        require(isinstance(end, ProtocolViolation), f"EOF inside a frame read as {end!r}")
    else:
        complete = "F" in letters
        expected = StreamClosed(complete=complete, cancelled=cancel is not None and not complete)
        require(end == expected, f"end read as {end!r}, expected {expected!r}")


def fuzz_worker_stream(raw: bytes) -> None:
    fuzz = FuzzInput.parse(raw)
    worker = WorkerStream("subject", fuzz.choose(0, CODECS))
    cancels: list[str] = []
    for chunk in fuzz.chunks():
        events = worker.receive_data(chunk)
        for event in events:
            if isinstance(event, CancelReceived):
                cancels.append(event.kind)
            else:
                require(isinstance(event, ProtocolViolation), f"unexpected event {event!r}")
        require(worker.decoder.buffered < 64 * 1024, f"{worker.decoder.buffered} bytes buffered")
    expected = "kill" if "kill" in cancels else ("stop" if cancels else None)
    require(worker.cancelled == expected, f"cancelled={worker.cancelled!r} after {cancels}")


# --- message parsers ---------------------------------------------------------------------------------


def _request_control(stream: bytes) -> None:
    message = RequestControlMessage.from_json_bytes(stream)
    again = RequestControlMessage.from_json_bytes(message.to_json_bytes())
    require(again == message, "a parsed control message does not survive a round trip")  # flat: == is safe
    _call_home(message.connection_info.tcp())


def _call_home(info: TcpStreamConnectionInfo) -> None:
    """What a worker writes from accepted call-home details: they must encode again."""
    info.to_json()
    CallHomeHandshake(info.subject, info.stream_type).to_json_bytes()


def _envelope(stream: bytes) -> None:
    envelope = parse_envelope(stream)
    _call_home(envelope.callhome())
    envelope.decode_body()


def _handshake(stream: bytes) -> None:
    handshake = CallHomeHandshake.from_json_bytes(stream)
    require(CallHomeHandshake.from_json_bytes(handshake.to_json_bytes()) == handshake, "handshake round trip")


def _prologue(stream: bytes) -> None:
    prologue = ResponseStreamPrologue.from_json_bytes(stream)
    again = ResponseStreamPrologue.from_json_bytes(prologue.to_json_bytes())
    require(again.error == prologue.error, "prologue round trip")


def _item(codec: PayloadCodec, stream: bytes) -> None:
    wrapper = decode_wrapper(codec, stream)
    if not wrapper.has_data:
        return
    unwrapped = annotated.unwrap(wrapper.data)
    require(unwrapped.error is None or bool(unwrapped.error), "an in-stream error without a message")


def _control_word(stream: bytes) -> None:
    require(control_word(stream) in (None, "stop", "kill", "sentinel"), "unknown control word")


MESSAGE_PARSERS = (
    _request_control,
    _envelope,
    _handshake,
    _prologue,
    lambda stream: _item(PayloadCodec.JSON, stream),
    lambda stream: _item(PayloadCodec.MSGPACK, stream),
    _control_word,
)


def fuzz_messages(raw: bytes) -> None:
    fuzz = FuzzInput.parse(raw)
    parser = fuzz.choose(0, MESSAGE_PARSERS)
    try:
        parser(fuzz.stream)
    except MalformedMessage as exc:
        require_clear_error(exc, (MalformedMessage,))
