"""Frames per second of the reference two-part codec (``reference_impl/wire/two_part.py``).

Why a figure of its own: every response item is one two-part frame, so the
codec bounds items/s whatever the transport does.  Encoding uses
``two_part.encode``; decoding feeds ``TwoPartDecoder`` 64 KiB chunks (what a
socket read hands it under load) and pulls every frame; the round trip is
both, per frame (one frame per ``feed``, as a worker's item arrives).

``--against REV`` measures the codec of git revision ``REV`` and this one side
by side, interleaved round by round: the machine's speed drifts (up to 2x on
a shared VM), so only figures taken in the same run, alternating, compare.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from types import ModuleType

import msgpack

from reference_impl.wire import two_part

CHUNK = 64 * 1024
TARGET_FRAMES_PER_S = 900_000  # issue 16: encode + decode of a small item frame
CODEC_MODULE = "reference_impl/wire/two_part.py"
MIN_ROUNDS = 6  # medians and an interquartile spread need a few rounds


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


def _encode_rate(body: bytes, frames: int, codec: ModuleType) -> tuple[float, list[bytes]]:
    encode = codec.encode
    start = perf_counter()
    encoded = [encode(b"", body) for _ in range(frames)]
    return frames / (perf_counter() - start), encoded


def _decode_rate(wire: bytes, frames: int, codec: ModuleType) -> float:
    decoder = codec.TwoPartDecoder()
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


def _round_trip_rate(body: bytes, frames: int, codec: ModuleType) -> float:
    encode = codec.encode
    decoder = codec.TwoPartDecoder()
    start = perf_counter()
    for _ in range(frames):
        decoder.feed(encode(b"", body))
        if decoder.next_message() is None:
            raise AssertionError("a whole frame did not decode")
    return frames / (perf_counter() - start)


def measure_once(body: bytes, frames: int, codec: ModuleType) -> CodecFigures:
    encode_rate, encoded = _encode_rate(body, frames, codec)
    decode_rate = _decode_rate(b"".join(encoded), frames, codec)
    return CodecFigures(len(encoded[0]), encode_rate, decode_rate, _round_trip_rate(body, frames, codec))


def measure(frames: int = 200_000, repeats: int = 3, codec: ModuleType = two_part) -> CodecFigures:
    """Best of ``repeats`` runs of each measurement (the least disturbed by the rest of the machine)."""
    body = small_item_body()
    runs = [measure_once(body, frames, codec) for _ in range(repeats)]
    return CodecFigures(
        runs[0].frame_bytes,
        max(r.encode_per_s for r in runs),
        max(r.decode_per_s for r in runs),
        max(r.round_trip_per_s for r in runs),
    )


def codec_at(revision: str) -> ModuleType:
    """The codec module as it is at git ``revision``, imported under a name of its own."""
    root = Path(__file__).resolve().parent.parent
    shown = subprocess.run(["git", "show", f"{revision}:{CODEC_MODULE}"], cwd=root, capture_output=True, text=True)
    if shown.returncode != 0:
        raise ValueError(f"no codec at revision {revision!r}: {shown.stderr.strip()}")
    source = shown.stdout
    name = "two_part_at_" + re.sub(r"\W", "_", revision)
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # NamedTuple and dataclasses look their module up
    exec(compile(source, f"{revision}:{CODEC_MODULE}", "exec"), module.__dict__)
    return module


def spread_of(values: list[float]) -> float:
    """Interquartile range: how far rounds disagree, robust to one disturbed round."""
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return high - low


FIGURES = (("encode", "encode_per_s"), ("decode", "decode_per_s"), ("round trip", "round_trip_per_s"))


def side_by_side(revision: str, rounds: int, frames: int) -> dict[str, dict[str, list[float]]]:
    """Per-round figures of ``revision``'s codec and this one, alternating which goes first."""
    codecs: dict[str, ModuleType] = {revision: codec_at(revision), "this tree": two_part}
    body = small_item_body()
    per_round: dict[str, dict[str, list[float]]] = {label: {key: [] for _, key in FIGURES} for label in codecs}
    for index in range(rounds):
        order = list(codecs) if index % 2 == 0 else list(reversed(codecs))
        line = []
        for label in order:
            figures = measure_once(body, frames, codecs[label])
            for _, key in FIGURES:
                per_round[label][key].append(getattr(figures, key))
            line.append(f"{label} {figures.round_trip_per_s:,.0f}/s")
        print(f"round {index + 1}: round trip " + ", ".join(line), flush=True)
    return per_round


def print_comparison(revision: str, per_round: dict[str, dict[str, list[float]]]) -> None:
    old, new = per_round[revision], per_round["this tree"]
    for name, key in FIGURES:
        old_median, new_median = statistics.median(old[key]), statistics.median(new[key])
        spread = max(spread_of(old[key]), spread_of(new[key]))
        ratio = f"{new_median / old_median:.2f}x" if abs(new_median - old_median) > spread else "noise"
        wins = sum(1 for a, b in zip(new[key], old[key], strict=True) if a > b)
        print(
            f"{name}: {revision} median {old_median:,.0f}/s "
            f"(best {max(old[key]):,.0f}, IQR {spread_of(old[key]):,.0f}); "
            f"this tree median {new_median:,.0f}/s (best {max(new[key]):,.0f}, IQR {spread_of(new[key]):,.0f}); "
            f"this/{revision} {ratio}, ahead in {wins}/{len(old[key])} rounds"
        )


def main() -> None:
    """``python -m loadtests.codec_bench``: the codec's figures alone, with the machine and its load."""
    import os

    from fixtures.suite_runs import cpu_model

    parser = argparse.ArgumentParser(prog="python -m loadtests.codec_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000, help="frames per measurement")
    parser.add_argument("--against", metavar="REV", help="also measure the codec of this git revision, interleaved")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help=f"rounds with --against (>= {MIN_ROUNDS})")
    args = parser.parse_args()
    if args.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}: medians and spreads need them")
    machine = f"{os.cpu_count()} CPUs, {cpu_model() or 'unknown CPU'}"
    before = os.getloadavg()[0]
    if args.against:
        try:
            per_round = side_by_side(args.against, args.rounds, args.frames)
        except ValueError as exc:
            parser.error(str(exc))
        print_comparison(args.against, per_round)
        print(f"{machine}, load average {before:.2f} before, {os.getloadavg()[0]:.2f} after")
        return
    figures = measure(args.frames)
    verdict = "met" if figures.round_trip_per_s >= TARGET_FRAMES_PER_S else "MISSED"
    print(
        f"codec ({figures.frame_bytes}-byte item frames): encode {figures.encode_per_s:,.0f}/s, "
        f"decode {figures.decode_per_s:,.0f}/s, round trip {figures.round_trip_per_s:,.0f}/s "
        f"(target {TARGET_FRAMES_PER_S:,}/s: {verdict}); "
        f"{machine}, load average {before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )


if __name__ == "__main__":
    main()
