"""pflowbsd.shell.pcapout's pure builders: the IP/UDP packet around a datagram, its
checksums, and pcap records that collector/pcap.py (`pflowbsd dump -r`) reads back."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as hs

from pflowbsd.collector.pcap import read_pcap
from pflowbsd.shell.pcapout import IPV4, IPV6, checksum, file_header, record, udp_packet

PAYLOAD = bytes(range(256)) * 3 + b"odd"  # an odd length: the checksum pads it


def pseudo_sum(packet: bytes) -> int:
    """The UDP checksum recomputed over pseudo-header and segment: 0 when it is right."""
    if packet[0] >> 4 == 4:
        src, dst, seg = packet[12:16], packet[16:20], packet[20:]
        pseudo = src + dst + struct.pack("!BBH", 0, 17, len(seg))
    else:
        src, dst, seg = packet[8:24], packet[24:40], packet[40:]
        pseudo = src + dst + struct.pack("!I3xB", len(seg), 17)
    return checksum(pseudo + seg)


def test_checksum_is_rfc1071():
    # RFC 1071 4.1's example: 0001 f203 f4f5 f6f7 sums to ddf2, so the checksum is 220d
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert checksum(b"\x01") == checksum(b"\x01\x00")


@settings(max_examples=300, deadline=1000)
@given(hs.binary(max_size=64) | hs.lists(hs.sampled_from([b"\0", b"\xff"]), max_size=40).map(b"".join))
def test_checksum_is_the_word_by_word_ones_complement_sum(data):
    padded = data + b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert checksum(data) == ~total & 0xFFFF


def test_ipv4_packet_headers_and_checksums():
    pkt = udp_packet(("127.0.0.1", 40000), ("127.0.0.2", 9995), PAYLOAD, ident=7)
    ver, tos, total, ident, frag, ttl, proto, _csum, src, dst = IPV4.unpack_from(pkt)
    assert (ver, total, ident, frag & 0x4000, proto) == (0x45, len(pkt), 7, 0x4000, 17)
    assert ttl > 0 and (src, dst) == (bytes([127, 0, 0, 1]), bytes([127, 0, 0, 2]))
    assert checksum(pkt[:20]) == 0  # the header checksum holds
    assert struct.unpack_from("!HHH", pkt, 20) == (40000, 9995, 8 + len(PAYLOAD))
    assert pseudo_sum(pkt) == 0 and pkt[28:] == PAYLOAD


def test_ipv6_packet_headers_and_checksum():
    pkt = udp_packet(("::1", 40000), ("2001:db8::5", 4739), PAYLOAD)
    vtf, plen, nxt, hops, src, dst = IPV6.unpack_from(pkt)
    assert (vtf >> 28, plen, nxt) == (6, 8 + len(PAYLOAD), 17) and hops > 0
    assert dst == bytes.fromhex("20010db8000000000000000000000005")
    assert pseudo_sum(pkt) == 0 and pkt[48:] == PAYLOAD


def test_a_zero_udp_checksum_is_sent_as_ffff():
    # RFC 768: a computed 0 is sent as all ones (0 means none).  Make a payload word that
    # brings the ones' complement sum to 0xffff, so the computed checksum is 0.
    src, dst = ("10.0.0.1", 1), ("10.0.0.2", 2)
    empty = udp_packet(src, dst, b"\0\0")
    folded = ~struct.unpack_from("!H", empty, 26)[0] & 0xFFFF  # the sum without the word
    pkt = udp_packet(src, dst, struct.pack("!H", 0xFFFF - folded))
    assert struct.unpack_from("!H", pkt, 26)[0] == 0xFFFF
    assert pseudo_sum(pkt) == 0


def test_the_capture_reads_back_with_dump_r():
    pkts = [(1764770000.5, udp_packet(("127.0.0.1", 40000), ("127.0.0.1", 9995), b"v5 datagram")),
            (1764770001.25, udp_packet(("::1", 40001), ("::1", 4739), b"ipfix message"))]
    data = file_header() + b"".join(record(t, p) for t, p in pkts)
    assert list(read_pcap(data)) == [
        (1764770000.5, "127.0.0.1", 40000, "127.0.0.1", 9995, b"v5 datagram"),
        (1764770001.25, "::1", 40001, "::1", 4739, b"ipfix message")]
