"""`pflowbsd dump` against datagrams made by others: nfcapd/nfreplay, tshark, and bytes
packed here from the specs (NetFlow v5 48-byte records, RFC 7011), never by our encoder."""

from __future__ import annotations

import io
import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pflowbsd.collector.decode import Decoder, Malformed
from pflowbsd.collector.dump import _Sink, cmd_dump, format_flow, serve
from pflowbsd.collector.pcap import read_pcap
from tests.support import ROOT
from tests.support.peers import free_udp_port, require, tshark_fields, udp_packet, write_pcap

# --- NetFlow v5, packed from the spec (pflow-semantics.md 1.2, 1.3) --------------------
V5_HEADER = struct.Struct("!HHIIIIBBH")
V5_RECORD = struct.Struct("!4s4s4sHHIIIIHHBBBBHHBBH")
EXPORT = 1_700_000_000  # header time_sec
UPTIME = 500_000  # header uptime_ms

# src, dst, sport, dport, proto, packets, octets, first (uptime ms), last (uptime ms)
V5_FLOWS = [
    ("10.0.0.1", "192.0.2.7", 40000, 80, 6, 10, 1000, 480_000, 495_000),
    ("192.0.2.7", "10.0.0.1", 80, 40000, 6, 8, 6400, 480_000, 495_000),
    ("10.0.0.2", "198.51.100.53", 5353, 53, 17, 1, 76, 499_000, 499_000),
    ("10.0.0.3", "203.0.113.9", 0, 2048, 1, 3, 252, 490_000, 492_000),
    ("172.16.5.4", "10.9.8.7", 65535, 1, 6, 4_000_000_000, 4_294_967_295, 100_000, 499_000),
]


def v5_datagram(flows, seq=0, uptime=UPTIME, secs=EXPORT, engine=(42, 42)) -> bytes:
    records = b"".join(
        V5_RECORD.pack(socket.inet_aton(s), socket.inet_aton(d), bytes(4), 0, 0, p, o, f, l,
                       sp, dp, 0, 0, pr, 0, 0, 0, 0, 0, 0)
        for s, d, sp, dp, pr, p, o, f, l in flows)
    return V5_HEADER.pack(5, len(flows), uptime, secs, 0, seq, *engine, 0) + records


def v5_expected(flows, secs=EXPORT, uptime=UPTIME):
    return sorted((s, d, sp, dp, pr, p, o, secs * 1000 - (uptime - f), secs * 1000 - (uptime - l))
                  for s, d, sp, dp, pr, p, o, f, l in flows)


def keyed(flows):
    return sorted((f["src"], f["dst"], f["src_port"], f["dst_port"], f["proto"], f["packets"],
                   f["bytes"], f["start_epoch"], f["end_epoch"]) for f in flows)


# --- IPFIX, packed from RFC 7011 ---------------------------------------------------------
IPFIX_HEADER = struct.Struct("!HHIII")
SET = struct.Struct("!HH")
PLAIN4 = [(8, 4), (12, 4), (10, 4), (14, 4), (2, 8), (1, 8), (152, 8), (153, 8), (7, 2),
          (11, 2), (5, 1), (4, 1)]
PLAIN6 = [(27, 16), (28, 16)] + PLAIN4[2:]
NAT4 = PLAIN4[:8] + [(225, 4), (226, 4), (227, 2), (228, 2)] + PLAIN4[8:]
NAT6 = PLAIN6[:8] + [(281, 16), (282, 16), (227, 2), (228, 2)] + PLAIN6[8:]
# An exporter's odd template: an enterprise IE (PEN 32473, RFC 5612), a variable-length
# IE (interfaceName), a reduced-size counter.
ODD = [(0x8000 | 7, 4, 32473), (8, 4), (82, 0xFFFF), (12, 4), (2, 4), (1, 8), (7, 2), (11, 2),
       (4, 1), (152, 8), (153, 8)]


def template_record(tid, fields) -> bytes:
    body = struct.pack("!HH", tid, len(fields))
    for ie, n, *pen in fields:
        body += struct.pack("!HH", ie, n) + (struct.pack("!I", pen[0]) if pen else b"")
    return body


def ipfix_set(set_id, body) -> bytes:
    return SET.pack(set_id, SET.size + len(body)) + body


def ipfix_message(sets, seq, domain=42, secs=EXPORT) -> bytes:
    body = b"".join(sets)
    return IPFIX_HEADER.pack(10, IPFIX_HEADER.size + len(body), secs, seq, domain) + body


def ip(a):
    return socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a)


def plain_record(src, dst, sport, dport, proto, pkts, octets, start, end, nat=None) -> bytes:
    rec = ip(src) + ip(dst) + struct.pack("!IIQQqq", 0, 0, pkts, octets, start, end)
    if nat:
        nsrc, ndst, nsport, ndport = nat
        rec += ip(nsrc) + ip(ndst) + struct.pack("!HH", nsport, ndport)
    return rec + struct.pack("!HHBB", sport, dport, 0, proto)


def odd_record(src, dst, name: bytes, sport, dport, proto, pkts, octets, start, end) -> bytes:
    n = bytes([len(name)]) if len(name) < 255 else b"\xff" + struct.pack("!H", len(name))
    return (b"\xde\xad\xbe\xef" + ip(src) + n + name + ip(dst) + struct.pack("!IQ", pkts, octets)
            + struct.pack("!HHB", sport, dport, proto) + struct.pack("!qq", start, end))


T0 = EXPORT * 1000 - 60_000
IPFIX_V4 = [("10.1.1.1", "192.0.2.80", 51000, 443, 6, 12, 9000, T0, T0 + 5000),
            ("192.0.2.80", "10.1.1.1", 443, 51000, 6, 9, 2**40, T0, T0 + 5000)]
IPFIX_V6 = [("2001:db8::1", "2001:db8:1::53", 53001, 53, 17, 1, 80, T0 + 1000, T0 + 1000)]
IPFIX_NAT4 = [("10.1.1.2", "198.51.100.9", 40001, 80, 6, 5, 500, T0, T0 + 2000,
               ("203.0.113.1", "198.51.100.9", 61001, 80))]
IPFIX_NAT6 = [("fd00::2", "2001:db8:2::1", 40002, 443, 6, 6, 600, T0, T0 + 3000,
               ("2001:db8:ffff::1", "2001:db8:2::1", 62002, 443))]
IPFIX_ODD = [("10.2.2.2", "10.3.3.3", b"em0", 1234, 5678, 17, 7, 700, T0, T0 + 7000),
             ("10.2.2.3", "10.3.3.4", b"x" * 300, 1235, 5679, 17, 8, 800, T0, T0 + 8000)]


def ipfix_stream() -> list[bytes]:
    """A template message, then one data set a message as pflow sends them."""
    tmpl = ipfix_set(2, b"".join(template_record(t, f) for t, f in
                                 ((256, PLAIN4), (257, PLAIN6), (258, NAT4), (259, NAT6),
                                  (300, ODD))))
    seq, msgs = 0, [ipfix_message([tmpl], 0)]
    for tid, flows, pack in ((256, IPFIX_V4, plain_record), (257, IPFIX_V6, plain_record),
                             (258, IPFIX_NAT4, plain_record), (259, IPFIX_NAT6, plain_record),
                             (300, IPFIX_ODD, odd_record)):
        msgs.append(ipfix_message([ipfix_set(tid, b"".join(pack(*f) for f in flows))], seq))
        seq += len(flows)
    return msgs


def ipfix_expected():
    plain = [f[:9] for f in IPFIX_V4 + IPFIX_V6 + IPFIX_NAT4 + IPFIX_NAT6]
    odd = [(s, d, sp, dp, pr, p, o, a, b) for s, d, _, sp, dp, pr, p, o, a, b in IPFIX_ODD]
    return sorted(plain + odd)


def decode_all(datagrams, exporter="127.0.0.1"):
    dec = Decoder()
    return dec, [f for d in datagrams for f in dec.feed(d, exporter)]


def run_dump_pcap(path):
    out, err = io.StringIO(), io.StringIO()
    rc = cmd_dump("127.0.0.1:9995", True, str(path), None, out, err)
    return rc, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


# --- (a) nfcapd writes a file from v5 datagrams, nfreplay sends it back -----------------

@pytest.fixture(scope="module")
def nfcapd_file(tmp_path_factory):
    nfcapd = require("nfcapd")
    require("nfdump")
    d = tmp_path_factory.mktemp("nfcapd")
    port = free_udp_port()
    log = open(d / "log", "w+")
    proc = subprocess.Popen([nfcapd, "-b", "127.0.0.1", "-p", str(port), "-w", str(d),
                             "-t", "3600"], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if "Startup" in (d / "log").read_text():
                break
            time.sleep(0.05)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(v5_datagram(V5_FLOWS[:3], seq=0), ("127.0.0.1", port))
            s.sendto(v5_datagram(V5_FLOWS[3:], seq=3), ("127.0.0.1", port))
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    files = [p for p in d.glob("nfcapd.*") if "current" not in p.name]
    assert len(files) == 1, (d / "log").read_text()
    return files[0]


def listen_and_replay(path, version, count):
    nfreplay = require("nfreplay")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)  # a lost datagram ends the test instead of hanging it
    out, err = io.StringIO(), io.StringIO()
    sink = _Sink(True, count, out, err)
    t = threading.Thread(target=serve, args=(sock, sink))
    t.start()
    subprocess.run([nfreplay, "-r", str(path), "-H", "127.0.0.1", "-p",
                    str(sock.getsockname()[1]), "-v", str(version)],
                   check=True, capture_output=True)
    t.join()
    sock.close()
    return [json.loads(line) for line in out.getvalue().splitlines()], sink.decoder.stats


@pytest.mark.parametrize("version", [5, 9])
def test_nfreplay_flows_decode_as_sent(nfcapd_file, version):
    flows, stats = listen_and_replay(nfcapd_file, version, len(V5_FLOWS))
    assert keyed(flows) == v5_expected(V5_FLOWS)
    assert {f["version"] for f in flows} == {version}
    assert stats.malformed == 0 and stats.unknown_template == 0


# --- (b) pcaps decoded by tshark and by dump -r ---------------------------------------

def test_v5_pcap_matches_tshark(tmp_path):
    port = 2055
    grams = [v5_datagram(V5_FLOWS[:3], seq=0), v5_datagram(V5_FLOWS[3:], seq=3)]
    write_pcap(tmp_path / "v5.pcap", grams, port)
    fields = ["cflow.srcaddr", "cflow.dstaddr", "cflow.srcport", "cflow.dstport",
              "cflow.protocol", "cflow.packets", "cflow.octets", "cflow.sequence"]
    rows = tshark_fields(tmp_path / "v5.pcap", port, fields)
    theirs = sorted((*r[:2], *map(int, r[2:7])) for row in rows
                    for r in zip(*row[:7]))
    rc, flows, err = run_dump_pcap(tmp_path / "v5.pcap")
    assert rc == 0
    ours = sorted((f["src"], f["dst"], f["src_port"], f["dst_port"], f["proto"], f["packets"],
                   f["bytes"]) for f in flows)
    assert ours == theirs and len(ours) == len(V5_FLOWS)
    assert [int(r[7][0]) for r in rows] == sorted({f["sequence"] for f in flows}) == [0, 3]
    assert keyed(flows) == v5_expected(V5_FLOWS)
    assert "0 malformed" in err and "sequence gaps: none" in err


def test_ipfix_pcap_matches_tshark(tmp_path):
    port = 4739
    write_pcap(tmp_path / "ipfix.pcap", ipfix_stream(), port)
    names = ["cflow.srcaddr", "cflow.dstaddr", "cflow.srcaddrv6", "cflow.dstaddrv6",
             "cflow.srcport", "cflow.dstport", "cflow.protocol", "cflow.packets",
             "cflow.octets", "cflow.post_natsource_ipv4_address",
             "cflow.post_natdestination_ipv4_address", "cflow.post_nat_source_ipv6_address",
             "cflow.post_nat_destination_ipv6_address", "cflow.post_naptsource_transport_port",
             "cflow.post_naptdestination_transport_port", "cflow.template_id"]
    rows = tshark_fields(tmp_path / "ipfix.pcap", port, names)
    theirs = []
    for row in rows[1:]:  # the first message is the template set
        src, dst = row[0] or row[2], row[1] or row[3]
        nats = row[9] or row[11], row[10] or row[12], row[13], row[14]
        for i in range(len(src)):
            nat = tuple(x[i] for x in nats) if nats[0] else None
            theirs.append((src[i], dst[i], *(int(c[i]) for c in row[4:9]), nat))
    rc, flows, err = run_dump_pcap(tmp_path / "ipfix.pcap")
    assert rc == 0, err
    ours = [(f["src"], f["dst"], f["src_port"], f["dst_port"], f["proto"], f["packets"],
             f["bytes"], (f["nat_src"], f["nat_dst"], str(f["nat_src_port"]),
                          str(f["nat_dst_port"])) if "nat_src" in f else None) for f in flows]
    assert sorted(ours) == sorted(theirs) and len(ours) == 7
    assert keyed(flows) == ipfix_expected()
    assert {f["template"] for f in flows} == {256, 257, 258, 259, 300}
    assert all(f["domain"] == 42 and f["version"] == 10 for f in flows)
    assert "0 malformed" in err and "sequence gaps: none" in err and "5 templates" in err


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
    assert dict(dec.stats.gaps) == {("a", "42/42"): 1}
    msgs = ipfix_stream()
    dec2, flows = decode_all(msgs[:3] + msgs[4:])  # the NAT4 message lost
    assert dict(dec2.stats.gaps) == {("127.0.0.1", 42): 1} and len(flows) == 6


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


# --- the listener, as a process ------------------------------------------------------------

def _spawn(listen):
    code = ("import sys; from pflowbsd.collector.dump import cmd_dump; "
            f"sys.exit(cmd_dump({listen!r}, True, None, None, sys.stdout, sys.stderr))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stderr.readline()
    assert "listening on" in first, first + proc.stderr.read()
    return proc, int(first.rsplit(":", 1)[1])


@pytest.mark.parametrize("listen, family, addr", [
    ("127.0.0.1:0", socket.AF_INET, "127.0.0.1"), ("[::1]:0", socket.AF_INET6, "::1")])
def test_listener_until_sigterm(listen, family, addr):
    proc, port = _spawn(listen)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.sendto(b"junk", (addr, port))  # first: it is handled before the flows print
            s.sendto(v5_datagram(V5_FLOWS[:2]), (addr, port))
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert [f["src_port"] for f in lines] == [40000, 80] and lines[0]["exporter"] == addr
    assert "malformed datagram" in err and "2 flows, 1 malformed" in err


def test_listener_bad_address():
    err = io.StringIO()
    assert cmd_dump("localhost", False, None, None, io.StringIO(), err) == 1
    assert "cannot listen on localhost" in err.getvalue()
