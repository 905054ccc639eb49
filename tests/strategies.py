"""Hypothesis strategies shared by the sans-IO codec tests."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import strategies as st

from reference_impl.wire.two_part import TwoPartMessage

# Small sizes keep each example cheap; the codecs do not special-case large parts
# except for buffer compaction, which has its own example-based tests.
headers = st.binary(max_size=48)
bodies = st.binary(max_size=200)
two_part_messages = st.builds(TwoPartMessage, header=headers, data=bodies)

# What a request carries: a {str: str} header map, as Dynamo sends it.
header_maps = st.dictionaries(st.text(max_size=12), st.text(max_size=24), max_size=5)

# Values that survive both JSON and msgpack unchanged: no NaN (NaN != NaN), no
# infinities (not JSON), ints within msgpack's range, string keys only.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# A response item must carry data: a top-level null reads as "no data".
item_data = json_values.filter(lambda value: value is not None)


@st.composite
def chunks_of(draw: st.DrawFn, blob: bytes) -> list[bytes]:
    """``blob`` cut into pieces: whole, one byte at a time, or at drawn split points (empty pieces included)."""
    mode = draw(st.sampled_from(["split", "bytewise", "whole"]))
    if mode == "whole":
        return [blob]
    if mode == "bytewise":
        return [blob[i : i + 1] for i in range(len(blob))]
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(blob)), max_size=16)))
    bounds = [0, *cuts, len(blob)]
    return [blob[start:end] for start, end in pairwise(bounds)]
