"""`pflowbsd dump` against datagrams made by others: nfcapd/nfreplay and tshark."""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import threading
import time

import pytest

from pflowbsd.collector.dump import _Sink, serve
from tests.support.datagrams import (
    V5_FLOWS,
    ipfix_expected,
    ipfix_stream,
    keyed,
    run_dump_pcap,
    v5_datagram,
    v5_expected,
)
from tests.support.peers import free_udp_port, require, tshark_fields, write_pcap

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
    assert "0 malformed" in err and "sequence gaps: none" in err and "5 template records in 1 template messages" in err
