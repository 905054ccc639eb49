"""``loadtests.codec_bench --against REV``: another revision's codec measured beside this one."""

from __future__ import annotations

from loadtests import codec_bench
from reference_impl.wire import two_part


def test_a_revisions_codec_is_loaded_as_a_module_of_its_own() -> None:
    old = codec_bench.codec_at("HEAD")
    assert old is not two_part and old.__name__ == "two_part_at_HEAD"
    decoder = old.TwoPartDecoder()
    decoder.feed(old.encode(b"h", b"body"))
    assert tuple(decoder.next_message()) == (b"h", b"body")


def test_side_by_side_measures_both_codecs_in_every_round() -> None:
    per_round = codec_bench.side_by_side("HEAD", rounds=codec_bench.MIN_ROUNDS, frames=50)
    assert set(per_round) == {"HEAD", "this tree"}
    for figures in per_round.values():
        assert [len(values) for values in figures.values()] == [codec_bench.MIN_ROUNDS] * 3
        assert all(value > 0 for values in figures.values() for value in values)
