"""NetFlow v5 and IPFIX datagrams packed here from the specs (NetFlow v5 48-byte
records, RFC 7011), never by our encoder, for the tests of `pflowbsd dump`."""

from __future__ import annotations

import io
import json
import socket
import struct

from pflowbsd.collector.decode import Decoder
from pflowbsd.collector.dump import cmd_dump

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
