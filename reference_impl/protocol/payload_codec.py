"""Codec of request bodies and response items, negotiated through discovery.

A worker advertises ``request_plane_codec`` in its instance record; the
caller encodes the body with it and names it in the control message's
``payload_codec`` (absent means JSON, for legacy peers).  Response items use
the same codec.  msgpack maps use string keys, as ``rmp_serde::to_vec_named``.

Decoding a request body is bounded (:class:`DecodeLimits`): one byte of
msgpack can become a 64-byte empty list or a 72-byte empty dict, so without
limits 31 MiB of ``[{}, {}, ...]`` would take gigabytes.  Above a small size
a body may hold at most one array or map per ``bytes_per_container`` bytes
and no array or map longer than one element per ``bytes_per_element`` bytes;
that keeps a decoded body within about 10 times its size (worst case: as
many empty maps as allowed, each 72 bytes of Python object per 32 bytes
received, plus an 8-byte reference to a shared constant per byte).  Time is
bounded by the same allowance: the guard counts containers as msgpack builds
them, and building is what a bomb of one-key maps costs (~1 us each on the
event loop), so a smaller allowance is a shorter stall for every other caller.  Nesting is bounded
by msgpack's own stack limit and by the interpreter's recursion limit for
JSON (both about 1000 levels), each reported as a malformed body.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

import msgpack

from reference_impl.errors import MalformedMessage

DECODE_CHECKED_ABOVE = 64 * 1024  # smaller bodies decode unchecked: at most ~72 x 64 KiB = 4.5 MiB
DECODE_BYTES_PER_CONTAINER = 32  # a body of n bytes holds at most n/32 arrays and maps ...
DECODE_BYTES_PER_ELEMENT = 2  # ... and no array or map longer than n/2 elements (pairs for maps)
DECODE_MIN_ALLOWANCE = 4096  # containers and elements always allowed, whatever the body's size


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """How much a body may amplify when decoded (see the module docstring); the defaults are the worker's."""

    checked_above: int = DECODE_CHECKED_ABOVE
    bytes_per_container: int = DECODE_BYTES_PER_CONTAINER
    bytes_per_element: int = DECODE_BYTES_PER_ELEMENT
    min_allowance: int = DECODE_MIN_ALLOWANCE

    def containers(self, size: int) -> int:
        return max(size // self.bytes_per_container, self.min_allowance)

    def elements(self, size: int) -> int:
        return max(size // self.bytes_per_element, self.min_allowance)


class _ContainerCounter:
    """msgpack's ``list_hook``/``object_hook``: counts arrays and maps, fails past the limit."""

    __slots__ = ("left",)

    def __init__(self, limit: int) -> None:
        self.left = limit

    def __call__(self, value: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise ValueError("too many arrays and maps for the body's size")
        return value


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

    def decode(self, raw: bytes, limits: DecodeLimits | None = None) -> Any:
        """The value ``raw`` encodes; with ``limits``, a body that would amplify past them is malformed."""
        try:
            if limits is None or len(raw) <= limits.checked_above:
                if self is PayloadCodec.JSON:
                    return json.loads(raw)
                return msgpack.unpackb(raw, raw=False, strict_map_key=False)
            return self._decode_bounded(raw, limits)
        except (ValueError, TypeError, RecursionError) as exc:  # msgpack errors subclass ValueError
            raise MalformedMessage(f"cannot decode {self.value} payload: {exc}") from exc

    def _decode_bounded(self, raw: bytes, limits: DecodeLimits) -> Any:
        size = len(raw)
        if self is PayloadCodec.JSON:
            # json has no list hook: count brackets at C speed, first all of them (an upper bound), and only when
            # that is over the allowance, those outside strings (a prompt quoting JSON or code is text, not arrays).
            allowed = limits.containers(size)
            if _brackets(raw) > allowed and _brackets_outside_json_strings(raw, allowed) > allowed:
                raise ValueError(f"too many arrays and objects for a {size}-byte body")
            return json.loads(raw)
        elements = limits.elements(size)
        counter = _ContainerCounter(limits.containers(size))
        return msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=False,
            max_array_len=elements,
            max_map_len=elements,
            max_str_len=size,
            max_bin_len=size,
            max_ext_len=size,
            list_hook=counter,
            object_hook=counter,
        )


_BY_WIRE_NAME = {codec.value: codec for codec in PayloadCodec}


def _brackets(raw: bytes) -> int:
    return raw.count(b"[") + raw.count(b"{")


# The window the bracket count outside strings works in: splitting a window on ``"`` makes one bytes object per
# piece (about 34 bytes each even when empty), so a body of nothing but tiny strings costs ~35x a window, not ~35x
# the body (16 MiB of ``{"a":0}`` cost +298 MiB when the whole body was split at once).
JSON_SCAN_WINDOW = 256 * 1024


def _brackets_outside_json_strings(raw: bytes, enough: int) -> int:
    """``[`` and ``{`` outside the strings of a JSON text, in linear time and bounded memory; stops past ``enough``.

    Inside a string ``\\\\`` and ``\\"`` are the only escapes that matter: dropped left to right (as a parser
    reads them), every ``"`` left opens or closes a string.  In invalid JSON the figure may be off only past the
    first error, where ``json.loads`` stops building anything.  The text is split window by window, carrying
    whether a window starts inside a string.
    """
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    count, inside = 0, False
    for start in range(0, len(unescaped), JSON_SCAN_WINDOW):
        pieces = unescaped[start : start + JSON_SCAN_WINDOW].split(b'"')
        count += _brackets(b"".join(pieces[1 if inside else 0 :: 2]))
        if len(pieces) % 2 == 0:  # an odd number of quotes in the window: the next starts on the other side
            inside = not inside
        if count > enough:
            break
    return count


def dumps_compact(value: Any) -> bytes:
    """JSON the way serde_json writes it: no spaces, UTF-8, insertion order."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
