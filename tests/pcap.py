"""Tiny classic-pcap reader: just enough to pull TCP byte streams out of loopback captures.

Written with ``struct`` only so the golden tests need neither scapy nor tshark.  It
understands the link types tcpdump produces on Linux loopback (Ethernet, BSD null,
raw IP, Linux cooked v1 and v2), IPv4/IPv6 without extension headers, and TCP.
Streams are reassembled per direction from sequence numbers, so retransmissions
and reordering do not corrupt them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
IPPROTO_TCP = 6

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04


@dataclass(frozen=True, slots=True)
class TcpSegment:
    timestamp: float
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    flags: int
    payload: bytes

    @property
    def is_syn(self) -> bool:
        return bool(self.flags & TCP_SYN)

    @property
    def is_fin(self) -> bool:
        return bool(self.flags & TCP_FIN)

    @property
    def is_rst(self) -> bool:
        return bool(self.flags & TCP_RST)


@dataclass(slots=True)
class TcpStream:
    """One direction of one TCP connection, as the receiving application saw it."""

    src: tuple[str, int]
    dst: tuple[str, int]
    data: bytes = b""
    fin_at: float | None = None
    rst_at: float | None = None
    chunks: list[tuple[float, bytes]] = field(default_factory=list)


def read_frames(path: str | Path) -> tuple[int, list[tuple[float, bytes]]]:
    """Link type and ``(timestamp, link-layer bytes)`` of every record in a classic pcap file."""
    raw = Path(path).read_bytes()
    if raw[:4] not in PCAP_MAGIC:
        raise ValueError(f"{path}: not a classic pcap file (magic {raw[:4].hex()})")
    order, tick = PCAP_MAGIC[raw[:4]]
    linktype = struct.unpack_from(order + "I", raw, 20)[0] & 0x0FFFFFFF
    frames, offset = [], 24
    while offset + 16 <= len(raw):
        seconds, fraction, captured, _original = struct.unpack_from(order + "IIII", raw, offset)
        offset += 16
        frames.append((seconds + fraction * tick, raw[offset : offset + captured]))
        offset += captured
    return linktype, frames


def network_layer(linktype: int, frame: bytes) -> tuple[int, bytes]:
    """Ethertype and the network-layer packet inside one link-layer frame."""
    if linktype == LINKTYPE_ETHERNET:
        return struct.unpack_from(">H", frame, 12)[0], frame[14:]
    if linktype == LINKTYPE_LINUX_SLL:
        return struct.unpack_from(">H", frame, 14)[0], frame[16:]
    if linktype == LINKTYPE_LINUX_SLL2:
        return struct.unpack_from(">H", frame, 0)[0], frame[20:]
    if linktype == LINKTYPE_NULL:
        family = struct.unpack_from("<I", frame, 0)[0]
        return (ETHERTYPE_IPV4 if family == 2 else ETHERTYPE_IPV6), frame[4:]
    if linktype == LINKTYPE_RAW:
        return (ETHERTYPE_IPV4 if frame[0] >> 4 == 4 else ETHERTYPE_IPV6), frame
    raise ValueError(f"unsupported pcap link type {linktype}")


def transport_layer(ethertype: int, packet: bytes) -> tuple[str, str, int, bytes] | None:
    """Source, destination, IP protocol and IP payload, or None for non-IP packets."""
    if ethertype == ETHERTYPE_IPV4:
        header_len = (packet[0] & 0x0F) * 4
        total_len = struct.unpack_from(">H", packet, 2)[0]
        src, dst = ".".join(map(str, packet[12:16])), ".".join(map(str, packet[16:20]))
        return src, dst, packet[9], packet[header_len:total_len]
    if ethertype == ETHERTYPE_IPV6:
        payload_len = struct.unpack_from(">H", packet, 4)[0]
        return packet[8:24].hex(), packet[24:40].hex(), packet[6], packet[40 : 40 + payload_len]
    return None


def tcp_segments(path: str | Path) -> list[TcpSegment]:
    """Every TCP segment in the capture, in capture order."""
    linktype, frames = read_frames(path)
    segments = []
    for timestamp, frame in frames:
        network = transport_layer(*network_layer(linktype, frame))
        if network is None or network[2] != IPPROTO_TCP:
            continue
        src, dst, _proto, tcp = network
        sport, dport, seq = struct.unpack_from(">HHI", tcp, 0)
        data_offset = (tcp[12] >> 4) * 4
        segment = TcpSegment(timestamp, (src, sport), (dst, dport), seq, tcp[13], tcp[data_offset:])
        segments.append(segment)
    return segments


def reassemble(segments: list[TcpSegment]) -> list[TcpStream]:
    """Per-direction byte streams, in order of first appearance.

    Bytes are placed by sequence number relative to the SYN (or the first segment
    seen), so duplicates overwrite themselves and out-of-order segments land right.
    """
    streams: dict[tuple[tuple[str, int], tuple[str, int]], TcpStream] = {}
    buffers: dict[tuple[tuple[str, int], tuple[str, int]], dict[int, bytes]] = {}
    initial_seq: dict[tuple[tuple[str, int], tuple[str, int]], int] = {}
    for segment in segments:
        key = (segment.src, segment.dst)
        stream = streams.setdefault(key, TcpStream(segment.src, segment.dst))
        placed = buffers.setdefault(key, {})
        if segment.is_syn:
            initial_seq[key] = (segment.seq + 1) & 0xFFFFFFFF
        start = initial_seq.setdefault(key, segment.seq)
        if segment.payload:
            offset = (segment.seq - start) & 0xFFFFFFFF
            if offset not in placed:
                stream.chunks.append((segment.timestamp, segment.payload))
            placed[offset] = segment.payload
        if segment.is_fin and stream.fin_at is None:
            stream.fin_at = segment.timestamp
        if segment.is_rst and stream.rst_at is None:
            stream.rst_at = segment.timestamp
    for key, stream in streams.items():
        stream.data = join_placed(buffers[key])
    return list(streams.values())


def join_placed(placed: dict[int, bytes]) -> bytes:
    """Concatenate ``offset -> bytes`` pieces, refusing holes."""
    out = bytearray()
    for offset in sorted(placed):
        piece = placed[offset]
        if offset > len(out):
            raise ValueError(f"gap in TCP stream at offset {len(out)} (next piece at {offset})")
        out[offset : offset + len(piece)] = piece
    return bytes(out)


def tcp_streams(path: str | Path) -> list[TcpStream]:
    return reassemble(tcp_segments(path))
