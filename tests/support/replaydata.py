"""Hand-made `--record` folders for the end-to-end tests: a few pf states with known
numbers, written as `pfctl -ss -vv` snapshots, plus the side files the daemon reads.

Each State keeps the numbers written into its records and, next to them, the key the
reference says pflow exports (pflow-semantics.md §1.3: the pre-translation key,
initiator -> responder), so that tests compute what a collector must show from these
numbers alone, never through the tracker.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support import peers
from tests.support.pftext import record, sid

T0 = 1_700_000_000  # the first snapshot, epoch seconds
BOOT = T0 - 100_000  # DIR/boottime
SNAPS = (T0, T0 + 10, T0 + 20, T0 + 60)
M = 0xFFFFFFFF
# DIR/timeouts: pf's defaults but udp.multiple, so that the file is seen to be read
UDP_MULTIPLE = 90
TIMEOUTS = {"tcp.first": 120, "tcp.opening": 30, "tcp.established": 86400, "tcp.closing": 900,
            "tcp.finwait": 45, "tcp.closed": 90, "tcp.tsdiff": 30, "udp.first": 60,
            "udp.single": 30, "udp.multiple": UDP_MULTIPLE, "icmp.first": 20,
            "icmp.error": 10, "other.first": 60, "other.single": 30, "other.multiple": 60,
            "frag": 60, "interval": 10}  # fmt: skip
INFO = """Status: Enabled for 1 days 03:46:40              Debug: err

Hostid:   0x1a2b3c4d
Checksum: 0x3bd1e0f5c24a7a54b1e2c0a7f6a4e9d1

State Table                          Total             Rate
  current entries                        2
"""  # the stand-in pfctl's tables hold 1-3 states: fewer than half of it is a partial table


def hms(s: int) -> str:
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclass(frozen=True)
class Seen:
    """The state as one snapshot prints it."""
    t: int  # the snapshot, epoch seconds
    pkts: tuple[int, int]
    bytes: tuple[int, int]
    age: int
    expires: int


@dataclass(frozen=True)
class State:
    name: str
    head: str  # the `pfctl -ss` head line
    af: int
    proto: int
    key: tuple  # (src, sport, dst, dport) pflow exports for flow1
    seen: tuple[Seen, ...]
    timeout: int  # the value of the timeout class the state runs on
    nat: tuple | None = None  # flow1's post-NAT (src, sport, dst, dport), when translated
    pflow: bool = True
    n: int = 0  # its pf id

    def text(self, t: int) -> str:
        s = next(s for s in self.seen if s.t == t)
        return record(self.head, id=sid(self.n), age=hms(s.age), expires=hms(s.expires),
                      pkts=f"{s.pkts[0]}:{s.pkts[1]}", bytes=f"{s.bytes[0]}:{s.bytes[1]}",
                      extra=", rule 3" + (", pflow" if self.pflow else ""))

    @property
    def exported(self) -> bool:
        """pf removed it within the replay (it is missing from the last snapshot)."""
        return self.pflow and self.seen[-1].t != SNAPS[-1]

    @property
    def removed_at(self) -> int:
        return SNAPS[SNAPS.index(self.seen[-1].t) + 1]

    @property
    def first(self) -> int:
        """Epoch seconds of creation: snapshot time - age."""
        return self.seen[0].t - self.seen[0].age

    @property
    def last(self) -> int:
        """Epoch seconds of the last packet: (last snapshot) - (timeout - expires in)."""
        s = self.seen[-1]
        return s.t - (self.timeout - s.expires)


def once(pkts, nbytes, age, expires, t=T0) -> tuple[Seen, ...]:
    return (Seen(t, pkts, nbytes, age, expires),)


A4, A6 = socket.AF_INET, socket.AF_INET6
EST = "ESTABLISHED:ESTABLISHED"


def states() -> list[State]:
    """The scenario: everything is seen at T0; most is gone at T0+10 (expired there with
    T0's counters); tcp-out changes at T0+10 and goes at T0+20; `long` never goes;
    `nopflow` goes at T0+10 but is not flagged for export."""
    out = [
        State("tcp-out", f"all tcp 10.0.0.5:50000 -> 93.184.216.34:443       {EST}", A4, 6,
              ("10.0.0.5", 50000, "93.184.216.34", 443),
              (Seen(T0, (20, 30), (5000, 60000), 600, 86370),
               Seen(T0 + 10, (25, 41), (6100, 71234), 610, 86398)), 86400),
        State("udp", "all udp 10.0.0.5:41000 -> 9.9.9.9:53       MULTIPLE:MULTIPLE", A4, 17,
              ("10.0.0.5", 41000, "9.9.9.9", 53), once((2, 2), (122, 300), 20, 80), UDP_MULTIPLE),
        State("icmp", "all icmp 10.0.0.5:47829 -> 8.8.8.8:8       0:0", A4, 1,
              ("10.0.0.5", 47829, "8.8.8.8", 8), once((3, 3), (252, 252), 3, 8), 10),
        State("nat-out", f"em0 tcp 203.0.113.2:57342 (192.168.0.2:50000) -> 198.51.100.7:22       {EST}",
              A4, 6, ("192.168.0.2", 50000, "198.51.100.7", 22),
              once((40, 38), (4400, 9876), 1200, 86000), 86400,
              nat=("203.0.113.2", 57342, "198.51.100.7", 22)),
        State("rdr-in", f"em0 tcp 192.168.1.100:8080 (203.0.113.1:80) <- 198.51.100.5:51234       {EST}",
              A4, 6, ("198.51.100.5", 51234, "203.0.113.1", 80),
              once((12, 10), (1300, 15000), 90, 86395), 86400,
              nat=("198.51.100.5", 51234, "192.168.1.100", 8080)),
        State("one-sided", "all udp 10.0.0.5:41001 -> 192.0.2.9:514       SINGLE:NO_TRAFFIC", A4, 17,
              ("10.0.0.5", 41001, "192.0.2.9", 514), once((5, 0), (500, 0), 40, 25), 30),
        State("big", f"all tcp 10.0.0.6:50010 -> 198.51.100.20:443       {EST}", A4, 6,
              ("10.0.0.6", 50010, "198.51.100.20", 443),
              once((3_000_000, 6_500_000), (1000, 9_000_000_000), 7200, 86399), 86400),
        State("v6", f"all tcp 2001:db8::10[50022] -> 2001:db8:1::1[443]       {EST}", A6, 6,
              ("2001:db8::10", 50022, "2001:db8:1::1", 443),
              once((7, 9), (1700, 2900), 300, 86380), 86400),
        State("v6-nat", f"all tcp 2001:db8:ffff::1[40000] (2001:db8::20[50030]) -> 2001:db8:1::1[443]       {EST}",
              A6, 6, ("2001:db8::20", 50030, "2001:db8:1::1", 443),
              once((4, 4), (800, 900), 50, 86390), 86400,
              nat=("2001:db8:ffff::1", 40000, "2001:db8:1::1", 443)),
        State("long", f"all tcp 10.0.0.7:50100 -> 198.51.100.30:22       {EST}", A4, 6,
              ("10.0.0.7", 50100, "198.51.100.30", 22),
              tuple(Seen(t, (9, 9), (900, 900), 100 + t - T0, 86000) for t in SNAPS), 86400),
        State("nopflow", f"all tcp 10.0.0.8:50200 -> 198.51.100.40:80       {EST}", A4, 6,
              ("10.0.0.8", 50200, "198.51.100.40", 80),
              once((6, 6), (600, 600), 30, 86390), 86400, pflow=False),
    ]
    out += [State(f"fill{i}", f"all udp 10.1.0.{i + 1}:{40000 + i} -> 192.0.2.53:53       MULTIPLE:MULTIPLE",
                  A4, 17, (f"10.1.0.{i + 1}", 40000 + i, "192.0.2.53", 53),
                  once((1 + i, 1), (60 + i, 100 + i), 40 + i, 60), UDP_MULTIPLE)
            for i in range(16)]  # fmt: skip
    return [State(**{**s.__dict__, "n": k + 1}) for k, s in enumerate(out)]


def write(folder, chosen: list[State] | None = None) -> list[State]:
    """DIR/<t>.states for each of SNAPS, DIR/timeouts, DIR/info, DIR/boottime."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    chosen = states() if chosen is None else chosen
    for t in SNAPS:
        (d / f"{t}.states").write_text("".join(s.text(t) for s in chosen if any(x.t == t for x in s.seen)))
    (d / "timeouts").write_text("".join(f"{k:<20} {v:>10d}s\n" for k, v in TIMEOUTS.items())
                                + "adaptive.start             6000 states\n"
                                + "adaptive.end              12000 states\n")
    (d / "info").write_text(INFO)
    (d / "boottime").write_text(f"{BOOT}\n")
    return chosen


def records(s: State, split: bool) -> list[tuple]:
    """The records pflow sends for a removed state, as (src, sport, dst, dport, packets,
    bytes, post-NAT), flow1 first; `split` is v5's loop over 32-bit byte chunks
    (pflow-semantics.md §1.5), packets whole in every chunk."""
    src, sport, dst, dport = s.key
    last = s.seen[-1]
    f1 = (src, sport, dst, dport, last.pkts[0])
    f2 = (dst, dport, src, sport, last.pkts[1])
    n1 = s.nat
    n2 = (n1[2], n1[3], n1[0], n1[1]) if n1 else None
    b0, b1 = last.bytes
    chunks = []
    if split:
        while b0 > M:
            chunks.append((M, 0))
            b0 -= M
        while b1 > M:
            chunks.append((0, M))
            b1 -= M
    chunks.append((b0, b1))
    out = []
    for c0, c1 in chunks:
        if c0:
            out.append((*f1, c0, n1))
        if c1:
            out.append((*f2, c1, n2))
    return out


def expected_v5():
    """(src, sport, dst, dport, proto, packets, bytes, first, last) of every v5 record:
    IPv4 states flagged pflow and removed during the replay, bytes split at 2^32 - 1."""
    want = []
    for s in states():
        if s.exported and s.af == A4:
            for src, sp, dst, dp, pkts, nbytes, _nat in records(s, split=True):
                want.append((src, sp, dst, dp, s.proto, pkts % 2**32, nbytes, s.first, s.last))
    return want


# --- running the CLI over a folder, and collecting what it sends --------------------

from tests.support import ROOT  # noqa: E402


def pflowbsd(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """The real CLI in a child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pflowbsd", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env, **kw)


def replay(folder, dsts: list[str], *words: str) -> subprocess.CompletedProcess:
    flow = [w for d in dsts for w in ("flowdst", d)]
    return pflowbsd("-d", "--replay", str(folder), *flow, *words)


def listener(family=socket.AF_INET, host="127.0.0.1") -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((host, 0))
    s.setblocking(False)
    return s


def drain(s: socket.socket) -> list[bytes]:
    """Every datagram queued on s (the sender has exited, so all of them are here)."""
    out = []
    while True:
        try:
            out.append(s.recv(65535))
        except BlockingIOError:
            return out


def capture(folder, *words: str) -> tuple[subprocess.CompletedProcess, list[bytes], int]:
    """Replay folder to a socket of ours: the process, the datagrams, our port."""
    with listener() as s:
        port = s.getsockname()[1]
        run = replay(folder, [f"127.0.0.1:{port}"], *words)
        return run, drain(s), port


NFDUMP_FMT = "%tsr|%ter|%sa|%sp|%da|%dp|%pr|%pkt|%byt|%eng|%nsa|%nda|%nsp|%ndp"
NFDUMP_COLS = ["ts", "te", "sa", "sp", "da", "dp", "pr", "pkt", "byt", "eng", "nsa", "nda", "nsp", "ndp"]


def nfcapd_collect(outdir, send, nfdump: str) -> tuple[list[dict], str, object]:
    """Run nfcapd on a free loopback port, call send(port), let nfcapd read everything,
    stop it; return nfdump's rows (dicts of NFDUMP_COLS), nfcapd's log, send's result."""
    with peers.nfcapd(outdir) as capd:
        result = send(capd.port)
    out = subprocess.run([nfdump, "-q", "-N", "-R", str(outdir), "-o", "fmt:" + NFDUMP_FMT],
                         capture_output=True, text=True, check=True, env={**os.environ, "TZ": "UTC"})
    rows = [dict(zip(NFDUMP_COLS, (c.strip() for c in line.split("|")), strict=True))
            for line in out.stdout.splitlines() if line.strip()]
    return rows, capd.log, result
