"""pflowbsd against softflowd on the same traffic, as CPU ratios (pflowbsd / softflowd),
each side also against the floor (bench/common.py) of the same run:

    python bench/versus_softflowd.py [--flows N] [--quick]

Strategy.  Two workloads of one 10 s poll interval each, over TCP and UDP IPv4 flows:
  worst   N flows x 20 packets, all new each interval: the table at poll 1 holds N new
          states, the N of poll 0 are gone.
  outlive the flows outlive a poll: of an N-state table 20 % new, 60 % changed, 20 %
          idle, and N/5 gone; the same 20 N packets, spread over the new and changed.
For each, the interval's packets become a pcap (Ethernet, headers captured, ip_len
as sent) and the two polls' tables become `pfctl -ss -vv` text (pflowbsd.sim.printer,
checked to parse with 0 errors).  softflowd's cost of the interval is its steady-state
cost: CPU(softflowd -r interval0+interval1) - CPU(softflowd -r interval0), the child's
rusage, exporting NetFlow v5 to a loopback socket (-m above the flow count, so nothing
is expired early).  pflowbsd's is one poll: a tracker that saw table 0 reads table 1's
bytes as the daemon does (1 MiB blocks parsed as they come; `--whole`: decoded at
once), diffs, builds the flows of the states gone, encodes v5 and sends to the same
kind of loopback socket.  Then the same at 10 x the packets per flow (interval 1 only):
softflowd's cost grows with packets, pflowbsd's with states.  Interleaved best of three.
Left out: softflowd's capture (bpf or AF_PACKET copies, per-packet wakeups: -r reads a
file), and pfctl's DIOCGETSTATES ioctl and its printing of the table (pflowbsd reads
text already printed).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # bench/ is not a package: its own directory is on sys.path

from pflowbsd.collector.pcap import PCAP_HEADER, PCAP_RECORD, UDP
from pflowbsd.export.exporter import Exporter
from pflowbsd.flows import Clock
from pflowbsd.pf import snapshot
from pflowbsd.pf.states import parse_states
from pflowbsd.sim.model import Peer, Sim, SimState
from pflowbsd.sim.printer import states_text
from pflowbsd.tracker import Tracker

SOFTFLOWD = "/usr/sbin/softflowd"
LINKTYPE_ETHERNET, SNAPLEN = 1, 96
ETHER = struct.Struct("!6s6sH")  # destination, source, ethertype
# IPv4 header without options: ver/ihl, tos, total length, id, flags/frag, ttl, proto,
# checksum, src, dst
IPV4 = struct.Struct("!BBHHHBBH4s4s")
# TCP header without options: sport, dport, seq, ack, offset/flags, window, sum, urgent
TCP = struct.Struct("!HHIIHHHH")
SYN, ACK, PSH = 0x02, 0x10, 0x08
PAYLOAD = (100, 1000)  # bytes of payload: initiator -> responder, responder -> initiator
INTERVAL, T0, BOOT = 10, 1_700_000_000, 1_699_000_000
PCAP_FILE = struct.Struct("<" + PCAP_HEADER)
PCAP_REC = struct.Struct("<" + PCAP_RECORD)
HOSTID = 0x1A2B3C4D


def endpoints(i: int) -> tuple[int, bytes, int, bytes, int]:
    """Flow i: (proto, client, client port, server, server port); even TCP, odd UDP."""
    proto = 6 if i % 2 == 0 else 17
    client = bytes((10, i >> 16 & 255, i >> 8 & 255, i & 255))
    server = bytes((172, 16, i % 250, 1))
    return proto, client, 1024 + i % 60000, server, 443 if proto == 6 else 53


def frame(i: int, side: int, flags: int) -> bytes:
    """The captured headers of a packet of flow i from `side` (0 initiator), and its
    ip_len in the header as if the payload had been there."""
    proto, c, cp, s, sp = endpoints(i)
    src, dst, sport, dport = (c, s, cp, sp) if side == 0 else (s, c, sp, cp)
    l4 = (TCP.pack(sport, dport, 1, 1, 5 << 12 | flags, 65535, 0, 0) if proto == 6
          else UDP.pack(sport, dport, UDP.size + PAYLOAD[side], 0))
    total = IPV4.size + len(l4) + PAYLOAD[side]
    ip = IPV4.pack(0x45, 0, total, 0, 0x4000, 64, proto, 0, src, dst)
    eth = ETHER.pack(b"\x02\0\0\0\0\x02" if side == 0 else b"\x02\0\0\0\0\x01",
                     b"\x02\0\0\0\0\x01" if side == 0 else b"\x02\0\0\0\0\x02", 0x0800)
    return eth + ip + l4


def ip_len(i: int, side: int) -> int:
    return IPV4.size + (TCP.size if i % 2 == 0 else UDP.size) + PAYLOAD[side]


def write_pcap(path: Path, intervals: list[dict[int, int]]) -> int:
    """Each interval's {flow: packets} as a capture, the flows' packets interleaved and
    spread evenly over the interval; a flow's first packet ever is a SYN.  The count."""
    seen: set[int] = set()
    count = 0
    with open(path, "wb") as f:
        f.write(PCAP_FILE.pack(0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        for k, flows in enumerate(intervals):
            total, n = sum(flows.values()), 0
            heads = {i: (frame(i, 0, ACK | PSH), frame(i, 1, ACK | PSH)) for i in flows}
            sizes = {i: (14 + ip_len(i, 0), 14 + ip_len(i, 1)) for i in flows}
            for j in range(max(flows.values())):
                out: list[bytes] = []
                side = j % 2
                for i, pkts in flows.items():
                    if j >= pkts:
                        continue
                    if i in seen:
                        data = heads[i][side]
                    else:
                        seen.add(i)
                        data = frame(i, 0, SYN)
                    us = n * INTERVAL * 1_000_000 // total
                    out.append(PCAP_REC.pack(T0 + k * INTERVAL + us // 1_000_000,
                                             us % 1_000_000, len(data), sizes[i][side]))
                    out.append(data)
                    n += 1
                f.write(b"".join(out))
            count += n
    return count


def state(i: int, pkts: int, created: int, last: int) -> SimState:
    """Flow i's pf state after `pkts` packets (half each way, initiator first)."""
    proto, c, cp, s, sp = endpoints(i)
    p0, p1 = (pkts + 1) // 2, pkts // 2
    wire = ((socket.inet_ntoa(c), cp), (socket.inet_ntoa(s), sp))
    rng = random.Random(i)
    if proto == 6:
        peers = (Peer(4, rng.getrandbits(32), 1 + p0 * PAYLOAD[0], 65535),
                 Peer(4, rng.getrandbits(32), 1 + p1 * PAYLOAD[1], 65535))
    else:
        peers = (Peer(2), Peer(2))
    return SimState(id=0x65B1E2A000000000 + i, proto=proto, af="inet", direction="out",
                    ifname="em0", wire=wire, stack=wire, rule=1, pflow=True,
                    created=created, last=last,
                    klass="tcp.established" if proto == 6 else "udp.multiple", peers=peers,
                    packets=[p0, p1], bytes=[p0 * ip_len(i, 0), p1 * ip_len(i, 1)])


class _Table:
    """What printer.states_text reads of a Sim."""

    def __init__(self, now: int, sts: list[SimState]) -> None:
        self.now, self.hostid = now, HOSTID
        self.states = {st.id: st for st in sts}


def tables(intervals: list[dict[int, int]], table1: list[int]) -> tuple[bytes, bytes]:
    """pfctl -ss -vv at the end of interval 0 (its flows) and of interval 1 (table1)."""
    up0, up1 = T0 + INTERVAL - BOOT, T0 + 2 * INTERVAL - BOOT
    start = {i: 0 if i in intervals[0] else 1 for i in set(intervals[0]) | set(intervals[1])}
    out = []
    for k, (now, ids) in enumerate(((up0, list(intervals[0])), (up1, table1))):
        sts = []
        for i in ids:
            pkts = sum(iv.get(i, 0) for iv in intervals[:k + 1])
            created = T0 + start[i] * INTERVAL - BOOT
            last = now - 1 if intervals[k].get(i) else up0 - 1
            sts.append(state(i, pkts, created, last))
        text = states_text(cast(Sim, _Table(now, sts)))
        table = parse_states(text)
        if table.errors or len(table.states) != len(ids):
            raise SystemExit(f"table {k}: {len(table.errors)} parse errors, "
                             f"{len(table.states)} of {len(ids)} states")
        out.append(text.encode())
    return out[0], out[1]


def workload(name: str, n: int, ppf: int) -> tuple[list[dict[int, int]], list[int]]:
    """The two intervals' {flow: packets} and the flows in the table at poll 1."""
    if name == "worst":
        return [dict.fromkeys(range(n), 20), dict.fromkeys(range(n, 2 * n), ppf)], \
            list(range(n, 2 * n))
    fifth = n // 5
    active = list(range(fifth, 4 * fifth)) + list(range(n, n + fifth))  # changed, new
    return [dict.fromkeys(range(n), 20), dict.fromkeys(active, ppf * n // len(active))], \
        list(range(fifth, n + fifth))


def sink() -> socket.socket:
    """A loopback UDP socket nobody reads: sends to it cost what sends cost, and what
    overflows its buffer is dropped, for both sides alike."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def softflowd(pcap: Path, port: int, flows: int, work: Path) -> tuple[float, int]:
    """softflowd -r's CPU (user + system) on pcap exporting v5 to loopback, and the v5
    records it says it exported.  `-c none`: no control socket."""
    args = [SOFTFLOWD, "-d", "-r", str(pcap), "-n", f"127.0.0.1:{port}", "-v", "5",
            "-m", str(flows * 2 + 1000), "-p", str(work / "softflowd.pid"), "-c", "none"]
    log = work / "softflowd.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        _pid, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    m = re.search(r"Flows exported: \d+ \((\d+) records\)", text)
    if proc.returncode or not m:
        raise SystemExit(f"{' '.join(args)}: exit status {proc.returncode}: {text[-200:]}")
    return ru.ru_utime + ru.ru_stime, int(m[1])


WHOLE = False  # --whole: table 1 decoded at once (the daemon streams it)
BLOCK = 1 << 20


def pflowbsd_poll(t0: bytes, t1: bytes, port: int) -> Callable[[], object]:
    """Setup (untimed): a tracker that saw table 0.  Timed: the poll of table 1."""
    tracker = Tracker(select=lambda st: True)
    tracker.update(t0.decode(), float(T0 + INTERVAL - BOOT))
    exporter = Exporter(proto=5)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))

    entries = t1.count(b"   id: ")  # `pfctl -si -v`'s count, another call: not timed

    def poll() -> object:
        up = float(T0 + 2 * INTERVAL - BOOT)
        if WHOLE:
            u = tracker.update(t1.decode("utf-8", "replace"), up)
        else:  # as the daemon reads pfctl: 1 MiB blocks, parsed as they come
            blocks = (t1[i:i + BLOCK] for i in range(0, len(t1), BLOCK))
            u = tracker.update(snapshot.record_chunks(blocks), up, states_hint=entries)
        now = Clock(up + BOOT, up)
        for d in exporter.export_entries(u.expired, now):  # as the pipeline exports
            sock.send(d)
        for d in exporter.flush(now):
            sock.send(d)
        sock.close()
        return u
    return poll


def measure(name: str, n: int, ppf: int, runs: int, work: Path, port: int
            ) -> dict[str, float]:
    """Interleaved best of `runs`: the floor of table 1, pflowbsd's poll of it, and
    softflowd on interval 0 alone and on intervals 0 and 1."""
    intervals, table1 = workload(name, n, ppf)
    first, both = work / f"{name}-0.pcap", work / f"{name}-01.pcap"
    write_pcap(first, intervals[:1])
    packets = write_pcap(both, intervals) - sum(intervals[0].values())
    t0, t1 = tables(intervals, table1)
    gone = len(set(intervals[0]) - set(table1))
    best = dict.fromkeys(("floor", "pflowbsd", "sf_first", "sf_both"), float("inf"))
    exported = 0
    for _ in range(runs):
        best["floor"] = min(best["floor"], common.cpu(lambda: common.floor(t1))[0])
        seconds, u = common.cpu(pflowbsd_poll(t0, t1, port))
        best["pflowbsd"] = min(best["pflowbsd"], seconds)
        if (u.gone, len(u.expired), len(u.errors)) != (gone, gone, 0):  # type: ignore[attr-defined]
            raise SystemExit(f"{name}: the tracker expired {u.gone}, expected {gone}")  # type: ignore[attr-defined]
        seconds, before = softflowd(first, port, 2 * n, work)
        best["sf_first"] = min(best["sf_first"], seconds)
        seconds, after = softflowd(both, port, 2 * n, work)
        best["sf_both"] = min(best["sf_both"], seconds)
        exported = after - before
    for p in (first, both):
        p.unlink()
    return {"pflowbsd": best["pflowbsd"], "floor": best["floor"],
            "softflowd": best["sf_both"] - best["sf_first"], "sf_both": best["sf_both"],
            "sf_first": best["sf_first"], "packets": packets, "states": len(table1),
            "gone": gone, "sf_records": exported}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=50_000, help="N (default 50,000)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2,000 flows, one run (a smoke run)")
    ap.add_argument("--whole", action="store_true",
                    help="decode pfctl's table at once (the daemon streams it)")
    args = ap.parse_args()
    global WHOLE
    WHOLE = args.whole
    n, runs = (2_000, 1) if args.quick else (args.flows, args.runs)
    col = sink()
    print(f"# {n} flows; softflowd {SOFTFLOWD} -r, v5 to loopback; pflowbsd one poll, v5 to"
          f" loopback; best of {runs}; {common.interpreter()}")
    print("# left out: softflowd's capture (bpf/AF_PACKET copies and wakeups: it reads a file);"
          " pflowbsd's pfctl (the DIOCGETSTATES ioctl and printing the table)")
    try:
        with tempfile.TemporaryDirectory(prefix="versus-softflowd-") as tmp:
            for name in ("worst", "outlive"):
                for ppf, tag in ((20, ""), (200, "_10x")):
                    r = measure(name, n, ppf, runs, Path(tmp), col.getsockname()[1])
                    print(common.figure(f"{name}{tag}_pflowbsd", r["pflowbsd"], r["floor"],
                                        states=int(r["states"]), gone=int(r["gone"])))
                    print(common.figure(f"{name}{tag}_softflowd", r["softflowd"], r["floor"],
                                        packets=int(r["packets"]),
                                        v5_records=int(r["sf_records"]),
                                        both_intervals_s=f"{r['sf_both']:.3f}",
                                        interval0_s=f"{r['sf_first']:.3f}"))
                    print(f"{name}{tag}_ratio {r['pflowbsd'] / r['softflowd']:.2f}"
                          " pflowbsd/softflowd")
    finally:
        col.close()


if __name__ == "__main__":
    main()
