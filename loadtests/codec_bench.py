"""Frames per second of the reference two-part codec (``reference_impl/wire/two_part.py``).

Why a figure of its own: every response item is one two-part frame, so the
codec bounds items/s whatever the transport does.  Encoding uses
``two_part.encode``; decoding feeds ``TwoPartDecoder`` 64 KiB chunks (what a
socket read hands it under load) and pulls every frame; the round trip is
both, per frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter

import msgpack

from reference_impl.wire.two_part import TwoPartDecoder, encode

CHUNK = 64 * 1024
TARGET_FRAMES_PER_S = 900_000  # issue 16: encode + decode of a small item frame


@dataclass(frozen=True)
class CodecFigures:
    frame_bytes: int
    encode_per_s: float
    decode_per_s: float
    round_trip_per_s: float

    def to_json(self) -> dict[str, float]:
        return {
            "frame_bytes": self.frame_bytes,
            "encode_frames_per_s": self.encode_per_s,
            "decode_frames_per_s": self.decode_per_s,
            "round_trip_frames_per_s": self.round_trip_per_s,
        }


def small_item_body() -> bytes:
    """A response item as a worker sends it: ``{"data": {"seq": n, "pad": 16 B}}`` in msgpack."""
    return bytes(msgpack.packb({"data": {"seq": 123, "pad": "x" * 16}}))


def _encode_rate(body: bytes, frames: int) -> tuple[float, list[bytes]]:
    start = perf_counter()
    encoded = [encode(b"", body) for _ in range(frames)]
    return frames / (perf_counter() - start), encoded


def _decode_rate(wire: bytes, frames: int) -> float:
    decoder = TwoPartDecoder()
    decoded = 0
    start = perf_counter()
    for offset in range(0, len(wire), CHUNK):
        decoder.feed(wire[offset : offset + CHUNK])
        while decoder.next_message() is not None:
            decoded += 1
    elapsed = perf_counter() - start
    if decoded != frames:
        raise AssertionError(f"decoded {decoded} of {frames} frames")
    return frames / elapsed


def _round_trip_rate(body: bytes, frames: int) -> float:
    decoder = TwoPartDecoder()
    start = perf_counter()
    for _ in range(frames):
        decoder.feed(encode(b"", body))
        if decoder.next_message() is None:
            raise AssertionError("a whole frame did not decode")
    return frames / (perf_counter() - start)


def measure(frames: int = 200_000, repeats: int = 3) -> CodecFigures:
    """Best of ``repeats`` runs of each measurement (the least disturbed by the rest of the machine)."""
    body = small_item_body()
    encode_rates, decode_rates, round_trips = [], [], []
    for _ in range(repeats):
        rate, encoded = _encode_rate(body, frames)
        encode_rates.append(rate)
        decode_rates.append(_decode_rate(b"".join(encoded), frames))
        round_trips.append(_round_trip_rate(body, frames))
    return CodecFigures(len(encode(b"", body)), max(encode_rates), max(decode_rates), max(round_trips))


def main() -> None:
    """``python -m loadtests.codec_bench``: the codec's figures alone, with the machine and its load."""
    import os

    from fixtures.suite_runs import cpu_model

    before = os.getloadavg()[0]
    figures = measure()
    verdict = "met" if figures.round_trip_per_s >= TARGET_FRAMES_PER_S else "MISSED"
    print(
        f"codec ({figures.frame_bytes}-byte item frames): encode {figures.encode_per_s:,.0f}/s, "
        f"decode {figures.decode_per_s:,.0f}/s, round trip {figures.round_trip_per_s:,.0f}/s "
        f"(target {TARGET_FRAMES_PER_S:,}/s: {verdict}); "
        f"{os.cpu_count()} CPUs, {cpu_model() or 'unknown CPU'}, "
        f"load average {before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )


if __name__ == "__main__":
    main()
