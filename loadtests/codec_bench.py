"""Frames per second of the reference two-part codec (``reference_impl/wire/two_part.py``).

Why a figure of its own: every response item is one two-part frame, so the
codec bounds items/s whatever the transport does.  Encoding uses
``two_part.encode``; decoding feeds ``TwoPartDecoder`` 64 KiB chunks (what a
socket read hands it under load) and pulls every frame; the round trip is
both, per frame (one frame per ``feed``, as a worker's item arrives).

How the figures are timed, and why: the machine is shared, and a wall-clock
figure counts every moment another process held the core, so wall-clock
rounds of the same code differ up to 2x.  Each loop is single-threaded and
does no I/O, so its CPU time (``time.process_time``) is the time it took
without the moments it was waiting off the core; that clock is the default
and every figure names it, and the wall clock is recorded beside it (or
chosen with ``--clock wall``).  CPU time still counts cache and shared-core
contention, which only ever slows a run: each round takes the best of
``--repeats`` runs of each measurement, the figure is the median of
``--rounds`` rounds (at least 6) and its spread the interquartile range of
the rounds.

``--against REV`` measures the codec of git revision ``REV`` and this one side
by side, interleaved round by round (alternating which goes first): only
figures taken in the same run compare, and a ratio is printed only when the
medians differ by more than the larger spread ("noise" otherwise).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter, process_time
from types import ModuleType

import msgpack

from reference_impl.wire import two_part

CHUNK = 64 * 1024
TARGET_FRAMES_PER_S = 900_000  # issue 16: encode + decode of a small item frame
CODEC_MODULE = "reference_impl/wire/two_part.py"
MIN_ROUNDS = 6  # medians and an interquartile spread need a few rounds
REPEATS_PER_ROUND = 5  # runs of each measurement per round; the round keeps the least disturbed one
DEFAULT_FRAMES = 200_000  # frames per run: about 0.2 s of round trips, far above either clock's resolution

# The clocks a run is timed with, both at once.  "cpu": the process's CPU time, which does not count the
# moments another process held the core (the loops are single-threaded and do no I/O); "wall": elapsed time.
CLOCKS: dict[str, Callable[[], float]] = {"cpu": process_time, "wall": perf_counter}
CLOCK_NAMES = {"cpu": "CPU time (time.process_time)", "wall": "wall clock (time.perf_counter)"}
DEFAULT_CLOCK = "cpu"

FIGURES = (("encode", "encode_per_s"), ("decode", "decode_per_s"), ("round trip", "round_trip_per_s"))

# One round's figures: clock -> figure key -> frames/s.
RoundFigures = dict[str, dict[str, float]]


@dataclass(frozen=True)
class CodecFigures:
    """Medians over rounds, by ``clock``; the round trip's spread and its wall-clock median beside them."""

    frame_bytes: int
    encode_per_s: float
    decode_per_s: float
    round_trip_per_s: float
    clock: str = DEFAULT_CLOCK
    round_trip_spread: float = 0.0  # interquartile range of the rounds' round trips, same clock
    wall_round_trip_per_s: float = 0.0  # the round trip's median by the wall clock, whatever ``clock`` is
    rounds: int = 1

    def to_json(self) -> dict[str, float | int | str]:
        return {
            "frame_bytes": self.frame_bytes,
            "clock": self.clock,
            "rounds": self.rounds,
            "encode_frames_per_s": self.encode_per_s,
            "decode_frames_per_s": self.decode_per_s,
            "round_trip_frames_per_s": self.round_trip_per_s,
            "round_trip_spread_frames_per_s": self.round_trip_spread,
            "wall_round_trip_frames_per_s": self.wall_round_trip_per_s,
        }


def small_item_body() -> bytes:
    """A response item as a worker sends it: ``{"data": {"seq": n, "pad": 16 B}}`` in msgpack."""
    return bytes(msgpack.packb({"data": {"seq": 123, "pad": "x" * 16}}))


def timed(run: Callable[[], object]) -> dict[str, float]:
    """Seconds ``run()`` took by each clock of ``CLOCKS``."""
    cpu_start, wall_start = process_time(), perf_counter()
    run()
    wall, cpu = perf_counter() - wall_start, process_time() - cpu_start
    return {"cpu": cpu, "wall": wall}


def _encode_all(body: bytes, frames: int, codec: ModuleType) -> list[bytes]:
    encode = codec.encode
    return [encode(b"", body) for _ in range(frames)]


def _decode_all(wire: bytes, frames: int, codec: ModuleType) -> None:
    decoder = codec.TwoPartDecoder()
    decoded = 0
    for offset in range(0, len(wire), CHUNK):
        decoder.feed(wire[offset : offset + CHUNK])
        while decoder.next_message() is not None:
            decoded += 1
    if decoded != frames:
        raise AssertionError(f"decoded {decoded} of {frames} frames")


def _round_trip_all(body: bytes, frames: int, codec: ModuleType) -> None:
    encode = codec.encode
    decoder = codec.TwoPartDecoder()
    for _ in range(frames):
        decoder.feed(encode(b"", body))
        if decoder.next_message() is None:
            raise AssertionError("a whole frame did not decode")


def measure_once(
    body: bytes, frames: int, codec: ModuleType, repeats: int = REPEATS_PER_ROUND
) -> tuple[int, RoundFigures]:
    """One round: the frame size, and per clock the best of ``repeats`` runs of each measurement."""
    wire = b"".join(_encode_all(body, frames, codec))
    runs: dict[str, Callable[[], object]] = {
        "encode_per_s": lambda: _encode_all(body, frames, codec),
        "decode_per_s": lambda: _decode_all(wire, frames, codec),
        "round_trip_per_s": lambda: _round_trip_all(body, frames, codec),
    }
    best: RoundFigures = {clock: dict.fromkeys(runs, 0.0) for clock in CLOCKS}
    for _ in range(repeats):
        for key, run in runs.items():
            for clock, seconds in timed(run).items():
                # A clock that did not advance (far too few frames for its resolution) counts as 1 ns.
                best[clock][key] = max(best[clock][key], frames / max(seconds, 1e-9))
    return len(wire) // frames, best


def spread_of(values: list[float]) -> float:
    """Interquartile range: how far rounds disagree, robust to one disturbed round."""
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return high - low


def measure(
    frames: int = DEFAULT_FRAMES,
    repeats: int = REPEATS_PER_ROUND,
    codec: ModuleType = two_part,
    *,
    rounds: int = MIN_ROUNDS,
    clock: str = DEFAULT_CLOCK,
) -> CodecFigures:
    """Medians over ``rounds`` rounds, each the best of ``repeats`` runs, timed by ``clock``."""
    if rounds < 2:
        raise ValueError("a spread needs at least 2 rounds")
    body = small_item_body()
    per_round = [measure_once(body, frames, codec, repeats) for _ in range(rounds)]
    chosen = [figures[clock] for _, figures in per_round]
    round_trips = [figures["round_trip_per_s"] for figures in chosen]
    return CodecFigures(
        frame_bytes=per_round[0][0],
        encode_per_s=statistics.median(figures["encode_per_s"] for figures in chosen),
        decode_per_s=statistics.median(figures["decode_per_s"] for figures in chosen),
        round_trip_per_s=statistics.median(round_trips),
        clock=clock,
        round_trip_spread=spread_of(round_trips),
        wall_round_trip_per_s=statistics.median(figures["wall"]["round_trip_per_s"] for _, figures in per_round),
        rounds=rounds,
    )


def verdict(figures: CodecFigures, target: float = TARGET_FRAMES_PER_S) -> str:
    """Whether the round trip's median meets ``target``; undecided while the target is within its spread."""
    if abs(figures.round_trip_per_s - target) <= figures.round_trip_spread:
        return "undecided: the target is within the spread"
    return "met" if figures.round_trip_per_s >= target else "MISSED"


def describe(figures: CodecFigures) -> str:
    """One line: the figures, the clock they use, the round trip's spread and wall-clock median."""
    return (
        f"codec ({figures.frame_bytes}-byte item frames, {CLOCK_NAMES[figures.clock]}, "
        f"median of {figures.rounds} rounds): encode {figures.encode_per_s:,.0f}/s, "
        f"decode {figures.decode_per_s:,.0f}/s, round trip {figures.round_trip_per_s:,.0f}/s "
        f"(IQR {figures.round_trip_spread:,.0f}; wall clock {figures.wall_round_trip_per_s:,.0f}/s) "
        f"(target {TARGET_FRAMES_PER_S:,}/s: {verdict(figures)})"
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


# Per-round figures of one run of side_by_side: label -> clock -> figure key -> one value per round.
PerRound = dict[str, dict[str, dict[str, list[float]]]]


def side_by_side(revision: str, rounds: int, frames: int, repeats: int = REPEATS_PER_ROUND) -> PerRound:
    """Per-round figures of ``revision``'s codec and this one, by both clocks, alternating which goes first."""
    codecs: dict[str, ModuleType] = {revision: codec_at(revision), "this tree": two_part}
    body = small_item_body()
    per_round: PerRound = {label: {clock: {key: [] for _, key in FIGURES} for clock in CLOCKS} for label in codecs}
    for index in range(rounds):
        order = list(codecs) if index % 2 == 0 else list(reversed(codecs))
        line = []
        for label in order:
            _, figures = measure_once(body, frames, codecs[label], repeats)
            for clock, values in figures.items():
                for key, value in values.items():
                    per_round[label][clock][key].append(value)
            cpu, wall = figures["cpu"]["round_trip_per_s"], figures["wall"]["round_trip_per_s"]
            line.append(f"{label} {cpu:,.0f}/s CPU, {wall:,.0f}/s wall")
        print(f"round {index + 1}: round trip " + "; ".join(line), flush=True)
    return per_round


def compare(name: str, revision: str, old: list[float], new: list[float]) -> str:
    """One figure of both codecs; the ratio only when the medians differ by more than the larger spread."""
    old_median, new_median = statistics.median(old), statistics.median(new)
    spread = max(spread_of(old), spread_of(new))
    ratio = f"{new_median / old_median:.2f}x" if abs(new_median - old_median) > spread else "noise"
    wins = sum(1 for a, b in zip(new, old, strict=True) if a > b)
    return (
        f"{name}: {revision} median {old_median:,.0f}/s (best {max(old):,.0f}, IQR {spread_of(old):,.0f}); "
        f"this tree median {new_median:,.0f}/s (best {max(new):,.0f}, IQR {spread_of(new):,.0f}); "
        f"this/{revision} {ratio}, ahead in {wins}/{len(old)} rounds"
    )


def print_comparison(revision: str, per_round: PerRound, clock: str = DEFAULT_CLOCK) -> None:
    old, new = per_round[revision], per_round["this tree"]
    print(f"figures by {CLOCK_NAMES[clock]}:")
    for name, key in FIGURES:
        print(compare(name, revision, old[clock][key], new[clock][key]))
    for other in CLOCKS:
        if other != clock:
            key = "round_trip_per_s"
            print(f"by {CLOCK_NAMES[other]}: " + compare("round trip", revision, old[other][key], new[other][key]))


def main() -> None:
    """``python -m loadtests.codec_bench``: the codec's figures alone, with the machine and its load."""
    import os

    from fixtures.suite_runs import cpu_model

    parser = argparse.ArgumentParser(prog="python -m loadtests.codec_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames per run")
    parser.add_argument("--against", metavar="REV", help="also measure the codec of this git revision, interleaved")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help=f"rounds (>= {MIN_ROUNDS}); medians over them")
    parser.add_argument(
        "--repeats", type=int, default=REPEATS_PER_ROUND, help="runs of each measurement per round; the best counts"
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default=DEFAULT_CLOCK,
        help="clock of the figures: process CPU time (default; immune to other processes taking the core) or wall",
    )
    args = parser.parse_args()
    if args.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}: medians and spreads need them")
    if args.repeats < 1 or args.frames < 1:
        parser.error("--repeats and --frames must be at least 1")
    machine = f"{os.cpu_count()} CPUs, {cpu_model() or 'unknown CPU'}"
    before = os.getloadavg()[0]
    if args.against:
        try:
            per_round = side_by_side(args.against, args.rounds, args.frames, args.repeats)
        except ValueError as exc:
            parser.error(str(exc))
        print_comparison(args.against, per_round, args.clock)
        print(f"{machine}, load average {before:.2f} before, {os.getloadavg()[0]:.2f} after")
        return
    figures = measure(args.frames, args.repeats, rounds=args.rounds, clock=args.clock)
    print(f"{describe(figures)}; {machine}, load average {before:.2f} before, {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
