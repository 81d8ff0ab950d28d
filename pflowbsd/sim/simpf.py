"""A simulated pf: a seeded state table that lives in simulated time and prints itself
the way OpenBSD pfctl does (`-ss -vv`, `-st`, `-si -v`), for the demo and for tests.

Strategy.  Every simulated second (a tick) new connections arrive and each live state
runs one step of its script, a generator that sends packets (the workload, KINDS and the
scripts, is sim/traffic.py).  A packet goes through `_PACKET[proto]`, a transcription of
pf.c's state update for that protocol: the peer levels move (pf_tcp_track_full, the
UDP/other and ICMP branches of pf_test_state), the counters grow, `last` (st->expire) is
set and the timeout class is chosen as pf chooses it.  After the scripts, states past
`last + timeout` are purged (pf_purge_expired_states), so `expires in` is always the
class's value minus the time since the last packet, with pf's default timeouts
(timeouts.DEFAULTS).  The text is sim/printer.py's.  Times are whole epoch seconds;
nothing here reads a clock.  `write_record` is the one function with file I/O: a
--record folder.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pflowbsd.pf.timeouts import (
    CLOSING,
    ESTABLISHED,
    FIN_WAIT_2,
    MULTIPLE,
    SINGLE,
    SYN_SENT,
    TIME_WAIT,
)
from pflowbsd.sim import printer
from pflowbsd.sim.model import SimState
from pflowbsd.sim.traffic import KINDS, LONG_LIVED

if TYPE_CHECKING:
    from pflowbsd.sim.model import Endpoints, Script

MASK32 = 0xFFFFFFFF


# --- pf.c's state update, per protocol ------------------------------------------------

def _tcp_timeout(s: int, d: int) -> str:
    """pf_tcp_track_full(): the timeout after any packet but the creating SYN.

    Written from pf.c apart from timeouts.timeout_class on purpose (`duplicates` pairs
    it with timeouts._tcp_class): that one infers the class from printed text, this is
    the truth it is tested against (test_simpf asserts timeout_class(parsed) == klass for
    every simulated state), which sharing code would make moot."""
    if s >= FIN_WAIT_2 and d >= FIN_WAIT_2:
        return "tcp.closed"
    if s >= CLOSING and d >= CLOSING:
        return "tcp.finwait"
    if s < ESTABLISHED or d < ESTABLISHED:
        return "tcp.opening"
    if s >= CLOSING or d >= CLOSING:
        return "tcp.closing"
    return "tcp.established"


def _tcp_packet(st: SimState, side: int, flags: str, payload: int) -> None:
    src, dst = st.peers[side], st.peers[1 - side]
    if "S" in flags and src.level < SYN_SENT:
        src.level = SYN_SENT
        src.sent += 1
        if side:  # the SYN-ACK: each side's window is what the other advertises
            src.isn = ((st.id & MASK32) * 2654435761 & MASK32) | 1
            shift = bool(src.wscale and dst.wscale)
            dst.window = 65160 << (src.wscale & 0x0f) * shift
            src.window = 64240 << (dst.wscale & 0x0f) * shift
    if "F" in flags:
        src.level = max(src.level, CLOSING)
        src.sent += 1
    if "A" in flags:
        if dst.level == SYN_SENT:
            dst.level = ESTABLISHED
        elif dst.level == CLOSING:
            dst.level = FIN_WAIT_2
    if "R" in flags:
        src.level = dst.level = TIME_WAIT
    src.sent += payload
    st.klass = ("tcp.first" if not sum(st.packets) else
                _tcp_timeout(st.peers[0].level, st.peers[1].level))


def _udp_packet(st: SimState, side: int, flags: str, payload: int) -> None:
    src, dst = st.peers[side], st.peers[1 - side]
    first = not sum(st.packets)
    src.level = max(src.level, SINGLE)
    if dst.level == SINGLE:
        dst.level = MULTIPLE
    both = st.peers[0].level == st.peers[1].level == MULTIPLE
    st.klass = "udp.first" if first else "udp.multiple" if both else "udp.single"


def _icmp_packet(st: SimState, side: int, flags: str, payload: int) -> None:
    # every query/reply after the first: pf_update_state_timeout(PFTM_ICMP_ERROR_REPLY)
    st.klass = "icmp.error" if sum(st.packets) else "icmp.first"


_PACKET = {6: _tcp_packet, 17: _udp_packet, 1: _icmp_packet, 58: _icmp_packet}
# IP + transport header bytes, by (proto, af)
_HEADERS = {(6, "inet"): 52, (6, "inet6"): 72, (17, "inet"): 28, (17, "inet6"): 48,
            (1, "inet"): 28, (58, "inet6"): 48}


def _ntop(af: str, addr: str) -> str:
    fam = socket.AF_INET6 if af == "inet6" else socket.AF_INET
    return socket.inet_ntop(fam, socket.inet_pton(fam, addr))


class SimPf:
    """The simulated pf.  `rate` is new states per simulated second."""

    def __init__(self, seed: int = 1, rate: float = 2.0, start: int = 1_700_000_000,
                 uptime: int = 3 * 86400 + 4 * 3600 + 5 * 60 + 6, hostid: int = 0x1A2B3C4D):
        self.rng = random.Random(seed)
        self.seed, self.rate, self.hostid = seed, rate, hostid
        self.now = start
        self.boot = start - uptime
        self.next_id = (self.boot << 32) | 0x1000  # pf_status.stateid = time << 32
        self.states: dict[int, SimState] = {}
        self.scripts: dict[int, Iterator[None]] = {}
        self.gone: dict[int, SimState] = {}  # purged or flushed, `removed` set
        self.unflagged: set[int] = set()  # ids of states without `pflow`
        self.counters = dict(searches=0, inserts=0, removals=0)
        self._kinds = list(KINDS)
        self._weights = [k[0] for k in KINDS.values()]
        self._open(*LONG_LIVED, created=start - 93784, ifname="em0")  # open for 26 hours

    # the kernel side
    def packet(self, st: SimState, side: int, flags: str, payload: int) -> None:
        _PACKET[st.proto](st, side, flags, payload)
        st.packets[side] += 1
        st.bytes[side] += _HEADERS[st.proto, st.af] + payload + (8 if "S" in flags else 0)
        st.last = self.now
        self.counters["searches"] += 1

    def _open(self, kind: str, proto: int, af: str, direction: str, rule: int, pflow: bool,
              script: Script, life: int, down: int, endpoints: Endpoints,
              services: tuple[int, ...], created: int | None = None,
              ifname: str = "all") -> SimState:
        rng = random.Random(f"{self.seed}/{self.next_id & MASK32}")
        wire, stack = endpoints(rng, proto, rng.choice(services))
        norm = lambda keys: ((_ntop(af, keys[0][0]), keys[0][1]),
                             (_ntop(af, keys[1][0]), keys[1][1]))
        st = SimState(self.next_id, proto, af, direction, ifname, norm(wire), norm(stack),
                      rule, pflow, self.now if created is None else created)
        if proto == 6:
            st.peers[0].isn, st.peers[0].window = rng.getrandbits(32) | 1, 64240
            st.peers[0].wscale = rng.choice((0, 0x87, 0x88))
            st.peers[1].wscale = 0x86 if st.peers[0].wscale else 0
        self.next_id += 1
        self.states[st.id] = st
        if not pflow:
            self.unflagged.add(st.id)
        self.scripts[st.id] = script(self, st, rng, rng.randint(0, life) if life else 0, down)
        self.counters["inserts"] += 1
        self._step(st)
        return st

    def _step(self, st: SimState) -> None:
        script = self.scripts.get(st.id)
        if script is None:
            return
        try:
            next(script)
        except StopIteration:
            del self.scripts[st.id]

    def advance(self, to: int) -> None:
        """Run the ticks up to epoch second `to`: arrivals, scripts, then the purge."""
        while self.now < to:
            self.now += 1
            live = list(self.states.values())
            n = int(self.rate) + (self.rng.random() < self.rate % 1)
            for st in live:
                self._step(st)
            for _ in range(n):
                kind = self.rng.choices(self._kinds, self._weights)[0]
                self._open(kind, *KINDS[kind][1:])
            self._purge()

    def _purge(self) -> None:
        for sid in [s.id for s in self.states.values() if s.expires <= self.now]:
            self._remove(sid)

    def _remove(self, sid: int) -> None:
        st = self.states.pop(sid)
        st.removed = self.now
        self.scripts.pop(sid, None)
        self.gone[sid] = st
        self.counters["removals"] += 1

    def flush_states(self) -> int:
        """`pfctl -F states`: every state goes (and pflow exports each one)."""
        ids = list(self.states)
        for sid in ids:
            self._remove(sid)
        return len(ids)

    # what pfctl prints (sim/printer.py)
    def states_text(self) -> str:
        """`pfctl -ss -vv`, in pf's list order (creation order)."""
        return printer.states_text(self)

    def timeouts_text(self) -> str:
        """`pfctl -st` with pf's defaults."""
        return printer.timeouts_text()

    def info_text(self) -> str:
        """`pfctl -si -v` (print_status), pf enabled since boot."""
        return printer.info_text(self)


def write_record(folder: str | Path, seed: int = 1, rate: float = 2.0, start: int = 1_700_000_000,
                 duration: int = 300, interval: int = 10, flush: bool = True) -> SimPf:
    """A --record folder as the daemon writes it: `<unix-seconds>.states` every
    `interval` simulated seconds, `timeouts`, `info`, `boottime`; with `flush`, a last,
    empty snapshot after `pfctl -F states`, so every state is removed."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    sim = SimPf(seed=seed, rate=rate, start=start)
    (d / "boottime").write_text(f"{sim.boot}\n")
    (d / "timeouts").write_text(sim.timeouts_text())
    (d / "info").write_text(sim.info_text())
    (d / f"{sim.now}.states").write_text(sim.states_text())
    while sim.now < start + duration:
        sim.advance(min(sim.now + interval, start + duration))
        (d / f"{sim.now}.states").write_text(sim.states_text())
    if flush:
        sim.advance(sim.now + interval)
        sim.flush_states()
        (d / f"{sim.now}.states").write_text(sim.states_text())
    return sim
