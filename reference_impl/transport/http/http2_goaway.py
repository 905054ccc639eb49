"""GOAWAY frames handled outside hyper-h2.

hyper-h2 moves its connection state machine to CLOSED as soon as it sends or
receives a GOAWAY, after which every frame on the streams still in flight
raises ``ProtocolError``.  A graceful GOAWAY must let those streams finish,
so the drivers keep GOAWAY frames away from h2: ``GoawayFilter`` lifts
well-formed ones out of the inbound byte stream, and ``encode_goaway``
builds the outbound ones that h2 is never told about.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

FRAME_HEADER = 9
GOAWAY_TYPE = 0x7
MAX_GOAWAY_LENGTH = 16_384  # SETTINGS_MAX_FRAME_SIZE default; a longer frame is h2's to reject

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1


@dataclass(frozen=True, slots=True)
class Goaway:
    last_stream_id: int
    error_code: int
    debug_data: bytes = b""


def encode_goaway(last_stream_id: int, error_code: int = NO_ERROR, debug_data: bytes = b"") -> bytes:
    payload = struct.pack(">II", last_stream_id & 0x7FFF_FFFF, error_code) + debug_data
    return len(payload).to_bytes(3, "big") + bytes((GOAWAY_TYPE, 0)) + b"\x00\x00\x00\x00" + payload


class GoawayFilter:
    """Splits an inbound HTTP/2 byte stream into bytes for h2 and ``Goaway`` frames.

    Only frame headers are inspected; payloads pass through untouched and
    unbuffered.  A malformed GOAWAY (wrong stream, bad length) is left in the
    stream so that h2 rejects it as a connection error.
    """

    def __init__(self, *, preface_length: int = 0) -> None:
        self._passthrough = preface_length  # bytes to forward before the next frame header
        self._header = b""  # partial frame header
        self._goaway_left = 0  # payload bytes of a GOAWAY still to collect
        self._goaway = bytearray()

    def feed(self, data: bytes) -> Iterator[bytes | Goaway]:
        view = memoryview(data)
        start = 0  # start of the bytes not yet yielded to h2
        position = 0
        while position < len(view):
            if self._passthrough:
                step = min(self._passthrough, len(view) - position)
                self._passthrough -= step
                position += step
                continue
            if self._goaway_left:
                step = min(self._goaway_left, len(view) - position)
                self._goaway += view[position : position + step]
                self._goaway_left -= step
                position += step
                start = position
                if not self._goaway_left:
                    yield self._finish_goaway()
                continue
            wanted = FRAME_HEADER - len(self._header)
            chunk = bytes(view[position : position + wanted])
            header = self._header + chunk
            if len(header) < FRAME_HEADER:
                if start < position:
                    yield bytes(view[start:position])
                self._header = header  # held back until the frame type is known
                return
            self._header = b""
            length = int.from_bytes(header[:3], "big")
            stream_id = int.from_bytes(header[5:9], "big") & 0x7FFF_FFFF
            if header[3] == GOAWAY_TYPE and stream_id == 0 and 8 <= length <= MAX_GOAWAY_LENGTH:
                header_start = position - (FRAME_HEADER - len(chunk))
                if start < max(header_start, 0):
                    yield bytes(view[start:header_start])
                position += len(chunk)
                start = position
                self._goaway_left = length
                continue
            if len(chunk) < FRAME_HEADER:
                yield header[: FRAME_HEADER - len(chunk)]  # the held-back part goes out first, in order
            position += len(chunk)
            self._passthrough = length
        if start < len(view):
            yield bytes(view[start:])

    def _finish_goaway(self) -> Goaway:
        payload = bytes(self._goaway)
        self._goaway.clear()
        last_stream_id, error_code = struct.unpack(">II", payload[:8])
        return Goaway(last_stream_id & 0x7FFF_FFFF, error_code, payload[8:])
