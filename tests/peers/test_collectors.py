"""Every collector users run: the replay's default v5 and IPFIX output decoded by
nfcapd/nfdump, tshark and pmacct's nfacctd (print plugin), each with no decode error
and the flow count worked out from the snapshots (replaydata.py); then the words of
issue 13 that change the wire (ipfix-layout, sampling) through tshark and nfcapd.
Loopback only; nfacctd's configuration is written to a tmp folder."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import time

import pytest

from tests.support import replaydata as rd
from tests.support.peers import free_udp_port, require, tshark_fields, write_pcap

PROTO_NAME = {"tcp": 6, "udp": 17, "icmp": 1}


def expected(proto: int) -> list[tuple]:
    """(src, sport, dst, dport, proto, packets, bytes) of every record pflow sends."""
    want = []
    for s in rd.states():
        if s.exported and (proto == 10 or s.af == rd.A4):
            for src, sp, dst, dp, pkts, nbytes, _nat in rd.records(s, split=proto == 5):
                want.append((src, sp, dst, dp, s.proto, pkts % 2**32 if proto == 5 else pkts, nbytes))
    return want


def by_key(records) -> dict[tuple, list[int]]:
    """Summed per (src, sport, dst, dport, proto), as an aggregating collector shows
    them; ICMP without ports (collectors print pf's id/type their own way)."""
    out: dict[tuple, list[int]] = collections.defaultdict(lambda: [0, 0])
    for src, sp, dst, dp, pr, pkts, nbytes in records:
        key = (src, -1, dst, -1, pr) if pr == 1 else (src, sp, dst, dp, pr)
        out[key][0] += pkts
        out[key][1] += nbytes
    return dict(out)


@pytest.fixture(scope="module", params=[5, 10])
def captured(request, recording):
    words = ["pflowproto", str(request.param)]
    run, datagrams, port = rd.capture(recording, *words)
    assert run.returncode == 0, run.stderr
    return request.param, datagrams, port


def send_all(datagrams: list[bytes], port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", port))
            time.sleep(0.002)


def test_nfcapd_decodes_every_record(captured, tmp_path):
    proto, datagrams, _port = captured
    rows, log, _ = rd.nfcapd_collect(tmp_path / "flows", lambda p: send_all(datagrams, p),
                                     require("nfdump"))
    assert "Bad Packets: 0" in log and "Sequence Errors: 0" in log, log
    got = [(r["sa"], int(r["sp"]), r["da"], int(float(r["dp"])), int(r["pr"]), int(r["pkt"]),
            int(r["byt"])) for r in rows]  # fmt: skip
    want = expected(proto)
    assert len(got) == len(want) == (47 if proto == 5 else 49)
    assert by_key(got) == by_key(want)


def test_tshark_decodes_every_record(captured, tmp_path):
    proto, datagrams, port = captured
    write_pcap(tmp_path / "c.pcap", datagrams, port)
    fields = ["cflow.srcaddr", "cflow.srcaddrv6", "cflow.octets"]
    rows = tshark_fields(tmp_path / "c.pcap", port, fields)  # no malformed, no expert note
    records = sum(len(r[0]) + len(r[1]) for r in rows)
    assert records == len(expected(proto))
    assert sum(int(b) for r in rows for b in r[2]) == sum(w[6] for w in expected(proto))


def nfacctd_rows(datagrams: list[bytes], tmp_path) -> tuple[list[tuple], str]:
    """Run nfacctd (print plugin, csv) on a free loopback port, send the datagrams, and
    wait for two cache purges after the last; its rows and its log."""
    nfacctd = require("nfacctd")
    port = free_udp_port()
    out, log = tmp_path / "out.csv", tmp_path / "nfacctd.log"
    conf = tmp_path / "nfacctd.conf"
    conf.write_text("\n".join([
        "daemonize: false", "nfacctd_ip: 127.0.0.1", f"nfacctd_port: {port}",
        f"logfile: {log}", "plugins: print[p]",
        "aggregate[p]: src_host, dst_host, src_port, dst_port, proto",
        "print_output[p]: csv", f"print_output_file[p]: {out}",
        "print_output_file_append[p]: true", "print_refresh_time[p]: 1", ""]))
    proc = subprocess.Popen([nfacctd, "-f", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(400):  # until its print plugin runs (its first purge)
            if log.exists() and "Purging cache - END" in log.read_text():
                break
            time.sleep(0.05)
        send_all(datagrams, port)
        purges = log.read_text().count("Purging cache - END")
        for _ in range(400):  # two purges after the last datagram, and rows written
            if log.read_text().count("Purging cache - END") >= purges + 2 and out.exists():
                break
            time.sleep(0.05)
    finally:  # its rows are written: no need to wait for its own shutdown
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    rows = []
    for line in out.read_text().splitlines():
        if line.startswith("SRC_IP") or not line.strip():
            continue
        src, dst, sp, dp, pr, pkts, nbytes = line.split(",")
        rows.append((src, int(sp), dst, int(dp), PROTO_NAME[pr], int(pkts), int(nbytes)))
    return rows, log.read_text()


def test_nfacctd_decodes_every_record(captured, tmp_path):
    proto, datagrams, _port = captured
    rows, log = nfacctd_rows(datagrams, tmp_path)
    assert not [line for line in log.splitlines() if "WARN" in line or "ERROR" in line], log
    want = by_key(expected(proto))
    assert by_key(rows) == want
    assert len(by_key(rows)) == (45 if proto == 5 else 49)  # v5: `big` split in 3, summed


@pytest.mark.parametrize("words", [("ipfix-layout", "openbsd-nat"), ("ipfix-layout", "freebsd"),
                                   ("sampling", "100")])
def test_tshark_and_nfcapd_read_the_other_layouts_and_sampling(recording, tmp_path, words):
    run, datagrams, port = rd.capture(recording, "pflowproto", "10", *words)
    assert run.returncode == 0, run.stderr
    write_pcap(tmp_path / "c.pcap", datagrams, port)
    rows = tshark_fields(tmp_path / "c.pcap", port, ["cflow.template_id", "cflow.octets",
                                                     "cflow.sampling_interval"])
    tids = {int(t) for r in rows for t in r[0]}
    assert tids == {"openbsd-nat": {256, 257, 258}, "freebsd": {256, 257, 258},
                    "100": {256, 257, 400}}[words[1]]
    ipfix_records = sum(len(r[1]) for r in rows)
    assert ipfix_records >= 49
    rows_n, log, _ = rd.nfcapd_collect(tmp_path / "flows", lambda p: send_all(datagrams, p),
                                       require("nfdump"))
    assert "Bad Packets: 0" in log, log
    # nfdump shows FreeBSD's NAT44 events as records too: 2 translated IPv4 states x 2
    # directions x (create, delete)
    assert len(rows_n) == (57 if words[1] == "freebsd" else 49)

