"""pflowbsd.export against real decoders: tshark offline, nfcapd/nfdump over loopback."""

from __future__ import annotations

import csv
import datetime
import io
import os
import socket
import subprocess

from pflowbsd.export import ipfix
from pflowbsd.export.exporter import Exporter
from pflowbsd.flows import Flow
from tests.support.flowcases import BOOT, M, at, state
from tests.support.peers import nfcapd, require, tshark_fields, write_pcap

# --- real decoders -------------------------------------------------------------------


def _tshark_time(text: str) -> int:
    """'Nov 14, 2023 22:11:41.000000000 UTC' -> epoch ms."""
    stamp, frac = text.removesuffix(" UTC").split(".")
    dt = datetime.datetime.strptime(stamp, "%b %d, %Y %H:%M:%S").replace(tzinfo=datetime.UTC)
    return int(dt.timestamp()) * 1000 + int(frac[:3])


def _flatten(rows, col):
    return [v for row in rows for v in row[col]]


def test_tshark_decodes_every_v5_record(tmp_path):
    x = Exporter(proto=5)
    flows, sent = [], []
    for i in range(20):
        f1, f2 = state(i, b0=1000 + i, b1=(M + 2 if i == 3 else 2000 + i), proto=(6, 17, 1)[i % 3],
                       start=(i + 1) * 1000, end=(i + 50) * 1000)  # fmt: skip
        flows += [f1, f2]
        sent += x.export_state(f1, f2, at(100 + i))
    sent += x.flush(at(200.5))
    port = 2055
    write_pcap(tmp_path / "v5.pcap", sent, port)
    fields = ["cflow.version", "cflow.count", "cflow.sequence", "cflow.sysuptime", "cflow.unix_secs",
              "cflow.unix_nsecs", "cflow.engine_type", "cflow.engine_id", "cflow.srcaddr", "cflow.dstaddr",
              "cflow.srcport", "cflow.dstport", "cflow.protocol", "cflow.packets", "cflow.octets",
              "cflow.timestart", "cflow.timeend", "cflow.inputint", "cflow.outputint"]  # fmt: skip
    rows = tshark_fields(tmp_path / "v5.pcap", port, fields)
    assert [r[0] for r in rows] == [["5"]] * 2
    assert [int(r[1][0]) for r in rows] == [30, 11]
    assert [int(r[2][0]) for r in rows] == [0, 30]
    assert [r[3][0] for r in rows] == ["114.000000000", "200.000000000"]
    assert rows[1][4:8] == [[str(BOOT + 201)], ["0"], ["42"], ["42"]]
    want = []
    # state 3's reply (M + 2) is split: a reply-only chunk first, then both remainders
    order = flows[:6] + [(flows[7], M), (flows[6], 1003), (flows[7], 2)] + flows[8:]
    for f in order:
        f, c = (f, f.octets) if isinstance(f, Flow) else f
        want.append([socket.inet_ntoa(f.src), socket.inet_ntoa(f.dst), str(f.src_port), str(f.dst_port),
                     str(f.proto), str(f.packets), str(c), f"{f.start / 1000:.9f}", f"{f.end / 1000:.9f}",
                     str(f.if_in), str(f.if_out)])  # fmt: skip
    got = [list(t) for t in zip(*[_flatten(rows, c) for c in range(8, 19)])]
    assert got == want


def test_tshark_decodes_ipfix_templates_and_records_with_nat(tmp_path):
    x = Exporter(proto=10, nat=True)
    sent = x.start(at(100))
    cases = [state(1), state(2, nat=True, b0=6 * M), state(3, af=socket.AF_INET6),
             state(4, af=socket.AF_INET6, nat=True, proto=17)]  # fmt: skip
    for f1, f2 in cases:
        sent += x.export_state(f1, f2, at(100))
    sent += x.flush(at(101))
    port = 4739
    write_pcap(tmp_path / "ipfix.pcap", sent, port)
    rows = tshark_fields(tmp_path / "ipfix.pcap", port, [
        "cflow.version", "cflow.od_id", "cflow.sequence", "cflow.template_id", "cflow.template_ipfix_field_type",
        "cflow.flowset_id", "cflow.srcaddr", "cflow.srcaddrv6", "cflow.dstport", "cflow.protocol",
        "cflow.packets", "cflow.octets", "cflow.abstimestart", "cflow.abstimeend",
        "cflow.post_natsource_ipv4_address", "cflow.post_natdestination_ipv4_address",
        "cflow.post_naptsource_transport_port", "cflow.post_naptdestination_transport_port",
        "cflow.post_nat_source_ipv6_address", "cflow.post_nat_destination_ipv6_address",
        "cflow.inputint", "cflow.outputint"])  # fmt: skip
    assert [r[0] for r in rows] == [["10"]] * 5 and [r[1] for r in rows] == [["42"]] * 5
    assert [r[2] for r in rows] == [["0"], ["0"], ["2"], ["4"], ["6"]]
    assert rows[0][3] == ["256", "257", "258", "259"]
    assert [int(v) for v in rows[0][4]] == [ie for t in (256, 257, 258, 259) for ie, _ in ipfix.TEMPLATES[t].fields]
    assert [r[5] for r in rows[1:]] == [["256"], ["258"], ["257"], ["259"]]
    ordered = [cases[0], cases[1], cases[2], cases[3]]
    for row, (f1, f2) in zip(rows[1:], ordered):
        addrs = row[6] or row[7]
        fam = f1.af
        assert addrs == [socket.inet_ntop(fam, f1.src), socket.inet_ntop(fam, f2.src)]
        assert row[8] == [str(f1.dst_port), str(f2.dst_port)]
        assert row[9] == [str(f1.proto)] * 2
        assert row[10] == [str(f1.packets), str(f2.packets)]
        assert row[11] == [str(f1.octets), str(f2.octets)]  # 64-bit: 6*M unsplit
        assert [_tshark_time(t) for t in row[12]] == [(BOOT + 5) * 1000] * 2
        assert [_tshark_time(t) for t in row[13]] == [(BOOT + 9) * 1000] * 2
        assert row[20:22] == [["3", "4"], ["4", "3"]]
        if f1.natted and fam == socket.AF_INET:
            assert row[14] == [socket.inet_ntoa(f1.nat_src), socket.inet_ntoa(f2.nat_src)]
            assert row[15] == [socket.inet_ntoa(f1.nat_dst), socket.inet_ntoa(f2.nat_dst)]
            assert row[16] == [str(f1.nat_src_port), str(f2.nat_src_port)]
            assert row[17] == [str(f1.nat_dst_port), str(f2.nat_dst_port)]
        elif f1.natted:
            assert row[18] == [socket.inet_ntop(fam, f1.nat_src), socket.inet_ntop(fam, f2.nat_src)]
            assert row[19] == [socket.inet_ntop(fam, f1.nat_dst), socket.inet_ntop(fam, f2.nat_dst)]
            assert row[16] == [str(f1.nat_src_port), str(f2.nat_src_port)]
        else:
            assert row[14:20] == [[]] * 6


def _collect_with_nfcapd(tmp_path, datagrams: list[bytes]) -> list[dict]:
    """Send datagrams to a real nfcapd on loopback; return nfdump's CSV rows."""
    nfdump = require("nfdump")
    outdir = tmp_path / "flows"
    with nfcapd(outdir) as capd, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", capd.port))
    assert "Bad Packets: 0" in capd.log and "Sequence Errors: 0" in capd.log, capd.log
    files = [p for p in outdir.iterdir() if p.name.startswith("nfcapd.")]
    assert files, os.listdir(outdir)
    out = subprocess.run([nfdump, "-R", str(outdir), "-o", "csv"], capture_output=True, text=True, check=True)
    text = out.stdout.split("\nSummary")[0]
    nat = subprocess.run([nfdump, "-q", "-R", str(outdir), "-o", "fmt:%nsa|%nda|%nsp|%ndp"],
                         capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(text)))
    for row, n in zip(rows, nat, strict=True):
        row["nat"] = [v.strip() for v in n.split("|")]
    return rows


def test_nfcapd_collects_v5_and_ipfix(tmp_path):
    sent = []
    want = []
    v5x, fx = Exporter(proto=5), Exporter(proto=10, nat=True)
    sent += fx.start(at(10))
    cases = [state(1, b0=12345, b1=678), state(2, b0=3 * M + 9, b1=0, proto=17), state(3, proto=1, b1=0),
             state(4, af=socket.AF_INET6, b0=7 * M), state(5, nat=True, b0=99, b1=77)]  # fmt: skip
    for f1, f2 in cases:
        sent += v5x.export_state(f1, f2, at(20)) + fx.export_state(f1, f2, at(20))
    sent += v5x.flush(at(21)) + fx.flush(at(21))
    for f1, f2 in cases:
        for f in (f1, f2):
            if not f.octets:
                continue
            key = (socket.inet_ntop(f.af, f.src), socket.inet_ntop(f.af, f.dst), f.src_port, f.dst_port, f.proto)
            chunks = [f.octets] if f.octets < M else [M] * (f.octets // M - (f.octets % M == 0)) + [f.octets % M or M]
            if f.af == socket.AF_INET:
                want += [("v5", *key, f.packets, c, ("0.0.0.0",) * 2 + (0, 0)) for c in chunks]
            post = (socket.inet_ntoa(f.nat_src), socket.inet_ntoa(f.nat_dst), f.nat_src_port, f.nat_dst_port) \
                if f.natted else ("0.0.0.0",) * 2 + (0, 0)  # fmt: skip
            want.append(("ipfix", *key, f.packets, f.octets, post))
    rows = _collect_with_nfcapd(tmp_path, sent)
    proto_names = {"TCP": 6, "UDP": 17, "ICMP": 1}

    def port(row, k):  # nfdump prints ICMP type.code in dp, 0 in sp
        return int(float(row[k]))

    got = []
    for r in rows:
        kind = "v5" if r["eng"] == "42/42" else "ipfix"
        pr = proto_names[r["pr"]]
        key = (r["sa"], r["da"], port(r, "sp"), port(r, "dp"), pr)
        nat = (r["nat"][0], r["nat"][1], int(r["nat"][2]), int(r["nat"][3]))
        got.append((kind, *key, int(r["ipkt"]), int(r["ibyt"]), nat))
    icmp = {w for w in want if w[5] == 1}
    # ICMP "ports" are decoded by nfdump as type/code: compare those rows without ports
    strip = lambda t: (t[0], t[1], t[2], t[5], t[6], t[7], t[8])
    assert sorted(strip(g) for g in got if g[5] == 1) == sorted(strip(w) for w in icmp)
    assert sorted(g for g in got if g[5] != 1) == sorted(w for w in want if w[5] != 1)
    assert any(g[0] == "ipfix" and g[7] == 7 * M for g in got)  # a 64-bit counter arrived whole
