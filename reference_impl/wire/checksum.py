"""XXH3-64 (seed 0) over ``header || body``, the two-part frame checksum."""

from __future__ import annotations

import xxhash


def xxh3_64(header: bytes, data: bytes = b"") -> int:
    hasher = xxhash.xxh3_64()
    hasher.update(header)
    hasher.update(data)
    return hasher.intdigest()
