"""The worker's fast paths (issue 16) produce exactly what the general paths produce.

Why: the optimisations must not change a byte on the wire or a verdict on bad input.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_impl.errors import ProtocolError
from reference_impl.protocol.messages import ResponseStreamPrologue, encode_final
from reference_impl.protocol.payload_codec import PayloadCodec
from reference_impl.protocol.response_stream import WorkerStream
from reference_impl.wire import two_part


def general(data: bytes, limit: int | None) -> two_part.TwoPartMessage | None:
    try:
        messages = two_part.decode_all(data, max_message_size=limit)
    except ProtocolError:
        return None
    return messages[0] if len(messages) == 1 else None


frames = st.builds(lambda h, d: two_part.encode(h, d), st.binary(max_size=64), st.binary(max_size=64))


@given(st.lists(frames, max_size=3).map(b"".join), st.binary(max_size=8), st.sampled_from([None, 24, 64, 1 << 20]))
def test_decode_single_agrees_with_the_incremental_decoder(joined: bytes, tail: bytes, limit: int | None) -> None:
    for data in (joined, joined + tail, joined[:-1]):
        assert two_part.decode_single(data, max_message_size=limit) == general(data, limit)


@given(st.binary(max_size=100))
def test_decode_single_on_arbitrary_bytes(data: bytes) -> None:
    assert two_part.decode_single(data, max_message_size=None) == general(data, None)


@pytest.mark.parametrize("codec", list(PayloadCodec))
def test_cached_stream_frames_are_the_encoded_frames(codec: PayloadCodec) -> None:
    stream = WorkerStream("subject-1", codec)
    stream.handshake()
    assert stream.prologue() == two_part.encode(ResponseStreamPrologue(None).to_json_bytes())
    stream.item({"x": 1})
    assert stream.final() == two_part.encode(data=encode_final(codec))
    assert stream.sentinel() == two_part.encode(b'"sentinel"')


def test_checksummed_stream_frames_are_not_taken_from_the_cache() -> None:
    stream = WorkerStream("subject-1", PayloadCodec.MSGPACK, write_checksum=True)
    stream.handshake()
    prologue = stream.prologue()
    assert prologue == two_part.encode(ResponseStreamPrologue(None).to_json_bytes(), write_checksum=True)
    assert two_part.PRELUDE.unpack_from(prologue, 0)[2] != 0
