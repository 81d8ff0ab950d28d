"""A simulated pf: a seeded state table that lives in simulated time and prints itself
the way OpenBSD pfctl does (`-ss -vv`, `-st`, `-si -v`), for the demo and for tests.

Strategy.  Every simulated second (a tick) new connections arrive and each live state
runs one step of its script, a generator that sends packets.  A packet goes through
`_PACKET[proto]`, a transcription of pf.c's state update for that protocol: the peer
levels move (pf_tcp_track_full, the UDP/other and ICMP branches of pf_test_state), the
counters grow, `last` (st->expire) is set and the timeout class is chosen as pf chooses
it.  After the scripts, states past `last + timeout` are purged (pf_purge_expired_states),
so `expires in` is always the class's value minus the time since the last packet, with
pf's default timeouts (timeouts.DEFAULTS).  Times are whole epoch seconds; nothing here
reads a clock.  `write_record` is the one function with file I/O: a --record folder.
"""

from __future__ import annotations

import hashlib
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path

from pflowbsd.pf.netdb import proto_name
from pflowbsd.pf.timeouts import (
    CLOSING,
    DEFAULTS,
    ESTABLISHED,
    FIN_WAIT_2,
    MULTIPLE,
    SINGLE,
    SYN_SENT,
    TIME_WAIT,
)

TCP_NAMES = ("CLOSED", "LISTEN", "SYN_SENT", "SYN_RCVD", "ESTABLISHED", "CLOSE_WAIT",
             "FIN_WAIT_1", "CLOSING", "LAST_ACK", "FIN_WAIT_2", "TIME_WAIT")
UDP_NAMES = ("NO_TRAFFIC", "SINGLE", "MULTIPLE")  # PFUDPS_NAMES
# `pfctl -st` order on OpenBSD (pf_timeouts[] in pfctl_parser.c); the rest are " states".
ST_ORDER = ("tcp.first", "tcp.opening", "tcp.established", "tcp.closing", "tcp.finwait",
            "tcp.closed", "tcp.tsdiff", "udp.first", "udp.single", "udp.multiple",
            "icmp.first", "icmp.error", "other.first", "other.single", "other.multiple",
            "frag", "interval", "adaptive.start", "adaptive.end", "src.track")
MASK32 = 0xFFFFFFFF
NAT_ADDR = "203.0.113.1"


@dataclass(slots=True)
class Peer:
    """One side of a state: its pf level and, for TCP, what print_seq() shows."""
    level: int = 0
    isn: int = 0  # seqlo before any data; 0 with window 1 until the peer is seen
    sent: int = 0  # sequence space used (payload, SYN, FIN)
    window: int = 1
    wscale: int = 0  # the raw byte: 0 = not negotiated


@dataclass(slots=True)
class SimState:
    id: int
    proto: int
    af: str  # inet / inet6
    direction: str  # in / out
    ifname: str
    wire: tuple  # ((src addr, port), (dst addr, port)), initiator -> responder
    stack: tuple
    rule: int
    pflow: bool
    created: int
    last: int = 0  # st->expire: the last packet
    removed: int | None = None
    klass: str = ""
    peers: tuple = field(default_factory=lambda: (Peer(), Peer()))  # initiator, responder
    packets: list = field(default_factory=lambda: [0, 0])
    bytes: list = field(default_factory=lambda: [0, 0])

    @property
    def expires(self) -> int:
        return self.last + DEFAULTS[self.klass]


# --- pf.c's state update, per protocol ------------------------------------------------

def _tcp_timeout(s: int, d: int) -> str:
    """pf_tcp_track_full(): the timeout after any packet but the creating SYN.

    Written from pf.c apart from timeouts.timeout_class on purpose: the tests check
    the daemon's inference against this model, which sharing code would make moot."""
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
MSS = 1400


# --- the printer: print_state() of OpenBSD pf_print_state.c 1.69 ----------------------

def _host(af: str, addr: str, port: int) -> str:
    if not port:
        return addr
    return f"{addr}[{port}]" if af == "inet6" else f"{addr}:{port}"


def _hms(seconds: int) -> str:
    h, rest = divmod(max(0, seconds), 3600)
    return f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}"


def _seq(p: Peer) -> str:
    if not p.isn:
        return f"[0 + {p.window}]"
    return f"[{(p.isn + p.sent) & MASK32} + {p.window}]"


def print_state(st: SimState, now: int) -> str:
    """One `pfctl -ss -vv` record; `in` states print responder first."""
    (wsrc, wdst), (ssrc, sdst) = st.wire, st.stack
    if st.direction == "out":
        left, lalt, arrow, right, ralt = wsrc, ssrc, "->", wdst, sdst
        order = (0, 1)
    else:
        left, lalt, arrow, right, ralt = sdst, wdst, "<-", ssrc, wsrc
        order = (1, 0)
    parts = [st.ifname, proto_name(st.proto), _host(st.af, *left)]
    if lalt != left:
        parts.append(f"({_host(st.af, *lalt)})")
    parts += [arrow, _host(st.af, *right)]
    if ralt != right:
        parts.append(f"({_host(st.af, *ralt)})")
    a, b = (st.peers[i] for i in order)
    names = {6: TCP_NAMES, 17: UDP_NAMES}.get(st.proto)
    pair = f"{names[a.level]}:{names[b.level]}" if names else f"{a.level}:{b.level}"
    lines = [" ".join(parts) + "       " + pair]
    if st.proto == 6:
        ws = a.wscale and b.wscale
        lines.append("   " + _seq(a) + (f" wscale {a.wscale & 0x0f}" if ws else "") + "  "
                     + _seq(b) + (f" wscale {b.wscale & 0x0f}" if ws else ""))
    lines.append(f"   age {_hms(now - st.created)}, expires in {_hms(st.expires - now)}, "
                 f"{st.packets[0]}:{st.packets[1]} pkts, {st.bytes[0]}:{st.bytes[1]} bytes, "
                 f"rule {st.rule}" + (", pflow" if st.pflow else ""))
    return "\n".join(lines) + "\n"


# --- connection scripts: generators, one step per tick ------------------------------

def _exchange(sim, st, rng, up: int, down: int) -> None:
    """A request of `up` bytes and a response of `down`, in MSS segments, acked."""
    for side, size in ((0, up), (1, down)):
        segs = max(1, -(-size // MSS))
        for i in range(segs):
            sim.packet(st, side, "A", min(MSS, size - i * MSS) if size else 0)
        for _ in range(segs // 2 + 1):
            sim.packet(st, 1 - side, "A", 0)


def _tcp(sim, st, rng, life: int, down: int):
    sim.packet(st, 0, "S", 0)
    if rng.random() < 0.05:  # nobody answers: two retransmits, then pf gives up
        for wait in (1, 2):
            for _ in range(wait):
                yield
            sim.packet(st, 0, "S", 0)
        return
    for _ in range(rng.choice((0, 0, 0, 1, 2))):
        yield
    sim.packet(st, 1, "SA", 0)
    sim.packet(st, 0, "A", 0)
    for _ in range(life):
        if rng.random() < 0.6:
            _exchange(sim, st, rng, rng.randint(80, 900), rng.randint(0, down))
        yield
    end = rng.random()
    if end < 0.1:  # the server resets
        sim.packet(st, 1, "RA", 0)
    elif end < 0.2:  # half-close: the server keeps sending for a while
        sim.packet(st, 0, "FA", 0)
        sim.packet(st, 1, "A", 0)
        for _ in range(rng.randint(1, 8)):
            yield
            _exchange(sim, st, rng, 0, rng.randint(1000, down + 1000))
        sim.packet(st, 1, "FA", 0)
        sim.packet(st, 0, "A", 0)
    else:
        sim.packet(st, 0, "FA", 0)
        sim.packet(st, 1, "FA", 0)
        sim.packet(st, 0, "A", 0)


def _udp(sim, st, rng, life: int, down: int):
    sim.packet(st, 0, "", rng.randint(30, 60))
    if down == 0:  # a DNS query and its answer
        sim.packet(st, 1, "", rng.randint(60, 400))
        return
    for _ in range(life):
        yield
        if rng.random() < 0.7:
            for _ in range(rng.randint(1, 6)):
                sim.packet(st, 0, "", rng.randint(40, 1200))
            for _ in range(rng.randint(1, 12)):
                sim.packet(st, 1, "", rng.randint(40, min(1350, down)))


def _ping(sim, st, rng, life: int, down: int):
    for i in range(max(1, life)):  # ping(8)'s 56 data bytes, once a second
        if i:
            yield
        sim.packet(st, 0, "", 56)
        if rng.random() < 0.95:
            sim.packet(st, 1, "", 56)


def _long_lived(sim, st, rng, life: int, down: int):
    """An ssh session that was open before the run and outlives it."""
    for peer, isn, win in zip(st.peers, (3466395587, 1285282327), (8388480, 65792)):
        peer.level, peer.isn, peer.sent, peer.window = ESTABLISHED, isn, 1, win
    st.packets[:], st.bytes[:] = [48211, 60117], [4201183, 79532211]
    st.last, st.klass = sim.now - 2, "tcp.established"
    while True:
        if rng.random() < 0.5:
            _exchange(sim, st, rng, rng.randint(36, 200), rng.randint(36, 3000))
        yield


_LAN = [f"10.0.0.{i}" for i in range(2, 60)]
_LAN6 = [f"2001:db8:1::{i:x}" for i in range(0x10, 0x40)]
_NET = ["93.184.216.34", "198.51.100.7", "198.51.100.23", "192.0.2.80", "198.51.100.200"]
_NET6 = ["2001:db8:ffff::1", "2001:db8:beef::443", "2001:db8:ffff:0:1::5"]
_RESOLVERS = ["9.9.9.9", "1.1.1.1"]


def _client_port(rng, proto: int) -> int:
    return rng.randint(1, 65535) if proto in (1, 58) else rng.randint(32768, 60999)


# Endpoints of a new state: (wire, stack), each ((src, port), (dst, port)) initiator first.
# ICMP "ports" are the echo id and the type (8, or 128 for ICMPv6).
def _nat_to(rng, proto, service):
    stack = ((rng.choice(_LAN), _client_port(rng, proto)), (rng.choice(_NET), service))
    return ((NAT_ADDR, rng.randint(50001, 65535)), stack[1]), stack


def _self(rng, proto, service):  # the firewall's own resolver asking upstream
    keys = ((NAT_ADDR, _client_port(rng, proto)), (rng.choice(_RESOLVERS), service))
    return keys, keys


def _inet6_out(rng, proto, service):
    keys = ((rng.choice(_LAN6), _client_port(rng, proto)), (rng.choice(_NET6), service))
    return keys, keys


def _rdr_to(rng, proto, service):
    client = (rng.choice(_NET), _client_port(rng, proto))
    return (client, (NAT_ADDR, service)), (client, ("10.0.0.10", 8080))


def _inet6_in(rng, proto, service):
    keys = ((rng.choice(_NET6), _client_port(rng, proto)), (_LAN6[0], service))
    return keys, keys


def _ssh_in(rng, proto, service):
    keys = (("198.51.100.23", 51234), (NAT_ADDR, service))
    return keys, keys


# kind -> weight, proto, af, direction, rule, pflow, script, life (max s), down (max B),
#         endpoints, service ports.  Rule 5 (DNS) has no `pflow`: a share not exported.
KINDS = {
    "web nat-to": (30, 6, "inet", "out", 4, True, _tcp, 40, 60000, _nat_to, (443, 443, 80)),
    "web inet6": (14, 6, "inet6", "out", 3, True, _tcp, 40, 60000, _inet6_out, (443, 80)),
    "www rdr-to": (10, 6, "inet", "in", 7, True, _tcp, 15, 20000, _rdr_to, (80,)),
    "www inet6 in": (5, 6, "inet6", "in", 8, True, _tcp, 15, 20000, _inet6_in, (443,)),
    "dns": (16, 17, "inet", "out", 5, False, _udp, 0, 0, _self, (53,)),
    "quic nat-to": (8, 17, "inet", "out", 4, True, _udp, 30, 1350, _nat_to, (443, 123)),
    "quic inet6": (5, 17, "inet6", "out", 3, True, _udp, 30, 1350, _inet6_out, (443,)),
    "ping nat-to": (7, 1, "inet", "out", 9, True, _ping, 8, 0, _nat_to, (8,)),
    "ping6": (5, 58, "inet6", "out", 3, True, _ping, 8, 0, _inet6_out, (128,)),
}
LONG_LIVED = ("ssh", 6, "inet", "in", 2, True, _long_lived, 0, 0, _ssh_in, (22,))


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
        self.scripts: dict[int, object] = {}
        self.gone: dict[int, SimState] = {}  # purged or flushed, `removed` set
        self.unflagged: set[int] = set()  # ids of states without `pflow`
        self.counters = dict(searches=0, inserts=0, removals=0)
        self._kinds = list(KINDS)
        self._weights = [k[0] for k in KINDS.values()]
        self.long_lived = self._open(*LONG_LIVED, created=start - 93784, ifname="em0")

    # the kernel side
    def packet(self, st: SimState, side: int, flags: str, payload: int) -> None:
        _PACKET[st.proto](st, side, flags, payload)
        st.packets[side] += 1
        st.bytes[side] += _HEADERS[st.proto, st.af] + payload + (8 if "S" in flags else 0)
        st.last = self.now
        self.counters["searches"] += 1

    def _open(self, kind, proto, af, direction, rule, pflow, script, life, down,
              endpoints, services, created=None, ifname="all") -> SimState:
        rng = random.Random(f"{self.seed}/{self.next_id & MASK32}")
        wire, stack = endpoints(rng, proto, rng.choice(services))
        norm = lambda e: (_ntop(af, e[0]), e[1])
        st = SimState(self.next_id, proto, af, direction, ifname,
                      tuple(map(norm, wire)), tuple(map(norm, stack)), rule, pflow,
                      self.now if created is None else created)
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

    # what pfctl prints
    def states_text(self) -> str:
        """`pfctl -ss -vv`, in pf's list order (creation order)."""
        return "".join(print_state(st, self.now)
                       + f"   id: {st.id:016x} creatorid: {self.hostid:08x}\n"
                       for st in self.states.values())

    def timeouts_text(self) -> str:
        """`pfctl -st` with pf's defaults."""
        return "".join(f"{name:<20} {DEFAULTS[name]:>10d}"
                       + (" states" if name.startswith("adaptive") else "s") + "\n"
                       for name in ST_ORDER)

    def info_text(self) -> str:
        """`pfctl -si -v` (print_status), pf enabled since boot."""
        run = self.now - self.boot
        days, rest = divmod(run, 86400)
        status = f"Status: Enabled for {days} days {_hms(rest)}"
        chk = hashlib.md5(f"simpf ruleset {self.seed}".encode()).hexdigest()
        half = sum(1 for s in self.states.values()
                   if s.proto == 6 and min(s.peers[0].level, s.peers[1].level) < ESTABLISHED)
        out = [f"{status:<44}{'Debug: err':>15}", "", f"Hostid:   0x{self.hostid:08x}",
               f"Checksum: 0x{chk}", "", f"{'State Table':<27} {'Total':>14} {'Rate':>16}",
               f"  {'current entries':<25} {len(self.states):>14} {'':>14}",
               f"  {'half-open tcp':<25} {half:>14} {'':>14}"]
        for name, value in self.counters.items():
            out.append(f"  {name:<25} {value:>14} {value / max(run, 1):>14.1f}/s")
        return "\n".join(out) + "\n"


def write_record(folder, seed: int = 1, rate: float = 2.0, start: int = 1_700_000_000,
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
