"""pcap: classic libpcap capture files, read down to their UDP payloads, so that
`pflowbsd dump -r` can decode what tcpdump or tshark saved on a collector host.
pcapng is refused with a clear error (write captures with `-F pcap`).

Strategy.  Pure: the file's bytes in, one (time, src, src port, dst, dst port, payload)
per UDP datagram out.  Each link type is a function from a frame to the IP packet in it
(LINK_LAYERS); the packet is walked to an unfragmented UDP segment; a frame that does not
parse is skipped, a file that is not a classic capture raises PcapError.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterator


def _uint(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _addr(b: bytes) -> str:
    return str(ipaddress.ip_address(b))


class PcapError(ValueError):
    """The file is not a classic libpcap capture we can read."""


PCAP_MAGIC = {  # first four bytes -> (byte order, timestamp divisor)
    b"\xd4\xc3\xb2\xa1": ("<", 1e6), b"\xa1\xb2\xc3\xd4": (">", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9), b"\xa1\xb2\x3c\x4d": (">", 1e9),
}
# Global header, 24 bytes: magic 0, version_major 4, version_minor 6, thiszone 8,
# sigfigs 12, snaplen 16, linktype 20.  Record header, 16 bytes: ts_sec 0, ts_frac 4,
# incl_len 8, orig_len 12.
PCAP_HEADER = "IHHiIII"
PCAP_RECORD = "IIII"
# UDP header, 8 bytes: source port 0, destination port 2, length 4, checksum 6.
UDP = struct.Struct("!HHHH")
ETHERTYPE_IP = {0x0800: 4, 0x86DD: 6}
AF_IP = {2: 4, 10: 6, 24: 6, 28: 6, 30: 6}  # DLT_NULL: Linux, OpenBSD, FreeBSD, macOS inet6


def _ether(frame: bytes, order: str) -> bytes | None:
    off = 12
    while frame[off:off + 2] in (b"\x81\x00", b"\x88\xa8"):  # 802.1Q / 802.1ad tags
        off += 4
    return frame[off + 2:] if _uint(frame[off:off + 2]) in ETHERTYPE_IP else None


def _null(frame: bytes, order: str) -> bytes | None:
    (af,) = struct.unpack_from(order + "I", frame)
    return frame[4:] if af in AF_IP else None


def _loop(frame: bytes, order: str) -> bytes | None:
    return _null(frame, ">")


def _sll(frame: bytes, order: str) -> bytes | None:
    return frame[16:] if _uint(frame[14:16]) in ETHERTYPE_IP else None


def _sll2(frame: bytes, order: str) -> bytes | None:
    return frame[20:] if _uint(frame[0:2]) in ETHERTYPE_IP else None


# LINKTYPE_* -> the IP packet inside a frame (given the file's byte order)
LINK_LAYERS: dict[int, Callable[[bytes, str], bytes | None]] = {
    0: _null, 1: _ether, 12: lambda f, o: f, 14: lambda f, o: f, 101: lambda f, o: f,
    108: _loop, 113: _sll, 228: lambda f, o: f, 229: lambda f, o: f, 276: _sll2,
}


def _udp_in_ip(pkt: bytes) -> tuple[str, str, bytes] | None:
    """(src, dst, UDP segment) of an unfragmented UDP packet, else None."""
    version = pkt[0] >> 4 if pkt else 0
    if version == 4 and len(pkt) >= 20:
        ihl = (pkt[0] & 0x0F) * 4
        if pkt[9] != 17 or _uint(pkt[6:8]) & 0x3FFF:  # not UDP, or a fragment
            return None
        return _addr(pkt[12:16]), _addr(pkt[16:20]), pkt[ihl:_uint(pkt[2:4])]
    if version == 6 and len(pkt) >= 40:
        nxt, off, end = pkt[6], 40, 40 + _uint(pkt[4:6])
        while nxt in (0, 43, 60) and off + 2 <= len(pkt):  # hop-by-hop, routing, dstopts
            nxt, off = pkt[off], off + (pkt[off + 1] + 1) * 8
        return (_addr(pkt[8:24]), _addr(pkt[24:40]), pkt[off:end]) if nxt == 17 else None
    return None


def read_pcap(data: bytes) -> Iterator[tuple[float, str, int, str, int, bytes]]:
    """Yield (time, src, src_port, dst, dst_port, payload) for each UDP datagram."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        raise PcapError("pcapng is not supported; convert it: editcap -F pcap IN OUT")
    if data[:4] not in PCAP_MAGIC:
        raise PcapError("not a libpcap capture file")
    order, frac = PCAP_MAGIC[data[:4]]
    header, record = struct.Struct(order + PCAP_HEADER), struct.Struct(order + PCAP_RECORD)
    if len(data) < header.size:
        raise PcapError("truncated pcap header")
    linktype = header.unpack_from(data)[6] & 0x0FFFFFFF
    link = LINK_LAYERS.get(linktype)
    if link is None:
        raise PcapError(f"unsupported link type {linktype}")
    off = header.size
    while off + record.size <= len(data):
        secs, sub, incl, _ = record.unpack_from(data, off)
        frame = data[off + record.size:off + record.size + incl]
        off += record.size + incl
        try:
            pkt = link(frame, order)
            found = pkt and _udp_in_ip(pkt)
        except (IndexError, struct.error):
            continue
        if found and len(found[2]) >= UDP.size:
            src, dst, seg = found
            sport, dport, length, _ = UDP.unpack_from(seg)
            yield secs + sub / frac, src, sport, dst, dport, seg[UDP.size:max(length, 8)]
