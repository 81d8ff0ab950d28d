"""-w FILE: every datagram sent, with the IP and UDP headers it left with, in a pcap file.

The userland stand-in for `tcpdump -i pflow0 -w FILE`: the kernel's sockets build the real
headers, so they are rebuilt here from what the socket was given: the local and remote
address and port of the collector's socket, the payload, the checksums.  Strategy: the
builders (udp_packet, file_header, record) are pure, bytes in and bytes out; PcapWriter,
the sender's tap, writes one record per datagram sent and flushes it, so `-w -` can be
piped into `tcpdump -r -`.  The capture is LINKTYPE_RAW: each record starts with the IPv4
or IPv6 header.  The pcap and UDP layouts are collector/pcap.py's, which reads them back.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import struct
import sys
import time
from typing import BinaryIO

from pflowbsd.collector.pcap import PCAP_HEADER, PCAP_RECORD, UDP
from pflowbsd.config import Endpoint

log = logging.getLogger("pflowbsd")
LINKTYPE_RAW = 101  # the record is the IP packet (pcap-linktype(7))
SNAPLEN = 65535
FILE_HEADER = struct.Struct("<" + PCAP_HEADER)  # written little-endian, microseconds
RECORD = struct.Struct("<" + PCAP_RECORD)
# IPv4 header, 20 bytes: version/IHL 0, TOS 1, total length 2, id 4, flags/fragment 6,
# TTL 8, protocol 9, header checksum 10, source 12, destination 16 (RFC 791).
IPV4 = struct.Struct("!BBHHHBBH4s4s")
# IPv6 header, 40 bytes: version/class/flow label 0, payload length 4, next header 6,
# hop limit 7, source 8, destination 24 (RFC 8200).
IPV6 = struct.Struct("!IHBB16s16s")
IPPROTO_UDP = 17
IP_DF = 0x4000
TTL = 64


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of data.  The ones' complement sum of the 16-bit
    words is the number the bytes spell modulo 0xffff (2^16 = 1 modulo 0xffff), with
    0xffff for 0 unless every byte is 0: one big-integer operation, not a word loop."""
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF
    if total == 0 and data.count(0) != len(data):
        total = 0xFFFF
    return ~total & 0xFFFF


@functools.lru_cache(maxsize=64)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)  # the same few socket addresses, datagram after datagram


def udp_packet(src: Endpoint, dst: Endpoint, payload: bytes, ident: int = 0) -> bytes:
    """The IPv4 or IPv6 packet carrying payload from src to dst, checksums filled in."""
    s, d = _address(src[0]), _address(dst[0])
    length = UDP.size + len(payload)
    if s.version == 4:
        pseudo = struct.pack("!4s4sBBH", s.packed, d.packed, 0, IPPROTO_UDP, length)
    else:
        pseudo = struct.pack("!16s16sIxxxB", s.packed, d.packed, length, IPPROTO_UDP)
    udp = UDP.pack(src[1], dst[1], length, 0) + payload
    csum = checksum(pseudo + udp) or 0xFFFF  # 0 means "none" (RFC 768)
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    if s.version == 4:
        header = IPV4.pack(0x45, 0, IPV4.size + length, ident & 0xFFFF, IP_DF, TTL,
                           IPPROTO_UDP, 0, s.packed, d.packed)
        return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + udp
    return IPV6.pack(6 << 28, length, IPPROTO_UDP, TTL, s.packed, d.packed) + udp


def file_header() -> bytes:
    return FILE_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW)


def record(ts: float, packet: bytes) -> bytes:
    secs = int(ts)
    usecs = min(999_999, round((ts - secs) * 1e6))
    kept = packet[:SNAPLEN]
    return RECORD.pack(secs, usecs, len(kept), len(packet)) + kept


class PcapWriter:
    """The sender's tap for -w: one pcap record per datagram sent, flushed at once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stream: BinaryIO = sys.stdout.buffer if path == "-" else open(path, "wb")  # noqa: SIM115
        self.ident = 0
        self.stream.write(file_header())
        self.stream.flush()

    def sent(self, src: Endpoint, dst: Endpoint, datagram: bytes) -> None:
        """A write that fails (a full disk, `-w -` read by a process that went away) is
        logged once and ends the capture, not the export."""
        if self.stream.closed:
            return
        self.ident += 1
        try:
            self.stream.write(record(time.time(), udp_packet(src, dst, datagram, self.ident)))
            self.stream.flush()
        except (OSError, ValueError) as e:
            log.error("-w %s: %s; capture stopped", self.path, getattr(e, "strerror", None) or e)
            try:
                self.stream.close()
            except OSError:
                pass

    def failed(self, dst: Endpoint) -> None:
        """Not sent, so not captured (tcpdump on the egress would not see it either)."""

    def close(self) -> None:
        if self.stream is not sys.stdout.buffer:
            self.stream.close()
