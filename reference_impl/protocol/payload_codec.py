"""Codec of request bodies and response items, negotiated through discovery.

A worker advertises ``request_plane_codec`` in its instance record; the
caller encodes the body with it and names it in the control message's
``payload_codec`` (absent means JSON, for legacy peers).  Response items use
the same codec.  msgpack maps use string keys, as ``rmp_serde::to_vec_named``.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import msgpack

from reference_impl.errors import MalformedMessage


class PayloadCodec(enum.Enum):
    JSON = "json"
    MSGPACK = "msgpack"

    @classmethod
    def parse(cls, value: str | None) -> PayloadCodec:
        """Dynamo's rule: absent or empty means the legacy JSON codec."""
        if value is None or value == "":
            return cls.JSON
        codec = _BY_WIRE_NAME.get(value)  # the exact spelling, as every request carries it: no Enum call
        if codec is not None:
            return codec
        try:
            return cls(value.lower())
        except ValueError:
            raise MalformedMessage(f"unknown payload codec {value!r} (expected 'json' or 'msgpack')") from None

    def encode(self, value: Any) -> bytes:
        if self is PayloadCodec.JSON:
            return dumps_compact(value)
        return msgpack.packb(value, use_bin_type=True)

    def decode(self, raw: bytes) -> Any:
        try:
            if self is PayloadCodec.JSON:
                return json.loads(raw)
            return msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except (ValueError, TypeError, RecursionError) as exc:  # msgpack errors subclass ValueError
            raise MalformedMessage(f"cannot decode {self.value} payload: {exc}") from exc


_BY_WIRE_NAME = {codec.value: codec for codec in PayloadCodec}


def dumps_compact(value: Any) -> bytes:
    """JSON the way serde_json writes it: no spaces, UTF-8, insertion order."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
