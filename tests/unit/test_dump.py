"""`pflowbsd dump` on datagrams packed here from the specs (NetFlow v5 48-byte records,
RFC 7011), never by our encoder: pcaps, malformed input, output."""

from __future__ import annotations

import io
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pflowbsd.collector.decode import Decoder, Malformed
from pflowbsd.collector.dump import cmd_dump, format_flow
from pflowbsd.collector.pcap import read_pcap
from tests.support.datagrams import (
    EXPORT,
    IPFIX_HEADER,
    IPFIX_ODD,
    IPFIX_V4,
    ODD,
    PLAIN4,
    SET,
    V5_FLOWS,
    V5_HEADER,
    decode_all,
    ip,
    ipfix_expected,
    ipfix_message,
    ipfix_set,
    ipfix_stream,
    keyed,
    odd_record,
    plain_record,
    run_dump_pcap,
    template_record,
    v5_datagram,
)
from tests.support.peers import udp_packet, write_pcap


def _frame(link: int, packet: bytes) -> bytes:
    family = 4 if packet[0] >> 4 == 4 else 6
    ethertype = {4: b"\x08\x00", 6: b"\x86\xdd"}[family]
    return {
        1: b"\x02" * 6 + b"\x04" * 6 + b"\x81\x00\x00\x05" + ethertype + packet,  # VLAN tag
        113: b"\x00\x00\x03\x04\x00\x06" + bytes(8) + ethertype + packet,
        0: struct.pack("<I", {4: 2, 6: 24}[family]) + packet,
        108: struct.pack(">I", {4: 2, 6: 24}[family]) + packet,
        101: packet,
    }[link]


def udp6_packet(payload: bytes, port: int) -> bytes:
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    return (struct.pack("!IHBB", 6 << 28, len(udp), 17, 64) + ip("::1") + ip("::1") + udp)


@pytest.mark.parametrize("link", [0, 1, 101, 108, 113])
@pytest.mark.parametrize("family", [4, 6])
def test_pcap_link_types(tmp_path, link, family):
    grams = ipfix_stream()
    make = udp_packet if family == 4 else udp6_packet
    path = tmp_path / "x.pcap"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, link))
        for i, g in enumerate(grams):
            frame = _frame(link, make(g, 4739))
            f.write(struct.pack("<IIII", EXPORT + i, 0, len(frame), len(frame)) + frame)
    rc, flows, err = run_dump_pcap(path)
    assert rc == 0 and keyed(flows) == ipfix_expected(), err
    assert {f["exporter"] for f in flows} == {"127.0.0.1" if family == 4 else "::1"}


def test_pcap_big_endian_and_nanoseconds():
    packet = udp_packet(v5_datagram(V5_FLOWS[:1]), 2055)
    data = (struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 101)
            + struct.pack(">IIII", EXPORT, 500_000_000, len(packet), len(packet)) + packet)
    [(ts, src, sport, dst, dport, payload)] = list(read_pcap(data))
    assert (ts, src, sport, dst, dport) == (EXPORT + 0.5, "127.0.0.1", 40000, "127.0.0.1", 2055)
    assert payload == v5_datagram(V5_FLOWS[:1])


@pytest.mark.parametrize("head, message", [
    (b"\x0a\x0d\x0d\x0a" + bytes(40), "pcapng is not supported"),
    (b"hello world, not a capture", "not a libpcap capture file"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 147), "unsupported link type 147"),
])
def test_pcap_rejected_with_one_line(tmp_path, head, message):
    (tmp_path / "bad").write_bytes(head)
    out, err = io.StringIO(), io.StringIO()
    assert cmd_dump("127.0.0.1:9995", False, str(tmp_path / "bad"), None, out, err) == 1
    assert message in err.getvalue() and err.getvalue().count("\n") == 1


def test_missing_pcap_is_an_error_not_a_traceback(tmp_path):
    err = io.StringIO()
    assert cmd_dump("127.0.0.1:9995", False, str(tmp_path / "nope"), None, io.StringIO(), err) == 1
    assert "No such file" in err.getvalue()


def test_count_stops_early(tmp_path):
    write_pcap(tmp_path / "v5.pcap", [v5_datagram(V5_FLOWS[:3]), v5_datagram(V5_FLOWS[3:], 3)],
               2055)
    out, err = io.StringIO(), io.StringIO()
    assert cmd_dump("127.0.0.1:9995", True, str(tmp_path / "v5.pcap"), 2, out, err) == 0
    assert len(out.getvalue().splitlines()) == 2


# --- (c) malformed input ----------------------------------------------------------------

TEMPLATE_256 = ipfix_message([ipfix_set(2, template_record(256, PLAIN4))], 0)
DATA_256 = ipfix_message([ipfix_set(256, plain_record(*IPFIX_V4[0]))], 0)


@pytest.mark.parametrize("datagram, reason", [
    (b"", "truncated header"),
    (b"\x00", "truncated header"),
    (v5_datagram(V5_FLOWS[:1])[:20], "truncated header"),
    (b"\x00\x0a" + bytes(10), "truncated header"),
    (b"\x00\x09" + bytes(10), "truncated header"),
    (v5_datagram(V5_FLOWS[:2])[:-1], "count 2 needs 120 bytes, datagram has 119"),
    (V5_HEADER.pack(5, 30, 0, 0, 0, 0, 42, 42, 0), "count 30 needs 1464 bytes"),
    (TEMPLATE_256[:-4], "message length"),
    (TEMPLATE_256[:2] + struct.pack("!H", 8) + TEMPLATE_256[4:], "message length 8"),
    (IPFIX_HEADER.pack(10, 24, 0, 0, 42) + SET.pack(2, 200) + bytes(4), "runs past the end"),
    (IPFIX_HEADER.pack(10, 24, 0, 0, 42) + SET.pack(256, 2) + bytes(4), "length 2"),
    (IPFIX_HEADER.pack(10, 18, 0, 0, 42) + b"\x00\x02", "set header truncated"),
    (ipfix_message([ipfix_set(2, struct.pack("!HH", 256, 3) + struct.pack("!HH", 8, 4))], 0),
     "template 256 runs past its set"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "version 18245"),
    (bytes(range(256)), "version 1"),
])
def test_malformed_is_counted_and_named(datagram, reason):
    dec = Decoder()
    with pytest.raises(Malformed) as e:
        dec.feed(datagram, "192.0.2.1")
    assert reason in e.value.reason and e.value.exporter == "192.0.2.1"
    assert e.value.datagram == datagram
    assert dec.stats.malformed == 1 and dec.stats.flows == 0


def test_record_past_its_set_is_malformed():
    dec = Decoder()
    tmpl = ipfix_message([ipfix_set(2, template_record(300, ODD))], 0)
    dec.feed(tmpl, "x")
    rec = odd_record(*IPFIX_ODD[0])
    # the variable-length name claims 200 bytes, the set holds fewer
    broken = rec[:8] + b"\xc8" + rec[9:]
    with pytest.raises(Malformed, match="past the end of its set"):
        dec.feed(ipfix_message([ipfix_set(300, broken)], 0), "x")


def test_malformed_in_a_stream_is_one_line_and_the_rest_decodes(tmp_path):
    grams = [b"garbage!", v5_datagram(V5_FLOWS[:2])[:-5], v5_datagram(V5_FLOWS[:2])]
    write_pcap(tmp_path / "m.pcap", grams, 2055)
    out, err = io.StringIO(), io.StringIO()
    assert cmd_dump("127.0.0.1:9995", False, str(tmp_path / "m.pcap"), None, out, err) == 0
    lines = err.getvalue().splitlines()
    assert sum("malformed datagram" in line for line in lines) == 2
    assert "3 datagrams, 2 flows, 2 malformed" in lines[-1]
    assert len(out.getvalue().splitlines()) == 3  # the column header and two flows


def test_unknown_template_counted_reported_once_then_decoded_going_forward():
    dec = Decoder()
    assert dec.feed(DATA_256, "192.0.2.1") == []
    assert dec.feed(DATA_256, "192.0.2.1") == []
    assert dec.stats.unknown_template == 2 and len(dec.notices) == 1
    assert "unknown template 256" in dec.notices[0]
    assert dec.feed(TEMPLATE_256, "192.0.2.1") == []
    [flow] = dec.feed(DATA_256, "192.0.2.1")
    assert (flow["src"], flow["bytes"], flow["template"]) == ("10.1.1.1", 9000, 256)
    # templates belong to (exporter, domain): another exporter or domain still lacks it
    assert dec.feed(DATA_256, "192.0.2.2") == []
    assert dec.feed(ipfix_message([ipfix_set(256, plain_record(*IPFIX_V4[0]))], 0, domain=7),
                    "192.0.2.1") == []
    assert dec.stats.unknown_template == 4 and dec.stats.malformed == 0


def test_template_withdrawal_forgets():
    dec = Decoder()
    dec.feed(TEMPLATE_256, "x")
    dec.feed(ipfix_message([ipfix_set(2, struct.pack("!HH", 256, 0))], 0), "x")
    assert dec.feed(DATA_256, "x") == [] and dec.stats.unknown_template == 1


def test_sequence_gaps_per_exporter_and_domain():
    dec = Decoder()
    dec.feed(v5_datagram(V5_FLOWS[:2], seq=10), "a")
    dec.feed(v5_datagram(V5_FLOWS[:1], seq=12), "a")  # in order
    dec.feed(v5_datagram(V5_FLOWS[:1], seq=0), "b")  # another exporter starts fresh
    dec.feed(v5_datagram(V5_FLOWS[:1], seq=20), "a")  # 13..19 lost
    assert dict(dec.stats.gaps) == {("a", "42/42", ""): 1}
    msgs = ipfix_stream()
    dec2, flows = decode_all(msgs[:3] + msgs[4:])  # the NAT4 message lost
    assert dict(dec2.stats.gaps) == {("127.0.0.1", 42, ""): 1} and len(flows) == 6
    assert "sequence gaps: 127.0.0.1/42:1" in dec2.stats.summary()


def test_sequences_per_destination_in_a_capture(tmp_path):
    """pflowbsd sends each datagram, numbered once, to every flowdst: a capture of two
    collectors holds every sequence number twice, interleaved, and that is no gap."""
    msgs = ipfix_stream()
    grams = [m for m in msgs for _ in (1, 2)]
    write_pcap(tmp_path / "two.pcap", grams, [2055, 9995] * len(msgs))
    rc, flows, err = run_dump_pcap(tmp_path / "two.pcap")
    assert rc == 0 and len(flows) == 2 * 7
    assert "sequence gaps: none" in err, err
    # one collector's copy of a message lost: a gap there, none at the other
    write_pcap(tmp_path / "lost.pcap", grams[:6] + grams[7:], [2055, 9995] * 3 + [9995] + [2055, 9995] * 2)
    rc, flows, err = run_dump_pcap(tmp_path / "lost.pcap")
    assert "sequence gaps: 127.0.0.1 to 127.0.0.1:2055/42:1\n" in err, err


def test_template_records_and_messages_counted_apart():
    """pflow sends its templates in one message: the exporter's unit.  Both are counted."""
    dec, _ = decode_all(ipfix_stream() + ipfix_stream()[:1])
    assert (dec.stats.templates, dec.stats.template_messages) == (10, 2)
    assert "10 template records in 2 template messages" in dec.stats.summary()


def test_v5_times_wrap_and_freebsd_ms_past_uptime():
    dec = Decoder()
    # uptime wrapped past 2^32 since the flow started; FreeBSD's finish may pass uptime
    gram = v5_datagram([("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 1, 0xFFFFF000, 800)], uptime=300)
    [f] = dec.feed(gram, "x")
    assert f["start_epoch"] == EXPORT * 1000 - 300 - 0x1000
    assert f["end_epoch"] == EXPORT * 1000 + 500
    assert (f["start"], f["end"], f["engine_type"], f["engine_id"]) == (0xFFFFF000, 800, 42, 42)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_crashes(data):
    dec = Decoder()
    for version in (b"", b"\x00\x05", b"\x00\x09", b"\x00\x0a"):
        try:
            dec.feed(version + data, "x")
        except Malformed:
            pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2000), st.binary(max_size=8))
def test_truncated_or_extended_stream_never_crashes(cut, tail):
    dec = Decoder()
    for gram in ipfix_stream() + [v5_datagram(V5_FLOWS)]:
        try:
            dec.feed(gram[:cut] + tail, "x")
        except Malformed:
            pass


# --- output ------------------------------------------------------------------------------

def test_human_line_and_json_keys():
    _, flows = decode_all(ipfix_stream())
    nat = next(f for f in flows if f["template"] == 258)
    line = format_flow(nat)
    assert "tcp" in line and "10.1.1.2:40001 -> 198.51.100.9:80" in line
    assert "nat 203.0.113.1:61001 -> 198.51.100.9:80" in line and " 5 " in line
    v6 = next(f for f in flows if f["template"] == 257)
    assert "[2001:db8::1]:53001 -> [2001:db8:1::53]:53" in format_flow(v6)
    obj = json.loads(format_flow(nat, as_json=True))
    for key in ("version", "exporter", "sequence", "src", "dst", "src_port", "dst_port",
                "proto", "packets", "bytes", "start", "end", "domain", "template",
                "nat_src", "nat_dst", "nat_src_port", "nat_dst_port"):
        assert key in obj
    _, [v5] = decode_all([v5_datagram(V5_FLOWS[:1])])
    obj5 = json.loads(format_flow(v5, as_json=True))
    assert (obj5["start"], obj5["engine_type"]) == (480_000, 42)
    assert obj5["start_epoch"] == EXPORT * 1000 - 20_000
    assert "nat_src" not in obj5
