"""Sans-IO two-part codec: ``u64 header_len | u64 body_len | u64 checksum | header | body``.

All integers are big-endian.  A frame has no magic number or type byte; its
kind follows from which parts are empty.  The checksum is XXH3-64 (seed 0)
of ``header || body``; Dynamo release builds write 0, and 0 is always
accepted.  A size limit is enforced from the 24-byte prelude alone, so an
oversized declaration fails before any of its body is buffered.

The decoder never does I/O: feed it bytes in any chunking and pull messages.
"""

from __future__ import annotations

import enum
import functools
import struct
from collections.abc import Iterator
from typing import NamedTuple

from reference_impl.errors import ChecksumMismatch, FrameTooLarge, TruncatedFrame
from reference_impl.wire.checksum import xxh3_64

PRELUDE = struct.Struct(">QQQ")
PRELUDE_SIZE = PRELUDE.size  # 24
_pack_prelude = PRELUDE.pack  # bound once: encode and decode run per frame
_unpack_prelude = PRELUDE.unpack_from
U64_MAX = (1 << 64) - 1
# Larger than any frame a prelude can declare (24 + 2 * U64_MAX): "no limit" as a number, so the
# decoder's per-frame check is one comparison.
_NO_LIMIT = 1 << 66

# Dynamo's TwoPartCodec::default() is unlimited; an unbounded buffer is not an
# option for a server exposed to arbitrary peers, so the reference bounds it.
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024


class MessageKind(enum.Enum):
    HEADER_ONLY = "header_only"  # control messages
    DATA_ONLY = "data_only"  # response items
    HEADER_AND_DATA = "header_and_data"  # request envelope
    EMPTY = "empty"


class TwoPartMessage(NamedTuple):
    header: bytes = b""
    data: bytes = b""

    @property
    def kind(self) -> MessageKind:
        if self.header:
            return MessageKind.HEADER_AND_DATA if self.data else MessageKind.HEADER_ONLY
        return MessageKind.DATA_ONLY if self.data else MessageKind.EMPTY

    @property
    def wire_size(self) -> int:
        return PRELUDE_SIZE + len(self.header) + len(self.data)


# TwoPartMessage(...) goes through a Python-level __new__; building the tuple directly is cheaper per frame.
_new_message = functools.partial(tuple.__new__, TwoPartMessage)
_tuple_new = tuple.__new__  # the decoder's per-frame path calls it directly: cheaper than through the partial


# Response items (header-less frames, one per streamed item) are mostly small: the preludes of those with a
# body under this many bytes are packed once at import (about 57 KiB) instead of once per frame.
ITEM_PRELUDE_CACHE = 1024
_ITEM_PRELUDES = tuple(_pack_prelude(0, body_len, 0) for body_len in range(ITEM_PRELUDE_CACHE))
# The same preludes indexed by the whole frame's length, for the decoder: the entry at a chunk's length is
# the prelude that chunk starts with if it is exactly one such item frame.  A chunk shorter than a prelude
# can hold no frame: its entries are longer than it is, so no chunk starts with one.
_NO_FRAME = b"\xff" * (PRELUDE_SIZE + 1)
_ITEM_PRELUDES_BY_FRAME_LEN = (_NO_FRAME,) * PRELUDE_SIZE + _ITEM_PRELUDES
_ITEM_BODY = slice(PRELUDE_SIZE, None)  # an item frame's body, as one constant: no slice object per frame
_starts_with = bytes.startswith  # also refuses (TypeError) a bytearray or memoryview, which must be copied


def frame_size(header_len: int, body_len: int) -> int:
    return PRELUDE_SIZE + header_len + body_len


def encode(
    header: bytes = b"",
    data: bytes = b"",
    write_checksum: bool = False,
    max_message_size: int | None = None,
) -> bytes:
    """Encode one frame; the checksum is 0 unless ``write_checksum``.

    Pass ``write_checksum`` and ``max_message_size`` by keyword.  They are not
    keyword-only because CPython 3.11 calls a function with keyword-only
    parameters the slow way (a dict lookup per defaulted one): about 45 ns on
    every frame, a quarter of an item's encode.
    """
    if not header and not write_checksum and max_message_size is None:
        # A response item (the frame sent once per streamed item): a stored prelude, one concatenation.
        try:
            return _ITEM_PRELUDES[len(data)] + data
        except IndexError:  # a body of ITEM_PRELUDE_CACHE bytes or more
            return _pack_prelude(0, len(data), 0) + data
    return _encode_checked(header, data, write_checksum, max_message_size)


def _encode_checked(header: bytes, data: bytes, write_checksum: bool, max_message_size: int | None) -> bytes:
    """Every frame that has a header, a checksum or a size limit to check."""
    body_len = len(data)
    if max_message_size is not None:
        total = PRELUDE_SIZE + len(header) + body_len
        if total > max_message_size:
            raise FrameTooLarge(total, max_message_size)
    checksum = xxh3_64(header, data) if write_checksum else 0
    if header or checksum or body_len >= ITEM_PRELUDE_CACHE:
        return _pack_prelude(len(header), body_len, checksum) + header + data
    return _ITEM_PRELUDES[body_len] + data


def encode_message(message: TwoPartMessage, *, write_checksum: bool = False) -> bytes:
    return encode(message.header, message.data, write_checksum=write_checksum)


class TwoPartDecoder:
    """Incremental decoder.

    ``feed()`` bytes, then call ``next_message()`` until it returns ``None``
    (need more bytes).  A wire error is raised once and then remembered: the
    decoder is poisoned, as a connection that sent a bad frame cannot be
    resynchronised (there is no frame marker to find).

    While nothing is pending, a fed ``bytes`` chunk is kept as it is and its
    frames are sliced from it (one copy per part).  A partial frame left at
    its end is joined with the next chunk into one ``bytes`` object when it is
    no longer than that chunk; anything longer (a long frame arriving in small
    chunks) is grown in a ``bytearray`` the decoder owns.

    Single-frame fast path: a chunk fed while nothing is pending that holds
    exactly one whole frame (a response item as one socket read delivers it)
    is decoded by ``feed`` itself, and ``next_message`` hands the ready message
    over without parsing again.  Everything observable stays as if the chunk
    were merely held: its bytes count as ``buffered`` and its prelude is
    peeked until the message is pulled.  Only frames that cannot fail take it:
    a frame over the size limit, a frame with a checksum (whether or not this
    decoder verifies it: the one place that decides is the general path) and
    any chunk fed to a poisoned decoder take the general path, so every error
    is raised where and as it always was.  A header-less, checksum-0 frame
    under ``ITEM_PRELUDE_CACHE`` bytes of body (the response item) is
    recognised by one comparison with its stored prelude.
    """

    __slots__ = ("_buf", "_error", "_fast_limit", "_item_preludes", "_max", "_pos", "_ready", "_verify")

    def __init__(
        self,
        *,
        max_message_size: int | None = DEFAULT_MAX_FRAME_SIZE,
        verify_checksum: bool = False,
    ) -> None:
        # The unconsumed bytes are _buf[_pos:]: a fed ``bytes`` chunk (never mutated: it may be the
        # caller's), or a bytearray the decoder owns once a partial frame had to be held.  b"" when empty.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._max = _NO_LIMIT if max_message_size is None else max_message_size
        # The largest frame feed's single-frame path may decode: the limit, or -1 once poisoned, so that
        # path's one size comparison also keeps a poisoned decoder out of it.
        self._fast_limit = self._max
        # The item preludes feed recognises: those of frames within the limit, none once poisoned.
        self._item_preludes = _ITEM_PRELUDES_BY_FRAME_LEN[: self._max + 1]
        self._verify = verify_checksum
        self._error: Exception | None = None
        # The message decoded by feed's single-frame path: the whole of _buf (at _pos 0) is that frame.
        # None whenever the decoder is poisoned, so next_message may return it without an error check.
        self._ready: TwoPartMessage | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buf) - self._pos

    @property
    def error(self) -> Exception | None:
        return self._error

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if not self._buf:
            # The single-frame path for a response item (see the class docstring): nothing pending, a
            # ``bytes`` chunk, exactly one item frame within the limit, a decoder not poisoned.
            try:
                # bytes.startswith raises TypeError for anything but bytes: the check needs no type test.
                if _starts_with(data, self._item_preludes[len(data)]):  # type: ignore[arg-type]
                    self._ready = _tuple_new(TwoPartMessage, (b"", data[_ITEM_BODY]))
                    self._buf = data  # type: ignore[assignment]  # bytes: startswith took it
                    return
            except (IndexError, TypeError):  # a longer frame, or not bytes
                pass
            if data.__class__ is bytes and len(data) >= PRELUDE_SIZE:
                # The single-frame path for any other frame that cannot fail.
                header_len, body_len, checksum = _unpack_prelude(data)
                total = PRELUDE_SIZE + header_len + body_len
                if total == len(data) and total <= self._fast_limit and not checksum:
                    middle = PRELUDE_SIZE + header_len
                    self._ready = _tuple_new(TwoPartMessage, (data[PRELUDE_SIZE:middle], data[middle:]))
                    self._buf = data
                    return
        self._feed(data)

    def _feed(self, data: bytes | bytearray | memoryview) -> None:
        """Every chunk the single-frame path does not take."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        if not buf:
            # Nothing pending: hold the chunk itself (a bytearray or memoryview may be reused by its owner).
            self._buf = data if data.__class__ is bytes else bytes(data)
            return
        self._ready = None  # its frame is in _buf: the general path decodes it again after this chunk joins
        pos = self._pos
        pending = len(buf) - pos
        if pending <= len(data):
            # Usually the tail of a frame cut by the last read: it joins the chunk in one bytes object, so
            # the chunk's frames are sliced with one copy each.  Copying at most len(data) pending bytes
            # per feed keeps the total work linear in the bytes fed.
            self._buf = b"".join((memoryview(buf)[pos:], data))
            self._pos = 0
            return
        # More pending than fed (a long frame in small chunks, or a consumer not pulling): grow a
        # buffer the decoder owns, amortised rather than quadratic.
        if buf.__class__ is bytes:
            buf = self._buf = bytearray(memoryview(buf)[pos:])
            self._pos = 0
        buf += data  # a bytearray here

    def next_message(self) -> TwoPartMessage | None:
        message = self._ready
        if message is not None:
            self._ready = None
            self._buf = b""  # _pos is 0: the ready frame was the whole buffer
            return message
        # The general path: parse the next frame from _buf.
        if self._error is not None:
            raise self._error
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if available < PRELUDE_SIZE:
            return None
        header_len, body_len, checksum = _unpack_prelude(buf, pos)
        total = PRELUDE_SIZE + header_len + body_len
        if total > self._max:
            raise self._poison(FrameTooLarge(total, self._max))
        if total > available:
            return None
        start = pos + PRELUDE_SIZE
        middle = start + header_len
        end = pos + total
        if buf.__class__ is bytes:
            # One copy per part; an empty slice of bytes is the shared b"" (response items have no header).
            message = _tuple_new(TwoPartMessage, (buf[start:middle] if header_len else b"", buf[middle:end]))
        else:
            message = _tuple_new(
                TwoPartMessage,
                (bytes(buf[start:middle]) if header_len else b"", bytes(buf[middle:end]) if body_len else b""),
            )
        if total == available:
            self._buf = b""  # the next chunk is held as it is
            self._pos = 0
        elif end > 65536 and end * 2 > len(buf) and buf.__class__ is bytearray:
            del buf[:end]  # a bytearray here
            self._pos = 0
        else:
            self._pos = end
        # Every frame with a checksum comes this way (feed's single-frame path leaves them): verified or not, here.
        if self._verify and checksum != 0:
            actual = xxh3_64(message.header, message.data)
            if actual != checksum:
                raise self._poison(ChecksumMismatch(checksum, actual))
        return message

    def _poison(self, error: Exception) -> Exception:
        """Remember ``error`` for every later call, and keep the single-frame path out."""
        self._error = error
        self._fast_limit = -1
        self._item_preludes = ()
        self._ready = None
        return error

    def __iter__(self) -> Iterator[TwoPartMessage]:
        while (message := self.next_message()) is not None:
            yield message

    def peek_prelude(self) -> tuple[int, int, int] | None:
        """``(header_len, body_len, checksum)`` of the next frame, once its prelude is in."""
        if self.buffered < PRELUDE_SIZE:
            return None
        header_len, body_len, checksum = PRELUDE.unpack_from(self._buf, self._pos)
        return header_len, body_len, checksum

    def pending_frame_size(self) -> int | None:
        """Declared size of the partially received frame, if its prelude is in."""
        prelude = self.peek_prelude()
        return None if prelude is None else PRELUDE_SIZE + prelude[0] + prelude[1]

    def feed_eof(self) -> None:
        """Declare the end of the byte stream; raises if it cut a frame short."""
        if self._error is not None:
            raise self._error
        if self.buffered:
            raise self._poison(TruncatedFrame(self.buffered, self.pending_frame_size()))


def decode_single(data: bytes, *, max_message_size: int | None = DEFAULT_MAX_FRAME_SIZE) -> TwoPartMessage | None:
    """The one frame ``data`` holds exactly (checksum not verified), or None for anything else.

    A fast path for a request envelope (one per request): no incremental decoder, no buffer
    copy.  None means "not exactly one well-formed frame"; :func:`decode_all` says what is wrong.
    """
    if len(data) < PRELUDE_SIZE:
        return None
    header_len, body_len, _ = PRELUDE.unpack_from(data, 0)
    total = PRELUDE_SIZE + header_len + body_len
    if total != len(data) or (max_message_size is not None and total > max_message_size):
        return None
    middle = PRELUDE_SIZE + header_len
    return _new_message((data[PRELUDE_SIZE:middle], data[middle:]))


def decode_all(
    data: bytes,
    *,
    max_message_size: int | None = DEFAULT_MAX_FRAME_SIZE,
    verify_checksum: bool = False,
) -> list[TwoPartMessage]:
    """Decode a complete byte string that must hold whole frames only."""
    decoder = TwoPartDecoder(max_message_size=max_message_size, verify_checksum=verify_checksum)
    decoder.feed(data)
    messages = list(decoder)
    decoder.feed_eof()
    return messages
