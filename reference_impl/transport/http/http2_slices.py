"""Cutting an inbound HTTP/2 byte stream into slices of a few frames each.

hyper-h2 does all the work of what it is handed in one call: a 3 KB read of
200 tiny HEADERS frames (a request each, answered at once) costs 100-500 ms,
and no deadline or feed budget can interrupt it.  ``FrameCounter`` knows where
the frames start (it reads only the 9-byte frame headers), so the server can
hand h2 at most ``HttpGuards.h2_feed_frames`` frames at a time and let the event
loop serve the other connections between slices.
"""

from __future__ import annotations

FRAME_HEADER = 9


class FrameCounter:
    """Follows the frame boundaries of one connection's inbound byte stream (after the client preface)."""

    def __init__(self, *, preface_length: int = 0) -> None:
        self._skip = preface_length  # bytes before the next frame header starts (preface, then frame payloads)
        self._header = b""  # the part of a frame header that arrived so far (fewer than 9 bytes)

    def cut(self, data: bytes | bytearray, start: int, most: int, frames: int) -> int:
        """Bytes from ``data[start]`` (at most ``most``) to hand over next, in which at most ``frames`` frames begin.

        Does not move the counter (``advance`` does, with what was handed
        over).  At least one byte when any is left: a frame longer than
        ``most`` goes over in several slices.
        """
        position, _, _ = self._walk(data, start, min(len(data), start + most), frames)
        return position - start

    def advance(self, data: bytes | bytearray) -> None:
        """Move past ``data``, the next bytes of the stream."""
        _, self._skip, self._header = self._walk(data, 0, len(data), None)

    def _walk(self, data: bytes | bytearray, start: int, end: int, frames: int | None) -> tuple[int, int, bytes]:
        skip, header = self._skip, self._header
        position, begun = start, 0
        while position < end:
            if skip:
                step = min(skip, end - position)
                skip -= step
                position += step
                continue
            if not header:  # a frame begins here
                if frames is not None and begun == frames:
                    break
                begun += 1
            take = min(FRAME_HEADER - len(header), end - position)
            header += bytes(data[position : position + take])
            position += take
            if len(header) == FRAME_HEADER:
                skip, header = int.from_bytes(header[:3], "big"), b""
        return position, skip, header
