"""-w FILE: what the daemon and replay send, captured as pcap, read by tcpdump and tshark
exactly as a capture on the egress interface would be: same count, addresses, ports,
payloads, and IP and UDP checksums that tshark verifies."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

from pflowbsd.config import endpoint_text
from tests.support import replaydata as rd
from tests.support.peers import _stderr, require, tshark_fields
from tests.system.test_live import a, b, c, run_live, standin

FAMILIES = {"v4": (socket.AF_INET, "127.0.0.1"), "v6": (socket.AF_INET6, "::1")}


def received(s: socket.socket) -> list[tuple[bytes, int]]:
    """(payload, source port) of every datagram queued on s."""
    out = []
    while True:
        try:
            data, addr = s.recvfrom(65535)
        except BlockingIOError:
            return out
        out.append((data, addr[1]))


def tcpdump(pcap: str, stdin: bytes | None = None) -> list[str]:
    run = subprocess.run([require("tcpdump"), "-nr", pcap], input=stdin, capture_output=True,
                         check=True)
    assert b"link-type RAW" in run.stderr, run.stderr
    return run.stdout.decode().splitlines()


def tshark_checked(pcap) -> list[tuple[str, str, str, str, str]]:
    """Per packet: IP checksum status, UDP checksum status (1: good), source port,
    destination port, UDP payload in hex; with checksum checking on."""
    tshark = require("tshark")
    run = subprocess.run([tshark, "-n", "-r", str(pcap), "-o", "ip.check_checksum:TRUE",
                          "-o", "udp.check_checksum:TRUE", "-T", "fields", "-E", "separator=\t",
                          "-e", "ip.checksum.status", "-e", "udp.checksum.status",
                          "-e", "udp.srcport", "-e", "udp.dstport", "-e", "udp.payload"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert _stderr(run.stderr) == ""
    return [tuple(line.split("\t")) for line in run.stdout.splitlines()]


def replay_captured(recording, tmp_path, family: str, *words: str):
    fam, host = FAMILIES[family]
    pcap = str(tmp_path / "sent.pcap")
    with rd.listener(fam, host) as s:
        port = s.getsockname()[1]
        run = rd.replay(recording, [endpoint_text(host, port)], "-w", pcap, *words)
        assert run.returncode == 0, run.stderr
        return pcap, port, received(s)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("proto", ["5", "10"])
def test_replay_capture_is_what_the_collector_received(recording, tmp_path, family, proto):
    pcap, port, got = replay_captured(recording, tmp_path, family, "pflowproto", proto)
    assert len(got) >= 2
    host = FAMILIES[family][1]
    ip = "IP6" if family == "v6" else "IP"
    lines = tcpdump(pcap)
    assert len(lines) == len(got), lines
    for text, (data, sport) in zip(lines, got):
        assert re.search(rf" {ip} {re.escape(host)}\.{sport} > {re.escape(host)}\.{port}: "
                         rf"UDP, length {len(data)}$", text), text
    checked = tshark_checked(pcap)
    ip_ok = "" if family == "v6" else "1"  # IPv6 has no header checksum
    assert checked == [(ip_ok, "1", str(sport), str(port), data.hex()) for data, sport in got]
    # and tshark decodes each datagram as NetFlow/IPFIX without a complaint
    rows = tshark_fields(pcap, port, ["cflow.version"])
    assert [r[0] for r in rows] == [[proto]] * len(got)


def test_w_dash_streams_the_capture_to_stdout(recording):
    with rd.listener() as s:
        port = s.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "pflowbsd", "-d", "--replay", str(recording),
                              "-w", "-", "flowdst", f"127.0.0.1:{port}"], capture_output=True,
                             cwd=rd.ROOT, env={**os.environ, "PYTHONPATH": str(rd.ROOT)}, timeout=60)
        assert run.returncode == 0, run.stderr
        got = received(s)
    lines = tcpdump("-", stdin=run.stdout)
    assert len(lines) == len(got) >= 2
    assert all(f"> 127.0.0.1.{port}: UDP, length" in line for line in lines)


def test_the_live_daemon_captures_every_datagram_it_sends(tmp_path):
    pcap = str(tmp_path / "live.pcap")
    script = standin(tmp_path, [a() + b() + c(), a() + c(), a()], last=a())
    status, before, after, err = run_live(script, until=4, words=["-w", pcap, "pflowproto", "10"])
    assert status == 0, err
    sent = before + after
    assert len(sent) >= 2  # the templates at start, the data of B and C at SIGTERM
    assert [row[4] for row in tshark_checked(pcap)] == [d.hex() for d in sent]
    assert len(tcpdump(pcap)) == len(sent)


def test_an_unwritable_capture_file_is_one_line_and_exit_1(tmp_path):
    run = rd.pflowbsd("-d", "-w", str(tmp_path / "no" / "such" / "dir.pcap"), "--pfctl",
                      standin(tmp_path, [], last=a()), "flowdst", "127.0.0.1:9")
    assert run.returncode == 1
    assert len(run.stderr.strip().splitlines()) == 1 and "No such file" in run.stderr, run.stderr
