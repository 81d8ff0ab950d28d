"""pfctl's text for the simulated pf: what OpenBSD `pfctl -ss -vv`, `-st` and `-si -v`
print, from a SimPf's table (sim/simpf.py), for the demo and for tests.

Strategy.  Transcriptions of the printers, not of a format: `print_state` is
print_state() of OpenBSD pf_print_state.c 1.69, `timeouts_text` pfctl_parser.c's
timeout listing, `info_text` print_status().  Pure: a SimPf and its clock in, text out;
the simulation calls these from SimPf.states_text() and friends.
"""

from __future__ import annotations

import hashlib

from pflowbsd.pf.netdb import proto_name
from pflowbsd.pf.timeouts import DEFAULTS, ESTABLISHED
from pflowbsd.sim.model import Peer, Sim, SimState

TCP_NAMES = ("CLOSED", "LISTEN", "SYN_SENT", "SYN_RCVD", "ESTABLISHED", "CLOSE_WAIT",
             "FIN_WAIT_1", "CLOSING", "LAST_ACK", "FIN_WAIT_2", "TIME_WAIT")
UDP_NAMES = ("NO_TRAFFIC", "SINGLE", "MULTIPLE")  # PFUDPS_NAMES
# `pfctl -st` order on OpenBSD (pf_timeouts[] in pfctl_parser.c); the rest are " states".
ST_ORDER = ("tcp.first", "tcp.opening", "tcp.established", "tcp.closing", "tcp.finwait",
            "tcp.closed", "tcp.tsdiff", "udp.first", "udp.single", "udp.multiple",
            "icmp.first", "icmp.error", "other.first", "other.single", "other.multiple",
            "frag", "interval", "adaptive.start", "adaptive.end", "src.track")


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
    return f"[{(p.isn + p.sent) & 0xFFFFFFFF} + {p.window}]"  # sequence numbers wrap at 2^32


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


def states_text(sim: Sim) -> str:
    """`pfctl -ss -vv`, in pf's list order (creation order)."""
    return "".join(print_state(st, sim.now)
                   + f"   id: {st.id:016x} creatorid: {sim.hostid:08x}\n"
                   for st in sim.states.values())


def timeouts_text() -> str:
    """`pfctl -st` with pf's defaults."""
    return "".join(f"{name:<20} {DEFAULTS[name]:>10d}"
                   + (" states" if name.startswith("adaptive") else "s") + "\n"
                   for name in ST_ORDER)


def info_text(sim: Sim) -> str:
    """`pfctl -si -v` (print_status), pf enabled since boot."""
    run = sim.now - sim.boot
    days, rest = divmod(run, 86400)
    status = f"Status: Enabled for {days} days {_hms(rest)}"
    chk = hashlib.md5(f"simpf ruleset {sim.seed}".encode()).hexdigest()
    half = sum(1 for s in sim.states.values()
               if s.proto == 6 and min(s.peers[0].level, s.peers[1].level) < ESTABLISHED)
    out = [f"{status:<44}{'Debug: err':>15}", "", f"Hostid:   0x{sim.hostid:08x}",
           f"Checksum: 0x{chk}", "", f"{'State Table':<27} {'Total':>14} {'Rate':>16}",
           f"  {'current entries':<25} {len(sim.states):>14} {'':>14}",
           f"  {'half-open tcp':<25} {half:>14} {'':>14}"]
    for name, value in sim.counters.items():
        out.append(f"  {name:<25} {value:>14} {value / max(run, 1):>14.1f}/s")
    return "\n".join(out) + "\n"
