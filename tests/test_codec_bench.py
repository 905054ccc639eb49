"""``loadtests.codec_bench``: how its figures are timed, and another revision's codec measured beside this one."""

from __future__ import annotations

import sys
import time

import pytest

from loadtests import codec_bench
from reference_impl.wire import two_part


def test_a_revisions_codec_is_loaded_as_a_module_of_its_own() -> None:
    old = codec_bench.codec_at("HEAD")
    assert old is not two_part and old.__name__ == "two_part_at_HEAD"
    decoder = old.TwoPartDecoder()
    decoder.feed(old.encode(b"h", b"body"))
    assert tuple(decoder.next_message()) == (b"h", b"body")


def test_side_by_side_measures_both_codecs_by_both_clocks_in_every_round() -> None:
    per_round = codec_bench.side_by_side("HEAD", rounds=codec_bench.MIN_ROUNDS, frames=50, repeats=1)
    assert set(per_round) == {"HEAD", "this tree"}
    for clocks in per_round.values():
        assert set(clocks) == {"cpu", "wall"}
        for figures in clocks.values():
            assert [len(values) for values in figures.values()] == [codec_bench.MIN_ROUNDS] * 3
            assert all(value > 0 for values in figures.values() for value in values)


def test_the_cpu_clock_does_not_count_time_off_the_core() -> None:
    # A sleeping process is off the core, as one preempted by another process is: the wall clock counts it.
    seconds = codec_bench.timed(lambda: time.sleep(0.2))
    assert seconds["wall"] >= 0.2
    assert seconds["cpu"] < 0.1


def test_measure_reports_medians_by_the_chosen_clock_with_the_spread_and_the_wall_clock_beside() -> None:
    figures = codec_bench.measure(frames=200, repeats=2, rounds=codec_bench.MIN_ROUNDS, clock="cpu")
    assert (figures.clock, figures.rounds, figures.frame_bytes) == ("cpu", codec_bench.MIN_ROUNDS, 57)
    assert figures.round_trip_per_s > 0 and figures.wall_round_trip_per_s > 0 and figures.round_trip_spread >= 0
    assert figures.to_json()["clock"] == "cpu"
    assert "CPU time (time.process_time)" in codec_bench.describe(figures)
    with pytest.raises(ValueError, match="2 rounds"):
        codec_bench.measure(frames=10, rounds=1)


def figures_with(round_trip: float, spread: float) -> codec_bench.CodecFigures:
    return codec_bench.CodecFigures(57, 1.0, 1.0, round_trip, round_trip_spread=spread, rounds=6)


def test_the_target_is_undecided_while_it_lies_within_the_spread() -> None:
    target = codec_bench.TARGET_FRAMES_PER_S
    assert codec_bench.verdict(figures_with(target + 50_000, 10_000)) == "met"
    assert codec_bench.verdict(figures_with(target - 50_000, 10_000)) == "MISSED"
    assert codec_bench.verdict(figures_with(target + 50_000, 60_000)).startswith("undecided")


def test_a_ratio_is_refused_when_the_spread_exceeds_the_difference() -> None:
    steady_old, steady_new = [100.0, 101, 99, 100, 102, 98], [130.0, 131, 129, 130, 132, 128]
    assert "this/main 1.30x, ahead in 6/6 rounds" in codec_bench.compare("round trip", "main", steady_old, steady_new)
    noisy_new = [60.0, 200, 70, 190, 130, 131]
    assert "this/main noise" in codec_bench.compare("round trip", "main", steady_old, noisy_new)


def test_the_command_line_keeps_its_flags_and_refuses_too_few_rounds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["codec_bench", "--rounds", "3"])
    with pytest.raises(SystemExit):
        codec_bench.main()
    assert "--rounds must be at least 6" in capsys.readouterr().err
    monkeypatch.setattr(
        sys, "argv", ["codec_bench", "--frames", "100", "--repeats", "1", "--clock", "wall", "--against", "HEAD"]
    )
    codec_bench.main()
    out = capsys.readouterr().out
    assert "figures by wall clock (time.perf_counter):" in out
    assert "by CPU time (time.process_time): round trip: HEAD median" in out
    assert out.count("round trip: HEAD median") == 2
