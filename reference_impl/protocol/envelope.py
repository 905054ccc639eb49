"""The request envelope: a two-part frame of control JSON and encoded body.

Every request plane carries these same bytes; only the carrier differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reference_impl.errors import MalformedMessage, ProtocolError
from reference_impl.protocol.messages import (
    RESPONSE_STREAM,
    RequestControlMessage,
    TcpStreamConnectionInfo,
)
from reference_impl.protocol.payload_codec import DecodeLimits, PayloadCodec
from reference_impl.wire import two_part


@dataclass(frozen=True, slots=True)
class RequestEnvelope:
    control: RequestControlMessage
    body: bytes

    def encode(self) -> bytes:
        return two_part.encode(self.control.to_json_bytes(), self.body)

    def decode_body(self, limits: DecodeLimits | None = None) -> Any:
        return self.control.codec.decode(self.body, limits)

    def callhome(self) -> TcpStreamConnectionInfo:
        """Call-home details, checked the way a worker must before dialling."""
        info = self.control.connection_info.tcp()
        if info.stream_type != RESPONSE_STREAM:
            raise MalformedMessage(f"call-home stream_type must be 'response', got {info.stream_type!r}")
        if info.context != self.control.id:
            raise MalformedMessage(f"call-home context {info.context!r} does not match request id {self.control.id!r}")
        return info


def build_envelope(control: RequestControlMessage, request: Any) -> bytes:
    codec: PayloadCodec = control.codec
    return two_part.encode(control.to_json_bytes(), codec.encode(request))


def parse_envelope(
    payload: bytes, *, max_message_size: int | None = two_part.DEFAULT_MAX_MESSAGE_SIZE
) -> RequestEnvelope:
    """Strictly parse one envelope: exactly one header-and-data frame, nothing else."""
    message = two_part.decode_single(payload, max_message_size=max_message_size)
    if message is None:  # not exactly one frame: the incremental decoder says what is wrong
        try:
            messages = two_part.decode_all(payload, max_message_size=max_message_size)
        except ProtocolError as exc:
            raise MalformedMessage(f"request payload is not a two-part frame: {exc}") from exc
        if len(messages) != 1:
            raise MalformedMessage(f"request payload must hold exactly one two-part frame, found {len(messages)}")
        message = messages[0]
    if message.kind is not two_part.MessageKind.HEADER_AND_DATA:
        raise MalformedMessage(f"request envelope must have a header and a body, got a {message.kind.value} frame")
    control = RequestControlMessage.from_json_bytes(message.header)
    if control.request_type != "single_in":
        raise MalformedMessage("only single_in requests are implemented (bidirectional streams are not)")
    return RequestEnvelope(control, message.data)
