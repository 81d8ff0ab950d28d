"""One pfctl state record -> State: the object, and how the fast and the
strict grammar's groups become one.

Strategy: build_into() is the bulk parser's inner loop. It takes tuples laid
out as grammar.FAST_FIELDS (grammar.FastRecord, straight from findall() or
match.groups()) and does the least Python per state: ints and hosts now, the
tcp and flags dicts on first read, repeated words shared through the memo
dicts of pf/tokens.py (a word not there yet is learnt and the record built
again). build_strict() maps a grammar.RECORD match (old formats,
FreeBSD/pfSense extra lines, oddities) onto the same tuple, so both paths
build alike. (Some 460 lines: State, its typed attributes and the builders that
fill them in one pass are one concern; the hot loop is inlined on purpose.)
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any, NamedTuple

from pflowbsd.pf import grammar as g
from pflowbsd.pf import tokens as t_
from pflowbsd.pf.grammar import FastRecord


class Host(NamedTuple):
    addr: str
    port: int
    rdomain: int = 0


# State attributes in to_json() order; tcp and flags are built on first read.
FIELDS = ("ifname", "proto", "proto_name", "af", "stack_af", "direction",
          "wire_src", "wire_dst", "stack_src", "stack_dst", "nat",
          "src_state", "dst_state", "state_text", "tcp", "age_s",
          "expires_in_s", "packets", "bytes", "rule", "anchor", "id",
          "creatorid", "flags", "pflow", "route_addr", "route",
          "rtableid", "orig_ifname", "line", "nlines")


class State:
    # _tcp: the window line's text until tcp is read; _flags: the ", token"
    # text after the counters until flags is read.
    __slots__ = tuple(f for f in FIELDS if f not in ("tcp", "flags")) + ("_tcp", "_flags")

    ifname: str
    proto: int                  # 0-255 (netdb.proto_number)
    proto_name: str | None      # None when pfctl printed the number
    af: str                     # "inet" | "inet6", on the wire
    stack_af: str               # on the stack side (differs under af-to)
    direction: str              # "in" | "out"
    wire_src: Host
    wire_dst: Host
    stack_src: Host
    stack_dst: Host
    nat: bool
    src_state: int | None
    dst_state: int | None
    state_text: str
    age_s: int | None
    expires_in_s: int | None
    packets: tuple[int, int]
    bytes: tuple[int, int]
    rule: int | None
    anchor: int | None
    id: str | None
    creatorid: str | None
    pflow: bool
    route_addr: str | None
    route: t_.Route | None
    rtableid: int | None
    orig_ifname: str | None
    line: int
    nlines: int
    _tcp: str | t_.Tcp | None
    _flags: str | t_.Flags

    @property
    def key(self) -> tuple[str | None, str | None]:
        return (self.creatorid, self.id)

    @property
    def afto(self) -> bool:
        return self.af != self.stack_af

    @property
    def tcp(self) -> t_.Tcp | None:
        t = self._tcp
        if t.__class__ is str:
            t = self._tcp = t_.parse_seq(t, self.direction == "in")
        return t  # type: ignore[return-value]  # no longer a str

    @property
    def flags(self) -> t_.Flags:
        f = self._flags
        if f.__class__ is str:
            f = self._flags = t_.parse_opts(f)
        return f  # type: ignore[return-value]  # no longer a str

    def to_json(self) -> dict[str, Any]:
        d = {s: getattr(self, s) for s in FIELDS}
        for k in ("wire_src", "wire_dst", "stack_src", "stack_dst"):
            d[k] = {"addr": d[k].addr, "port": d[k].port}
        d["floating"] = self.ifname == "all"
        d["afto"] = self.afto
        d["rdomain"] = {"wire": self.wire_src.rdomain, "stack": self.stack_src.rdomain}
        d["packets"] = list(self.packets)
        d["bytes"] = list(self.bytes)
        names = self._state_names()
        d["src_state"] = {"value": self.src_state, "name": names[0]}
        d["dst_state"] = {"value": self.dst_state, "name": names[1]}
        d["icmp"] = ({"id": self.wire_src.port, "type": self.wire_dst.port,
                      "stack_id": self.stack_src.port}
                     if self.proto in (1, 58) else None)
        del d["pflow"]
        return d

    def _state_names(self) -> tuple[str, str] | tuple[None, None]:
        """(src, dst) names, as the printer's table gives them, else None."""
        t = self.state_text
        if t.startswith(("<", "PROXY")) or t[:1].isdigit():
            return None, None
        left, _, right = t.partition(":")
        return (right, left) if self.direction == "in" else (left, right)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, State) and all(
            getattr(self, s) == getattr(other, s) for s in FIELDS)

    def __repr__(self) -> str:
        return f"<State {self.line}: {summary(self)}>"


_new_host: Callable[[type[Host], tuple[str, int, int]], Host] = tuple.__new__

# "%.2u" hours -> seconds, any digit count; "%.2u:%.2u" minutes:seconds -> seconds
# (pfctl prints both below 60; the 3600 it prints are one compact table).
_HOURS: t_.Memo[str, int] = t_.Memo(
    lambda h: int(h) * 3600, {f"{h:02d}": h * 3600 for h in range(100)})
_MMSS: t_.Memo[str, int] = t_.Memo(
    lambda ms: int(ms[:2]) * 60 + int(ms[3:]),
    {f"{m:02d}:{s:02d}": m * 60 + s for m in range(60) for s in range(60)})


def _rd_host(text: str, port: str | None) -> tuple[str, int, int]:
    """Host fields of "(rdomain) addr" (OpenBSD print_host() with rdomain != 0)."""
    rd, _, addr = text[1:].partition(") ")
    return addr, int(port) if port else 0, int(rd)


HostParts = tuple[str, str | None, str | None]
_NO_HOST: tuple[None, None, None] = (None,) * 3


def _host_parts(text: str) -> HostParts:
    """print_host() text -> ("(rdomain) addr", ":port", "[port]") as the fast
    regex splits it; ValueError if pfctl would not print it."""
    rd = ""
    if text[0] == "(":
        rd, _, text = text.partition(") ")
        rd += ") "
    if text[-1] == "]":
        addr, _, port6 = text[:-1].partition("[")
        if ":" not in addr:
            raise ValueError(f"bad host {text!r}")
        return rd + addr, None, port6
    colons = text.count(":")
    port: str | None
    addr, port = text.split(":") if colons == 1 else (text, None)
    if colons < 2 and (addr.count(".") != 3 or not addr.replace(".", "").isdigit()):
        raise ValueError(f"bad host {text!r}")
    return rd + addr, port, None


def _maybe_host_parts(text: str) -> HostParts | tuple[None, None, None]:
    """_host_parts() of a host the line may lack ("")."""
    return _host_parts(text) if text else _NO_HOST


def build_into(records: Iterable[FastRecord], line: int, base: int, out: list[State]) -> int:
    """Append to out a State per grammar.FAST_FIELDS tuple (absent groups "" or None);
    return the line number after them. Each record has base lines besides its tcp and
    origif ones. The C builder (_fastbuild, when it imported) takes the records it can
    take whole and hands each other one to _build_py(), the reference."""
    if _fastbuild is None:
        return _build_py(records, line, base, out)
    recs = records if isinstance(records, list) else list(records)
    i, n = 0, len(recs)
    while True:
        i, line = _fastbuild.build(recs, i, line, base, out)
        if i >= n:
            return line
        line = _build_py((recs[i],), line, base, out)
        i += 1


def _build_py(records: Iterable[FastRecord], line: int, base: int, out: list[State]) -> int:
    """build_into() in Python. The hot loop: inlined on purpose, and its words looked
    up in the memos' plain caches; a word missing there is learnt (_learn) and the
    record built again."""
    todo: Iterator[FastRecord] = iter(records)
    failed, tries = None, 0
    while True:
        try:
            return _build(todo, line, base, out.append)
        except _Missing as exc:
            rec, line = exc.args
            tries = tries + 1 if rec is failed else 1
            if tries > 2:   # learning may evict one word of the record: twice at most
                raise KeyError(rec) from exc
            failed = rec
            _learn(rec)
            todo = chain((rec,), todo)


class _Missing(Exception):
    """A record's word is not in a memo's cache yet: (record, its line)."""


def _learn(rec: FastRecord) -> None:
    """Put the record's words into the caches _build() reads (ValueError if
    pfctl would not print them)."""
    (ifname, proto_t, _La, _Lp4, _Lp6, _LXa, _LXp4, _LXp6, _gw1, _arrow, _Ra, _Rp4, _Rp6,
     _RXa, _RXp4, _RXp6, _gw2, state_text, _seq, age_h, age_ms, exp_h, exp_ms, _p0, _p1,
     _b0, _b1, anchor, rule, opts, _id, creatorid, _idx, _origif) = rec
    t_.SHARED[ifname]
    t_.PROTOCOLS[proto_t][2][state_text]
    if age_h:
        _HOURS[age_h], _HOURS[exp_h], _MMSS[age_ms], _MMSS[exp_ms]
    if anchor:
        t_.NUMBER[anchor]
    if rule:
        t_.NUMBER[rule]
    if opts:
        t_.PFLOW[opts]
    if creatorid:
        t_.SHARED[creatorid]


def _build(records: Iterable[FastRecord], line: int, base: int,
           append: Callable[[State], object]) -> int:
    new_host, protocols, pflow_of = _new_host, t_.PROTOCOLS.cache, t_.PFLOW.cache
    hours, mmss, shared, number = _HOURS.cache, _MMSS.cache, t_.SHARED.cache, t_.NUMBER.cache
    for rec in records:
        (ifname, proto_t, La, Lp4, Lp6, LXa, LXp4, LXp6, gw1, arrow, Ra, Rp4, Rp6,
         RXa, RXp4, RXp6, gw2, state_text, seq, age_h, age_ms, exp_h, exp_ms, p0, p1,
         b0, b1, anchor, rule, opts, id_, creatorid, idx, origif) = rec
        try:
            ifname = shared[ifname]
            proto, proto_name, levels = protocols[proto_t]
            lv, rv, state_text = levels.cache[state_text]
            if age_h:
                age = hours[age_h] + mmss[age_ms]
                expires = hours[exp_h] + mmss[exp_ms]
            anchor_nr = number[anchor] if anchor else None
            rule_nr = number[rule] if rule else None
            pflow, opts = pflow_of[opts] if opts else (False, "")
            creatorid = shared[creatorid] if creatorid else None
        except KeyError:
            raise _Missing(rec, line) from None
        st = State()
        st.ifname = ifname
        st.proto, st.proto_name, st.state_text = proto, proto_name, state_text
        p = Lp4 or Lp6
        left = new_host(Host, (La, int(p) if p else 0, 0) if La[0] != "(" else _rd_host(La, p))
        p = Rp4 or Rp6
        right = new_host(Host, (Ra, int(p) if p else 0, 0) if Ra[0] != "(" else _rd_host(Ra, p))
        l6 = ":" in La
        if LXa:
            p = LXp4 or LXp6
            left_x = new_host(Host, (LXa, int(p) if p else 0, 0) if LXa[0] != "("
                              else _rd_host(LXa, p))
            lx6 = ":" in LXa
            nat = True
        else:
            left_x, lx6 = left, l6
            nat = False
        if RXa:
            p = RXp4 or RXp6
            right_x = new_host(Host, (RXa, int(p) if p else 0, 0) if RXa[0] != "("
                               else _rd_host(RXa, p))
            nat = True
        else:
            right_x = right
        st.nat = nat
        if arrow:   # "<": printed "<-"
            st.direction = "in"
            st.stack_dst, st.wire_dst, st.stack_src, st.wire_src = left, left_x, right, right_x
            st.af = "inet6" if ":" in right_x[0] else "inet"
            st.stack_af = "inet6" if ":" in Ra else "inet"
            st.src_state, st.dst_state = rv, lv
        elif l6 is not lx6:     # af-to: inbound, printed "->"
            st.direction = "in"
            st.stack_src, st.wire_src, st.stack_dst, st.wire_dst = left, left_x, right, right_x
            st.af = "inet6" if lx6 else "inet"
            st.stack_af = "inet6" if l6 else "inet"
            st.src_state, st.dst_state = rv, lv
        else:
            st.direction = "out"
            st.wire_src, st.stack_src, st.wire_dst, st.stack_dst = left, left_x, right, right_x
            st.af = st.stack_af = "inet6" if l6 else "inet"
            st.src_state, st.dst_state = lv, rv
        nl = base
        if seq:
            st._tcp = seq
            nl += 1
        else:
            st._tcp = None
        if age_h:
            st.age_s = age
            st.expires_in_s = expires
            st.packets = (int(p0), int(p1))
            st.bytes = (int(b0), int(b1))
        else:
            st.age_s = st.expires_in_s = None
            st.packets = st.bytes = (0, 0)
        st.anchor = anchor_nr
        st.rule = rule_nr
        st.pflow = pflow
        st._flags = opts
        st.id = id_ or None
        st.creatorid = creatorid
        if origif:
            st.orig_ifname = origif
            nl += 1
        else:
            st.orig_ifname = ifname if id_ else None
        if idx:
            _route(st, gw1 or gw2 or None, idx, None)
        else:
            st.route_addr = gw1 or gw2 or None
            st.route = st.rtableid = None
        st.line = line
        st.nlines = nl
        if max(left[1], right[1], left_x[1], right_x[1]) > 65535 or max(
                *st.packets, *st.bytes) > _MAX64 or len(age_h) > 12 or len(exp_h) > 12:
            raise ValueError("port or counter out of range")
        line += nl
        append(st)
    return line


_MAX64 = (1 << 64) - 1


def check_addresses(st: State) -> State:
    """The state, if inet_pton() takes its addresses as flows.pack_entry() will; else
    ValueError.  (The tracker's path, per new or changed state: the bulk parser's
    regexes only shape them.)"""
    for af, h in ((st.af, st.wire_src), (st.af, st.wire_dst), (st.stack_af, st.stack_src),
                  (st.stack_af, st.stack_dst)):
        try:  # each side's two hosts of its one family
            socket.inet_pton(socket.AF_INET6 if af == "inet6" else socket.AF_INET, h.addr)
        except OSError:
            raise ValueError(f"bad address {h.addr[:60]!r}") from None
    return st


def _route(st: State, route_addr: str | None, idx: str | None, pfsgw: str | None) -> None:
    """route, rtableid, route_addr from the id line's extras and pfSense's line."""
    route: t_.Route | None = None
    rtableid: int | None = None
    if idx:
        route, rtableid, rt_addr = t_.parse_id_extras(idx)
        route_addr = route_addr or rt_addr
    if pfsgw and pfsgw not in t_.ZERO_ADDRS and route is None:
        route = {"kind": "gateway", "rt": 1, "addr": pfsgw, "ifname": None}
    st.route_addr, st.route, st.rtableid = route_addr, route, rtableid


def build_strict(m: re.Match[str], line: int) -> State:
    """A State from a grammar.RECORD match (slow path); ValueError if the
    record holds what pfctl does not print."""
    def host(p: str) -> str:
        """The print_host() text of group set p, "" where the line has none."""
        rd, h = m[p + "rd"], m[p + "h"]
        if not h:
            return ""
        return f"({rd}) {h}" if rd else h

    if m["Mh"]:     # old "lan -> gwy -> ext" == "gwy (lan) -> ext"; "lan (gwy) <- ext"
        if m["arrow"] != m["arrow2"]:
            raise ValueError("mixed arrows in a three-host state line")
        left, left_x = (host("M"), host("L")) if m["arrow"] == "->" else (host("L"), host("M"))
    else:
        left, left_x = host("L"), host("LX")
    seq = None
    if m["sseq"] is not None:
        s0 = m.start("sseq") - 1
        seq = m.string[s0:m.string.index("\n", s0)]
    anchor: str | None = None
    rule: str | None = None
    opts = ""
    if m["tail"]:
        toks = m["tail"][2:].split(g.OPT_SEP)
        if toks[0].startswith("anchor "):
            anchor = str(int(toks.pop(0)[7:]))
        if toks and toks[0].startswith("rule "):
            rule = str(int(toks.pop(0)[5:]))
        opts = g.OPT_SEP + g.OPT_SEP.join(toks) if toks else ""
    age_h, _, age_ms = (m["age"] or "").partition(":")
    exp_h, _, exp_ms = (m["exp"] or "").partition(":")
    counters = m.group("p0", "p1", "b0", "b1") if m["age"] else ("", "", "", "")
    if max(map(len, counters)) > 20 or len(age_h) > 12 or len(exp_h) > 12:
        raise ValueError("port or counter out of range")  # above %llu: not pfctl's
    gr: FastRecord = (
        m["ifname"], m["proto"], *_host_parts(left), *_maybe_host_parts(left_x), m["gw1"],
        "<" if m["arrow"] == "<-" else "",
        *_host_parts(host("R")), *_maybe_host_parts(host("RX")), m["gw2"],
        m["state"], seq, age_h, age_ms, exp_h, exp_ms,
        *counters, anchor, rule, opts,
        *m.group("id", "creatorid", "idx", "origif"))
    out: list[State] = []
    build_into((gr,), line, 0, out)
    st = out[0]
    st.nlines = m.string.count("\n", m.start(), m.end())
    if m["pfsgw"]:
        _route(st, st.route_addr, m["idx"], m["pfsgw"])
    return st


def summary(st: State) -> str:
    """One line per state for `pflowbsd states`: who, what, how much."""
    def host(h: Host, alt: Host) -> str:
        s = _fmt_host(h)
        return s if alt == h else f"{s} ({_fmt_host(alt)})"
    src = host(st.wire_src, st.stack_src)
    dst = host(st.wire_dst, st.stack_dst)
    out = [st.ifname, st.proto_name or str(st.proto), st.direction,
           f"{src} -> {dst}", st.state_text]
    if st.age_s is not None:
        out.append(f"age {st.age_s}s expires {st.expires_in_s}s"
                   f" pkts {st.packets[0]}:{st.packets[1]}"
                   f" bytes {st.bytes[0]}:{st.bytes[1]}")
    if st.rule is not None:
        out.append(f"rule {st.rule}")
    if st.id is not None:
        out.append(f"id {st.creatorid}/{st.id}")
    if st.pflow:
        out.append("pflow")
    return " ".join(out)


def _fmt_host(h: Host) -> str:
    rd = f"({h.rdomain}) " if h.rdomain else ""
    if not h.port:
        return rd + h.addr
    return f"{rd}{h.addr}[{h.port}]" if ":" in h.addr else f"{rd}{h.addr}:{h.port}"


try:  # the C builder of build_into()'s common case (pf/_fastbuild.c), if it built
    if os.environ.get("PFLOWBSD_PURE") == "1":
        raise ImportError("PFLOWBSD_PURE=1")
    from pflowbsd.pf import _fastbuild
    _fastbuild.setup(State, Host, t_.SHARED.cache, t_.PROTOCOLS.cache, _HOURS.cache,
                     _MMSS.cache, t_.NUMBER.cache, t_.PFLOW.cache)
except (ImportError, TypeError):
    _fastbuild = None  # type: ignore[assignment]
