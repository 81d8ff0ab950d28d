"""Helpers for tests that check our bytes with real peers (tshark, nfcapd/nfdump, mandoc).

A missing peer skips the test, unless PFLOWBSD_REQUIRE_PEERS=1 (CI), where it fails:
a green CI run must mean the peers really agreed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest

LOOPBACK = bytes([127, 0, 0, 1])
SRC_PORT = 40000

# pcap global header: magic, major, minor, thiszone, sigfigs, snaplen, linktype
PCAP_HEADER = struct.Struct("<IHHiIII")
# pcap record header: ts_sec, ts_usec, incl_len, orig_len
PCAP_RECORD = struct.Struct("<IIII")
LINKTYPE_RAW = 101  # each record starts with the IP header
# IPv4 header without options: ver/ihl, tos, total length, id, flags/frag, ttl, proto,
# checksum, src, dst
IPV4 = struct.Struct("!BBHHHBBH4s4s")
# UDP header: sport, dport, length, checksum (0 = none, legal over IPv4)
UDP = struct.Struct("!HHHH")


def require(tool: str) -> str:
    """The path of `tool`; skip without it, or fail when PFLOWBSD_REQUIRE_PEERS=1."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} not installed"
        if os.environ.get("PFLOWBSD_REQUIRE_PEERS") == "1":
            pytest.fail(message + " (PFLOWBSD_REQUIRE_PEERS=1)")
        pytest.skip(message)
    return path


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_packet(payload: bytes, port: int, ident: int = 0) -> bytes:
    """An IPv4/UDP packet 127.0.0.1:SRC_PORT -> 127.0.0.1:port carrying payload."""
    udp = UDP.pack(SRC_PORT, port, UDP.size + len(payload), 0)
    total = IPV4.size + len(udp) + len(payload)
    header = IPV4.pack(0x45, 0, total, ident & 0xFFFF, 0x4000, 64, 17, 0, LOOPBACK, LOOPBACK)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp + payload


def write_pcap(path, datagrams: list[bytes], port: int | list[int],
               ts: int = 1_700_000_000) -> None:
    """Write datagrams as one UDP packet each, one second apart, for tshark -r; `port`
    is every datagram's destination port, or one per datagram."""
    ports = port if isinstance(port, list) else [port] * len(datagrams)
    with open(path, "wb") as f:
        f.write(PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        for i, payload in enumerate(datagrams):
            packet = udp_packet(payload, ports[i], i)
            f.write(PCAP_RECORD.pack(ts + i, 0, len(packet), len(packet)) + packet)


def _stderr(text: str) -> str:
    """tshark's stderr without its warning about running as root."""
    return "\n".join(line for line in text.splitlines() if "Running as user" not in line).strip()


PORT_ONLY_NOTE = "Possible traceroute: hop #"


def tshark_fields(pcap, port: int, fields: list[str]) -> list[list[list[str]]]:
    """Decode pcap as cflow on `port`: per packet, per field, the list of occurrences.

    Fails on anything else tshark says on stderr, on malformed packets and on any expert
    note (e.g. "Data (N bytes), no template found") but udp.possible_traceroute, which
    tshark's UDP dissector draws from the port numbers alone: an ephemeral source port in the
    traceroute range (33434-33534) reads as "Possible traceroute: hop #7, attempt #1" (seen
    in CI), whatever the payload."""
    tshark = require("tshark")
    args = [tshark, "-n", "-r", str(pcap), "-d", f"udp.port=={port},cflow", "-T", "fields",
            "-E", "occurrence=a", "-E", "aggregator=|", "-E", "separator=\t"]  # fmt: skip
    for name in [*fields, "_ws.expert.message", "_ws.malformed"]:
        args += ["-e", name]
    run = subprocess.run(args, capture_output=True, text=True, check=True)
    assert _stderr(run.stderr) == ""
    rows = []
    for line in run.stdout.splitlines():
        cells = [cell.split("|") if cell else [] for cell in line.split("\t")]
        expert = [note for note in cells[-2] if not note.startswith(PORT_ONLY_NOTE)]
        assert [expert, cells[-1]] == [[], []], f"tshark expert/malformed: {cells[-2:]}"
        rows.append(cells[:-2])
    return rows


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rx_queue(port: int) -> int | None:
    """Bytes waiting in a loopback UDP socket's receive queue (Linux /proc)."""
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1].endswith(f":{port:04X}"):
                return int(cols[4].split(":")[1], 16)
    return None


class Nfcapd:
    port: int
    log: str = ""


@contextlib.contextmanager
def nfcapd(outdir):
    """A real nfcapd on a free loopback port, writing into outdir.  Leaving the block
    waits until it has read everything sent, stops it (SIGTERM writes the file) and
    leaves its log, with the `Bad Packets`/`Sequence Errors` lines, in .log."""
    capd = Nfcapd()
    capd.port = free_udp_port()
    os.makedirs(outdir, exist_ok=True)
    proc = subprocess.Popen([require("nfcapd"), "-b", "127.0.0.1", "-p", str(capd.port),
                             "-w", str(outdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    try:
        for line in proc.stdout:  # until it listens (EOF if it dies)
            log.append(line)
            if "Startup" in line:
                break
        assert proc.poll() is None, "".join(log)
        yield capd
        for _ in range(300):  # until nfcapd has read everything
            if not _rx_queue(capd.port):
                break
            time.sleep(0.01)
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        capd.log = "".join(log) + proc.communicate(timeout=30)[0]
