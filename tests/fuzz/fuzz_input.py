"""How one flat fuzz input becomes options, a byte stream and the chunks it arrives in.

atheris mutates raw bytes and hypothesis builds structured values; both meet in this
format so that they drive exactly the same target code::

    option bytes (OPTION_COUNT) | stream

Option bytes pick limits and flags; the last one picks the chunking: 0 delivers the
stream whole, 1 byte by byte, anything else in pseudo-random pieces of 1..2n bytes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

OPTION_COUNT = 4
CHUNKING = OPTION_COUNT - 1
WHOLE = 0
BYTEWISE = 1


@dataclass(frozen=True, slots=True)
class FuzzInput:
    options: bytes
    stream: bytes

    @classmethod
    def parse(cls, raw: bytes) -> FuzzInput:
        options = raw[:OPTION_COUNT].ljust(OPTION_COUNT, b"\x00")
        return cls(options, raw[OPTION_COUNT:])

    def choose(self, index: int, choices: Sequence[T]) -> T:
        return choices[self.options[index] % len(choices)]

    def flag(self, index: int, bit: int) -> bool:
        return bool(self.options[index] >> bit & 1)

    def chunks(self) -> list[bytes]:
        return split(self.stream, self.options[CHUNKING])


def split(stream: bytes, chunking: int) -> list[bytes]:
    if chunking == WHOLE or not stream:
        return [stream]
    if chunking == BYTEWISE:
        return [stream[i : i + 1] for i in range(len(stream))]
    sizes = random.Random(chunking)
    pieces: list[bytes] = []
    position = 0
    while position < len(stream):
        step = sizes.randint(1, 2 * chunking)
        pieces.append(stream[position : position + step])
        position += step
    return pieces


def pack(stream: bytes, *options: int) -> bytes:
    """The raw input that :meth:`FuzzInput.parse` reads back as ``options`` and ``stream``."""
    if len(options) > OPTION_COUNT:
        raise ValueError(f"at most {OPTION_COUNT} option bytes")
    return bytes(o & 0xFF for o in options).ljust(OPTION_COUNT, b"\x00") + stream
