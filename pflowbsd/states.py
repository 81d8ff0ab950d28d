"""Parse `pfctl -ss [-v [-v]]` text into states, exactly and fast.

Strategy: grammar.RECORD is one multi-line regex per state, run with
finditer() over the whole text. A record is accepted only when it is complete
for the table's verbosity (-v tables need the age line and, for tcp, the
window line; -vv tables need the id line) and no stray continuation line
follows it. Anything between accepted records is reported once per record
(a state line and its continuation lines) as a ParseError, never raised, and
parsing goes on at the next state line. scan() is the tracker's fast path: the
key, state line and counters of every -vv record, no State objects.

Input is str: decode pfctl's bytes with errors='replace' (or
'surrogateescape'; unparseable lines are then echoed with backslash escapes).
"""

import gc
import json
import re
from typing import NamedTuple

from . import grammar as g
from . import statetokens as t_


class Host(NamedTuple):
    addr: str
    port: int
    rdomain: int = 0


class ParseError(NamedTuple):
    line: int
    text: str
    reason: str


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

    @property
    def key(self):
        return (self.creatorid, self.id)

    @property
    def afto(self):
        return self.af != self.stack_af

    @property
    def tcp(self):
        t = self._tcp
        if t.__class__ is str:
            t = self._tcp = t_.parse_seq(t, self.direction == "in")
        return t

    @property
    def flags(self):
        f = self._flags
        if f.__class__ is str:
            f = self._flags = t_.parse_opts(f)
        return f

    def to_json(self):
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

    def _state_names(self):
        """(src, dst) names, as the printer's table gives them, else None."""
        t = self.state_text
        if t.startswith(("<", "PROXY")) or t[:1].isdigit():
            return None, None
        left, _, right = t.partition(":")
        return (right, left) if self.direction == "in" else (left, right)

    def __eq__(self, other):
        return isinstance(other, State) and all(
            getattr(self, s) == getattr(other, s) for s in FIELDS)

    def __repr__(self):
        return f"<State {self.line}: {summary(self)}>"


_new = object.__new__
_new_host = tuple.__new__

# "%.2u" hours -> seconds, any digit count; "%.2u:%.2u" minutes:seconds -> seconds.
_HOURS = t_.Memo(lambda h: int(h) * 3600)
_HOURS.update({f"{h:02d}": h * 3600 for h in range(100)})
_MMSS = {f"{m:02d}:{s:02d}": m * 60 + s for m in range(100) for s in range(100)}


def _rd_host(text, port):
    """Host fields of "(rdomain) addr" (OpenBSD print_host() with rdomain != 0)."""
    rd, _, addr = text[1:].partition(") ")
    return addr, int(port) if port else 0, int(rd)


_NO_HOST = (None,) * 3


def _host_parts(text):
    """print_host() text -> ("(rdomain) addr", ":port", "[port]") as the fast
    regex splits it; ValueError if pfctl would not print it."""
    if not text:
        return _NO_HOST
    rd = ""
    if text[0] == "(":
        rd, _, text = text.partition(") ")
        rd += ") "
    if text[-1] == "]":
        addr, _, port = text[:-1].partition("[")
        if ":" not in addr:
            raise ValueError(f"bad host {text!r}")
        return rd + addr, None, port
    colons = text.count(":")
    addr, port = text.split(":") if colons == 1 else (text, None)
    if colons < 2 and (addr.count(".") != 3 or not addr.replace(".", "").isdigit()):
        raise ValueError(f"bad host {text!r}")
    return rd + addr, port, None


def _build_into(records, line, base, append):
    """append() a State per grammar.FAST_FIELDS tuple (absent groups "" or
    None); return the line number after them. Each record has base lines
    besides its tcp and origif ones. The hot loop: inlined on purpose."""
    new, new_host, protocols, pflow_of = _new, _new_host, t_.PROTOCOLS, t_.PFLOW
    hours, mmss, shared, number = _HOURS, _MMSS, t_.SHARED, t_.NUMBER
    for (ifname, proto_t, La, Lp4, Lp6, LXa, LXp4, LXp6, gw1, arrow, Ra, Rp4, Rp6,
         RXa, RXp4, RXp6, gw2, state_text, seq, age_h, age_ms, exp_h, exp_ms, p0, p1,
         b0, b1, anchor, rule, opts, id_, creatorid, idx, origif) in records:
        st = State()
        st.ifname = ifname = shared[ifname]
        st.proto, st.proto_name, levels = protocols[proto_t]
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
        lv, rv, state_text = levels[state_text]
        if arrow == "<-":
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
        st.state_text = state_text
        nl = base
        if seq:
            st._tcp = seq
            nl += 1
        else:
            st._tcp = None
        if age_h:
            st.age_s = hours[age_h] + mmss[age_ms]
            st.expires_in_s = hours[exp_h] + mmss[exp_ms]
            st.packets = (int(p0), int(p1))
            st.bytes = (int(b0), int(b1))
        else:
            st.age_s = st.expires_in_s = None
            st.packets = st.bytes = (0, 0)
        st.anchor = number[anchor] if anchor else None
        st.rule = number[rule] if rule else None
        if opts:
            st.pflow = pflow_of[opts]
            st._flags = opts
        else:
            st.pflow = False
            st._flags = ""
        st.id = id_ or None
        st.creatorid = shared[creatorid] if creatorid else None
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
        line += nl
        append(st)
    return line


def _route(st, route_addr, idx, pfsgw):
    """route, rtableid, route_addr from the id line's extras and pfSense's line."""
    route = rtableid = None
    if idx:
        route, rtableid, rt_addr = t_.parse_id_extras(idx)
        route_addr = route_addr or rt_addr
    if pfsgw and pfsgw not in t_.ZERO_ADDRS and route is None:
        route = {"kind": "gateway", "rt": 1, "addr": pfsgw, "ifname": None}
    st.route_addr, st.route, st.rtableid = route_addr, route, rtableid


def _build_strict(m, line):
    """A State from a grammar.RECORD match (slow path); ValueError if the
    record holds what pfctl does not print."""
    def host(p):
        rd, h = m[p + "rd"], m[p + "h"]
        return h and (f"({rd}) {h}" if rd else h)
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
    anchor = rule = None
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
    gr = (m["ifname"], m["proto"], *_host_parts(left), *_host_parts(left_x), m["gw1"],
          m["arrow"], *_host_parts(host("R")), *_host_parts(host("RX")), m["gw2"], m["state"], seq, age_h, age_ms, exp_h, exp_ms,
          *m.group("p0", "p1", "b0", "b1"), anchor, rule, opts,
          *m.group("id", "creatorid", "idx", "origif"))
    out = []
    _build_into((gr,), line, 0, out.append)
    st = out[0]
    st.nlines = m.string.count("\n", m.start(), m.end())
    if m["pfsgw"]:
        _route(st, st.route_addr, m["idx"], m["pfsgw"])
    return st


_CONT_KINDS = (("   [", "tcp window line"), ("   age ", "age/counters line"),
               ("   id: ", "id line"), ("   origif: ", "origif line"))


class Table:
    __slots__ = ("states", "errors", "lost", "truncated")

    def __init__(self, states=None, errors=None, lost=0, truncated=False):
        self.states = states if states is not None else []
        self.errors = errors if errors is not None else []
        self.lost = lost
        self.truncated = truncated

    def __repr__(self):
        return (f"<Table {len(self.states)} states, {len(self.errors)} errors,"
                f" lost={self.lost} truncated={self.truncated}>")


class Scan:
    __slots__ = ("records", "errors", "truncated")

    def __init__(self, records, errors, truncated):
        self.records = records
        self.errors = errors
        self.truncated = truncated


def _line_at(text, pos):
    end = text.find("\n", pos)
    return text[pos:end if end >= 0 else len(text)]


def _skip_continuations(text, pos):
    """Offset of the next state line at or after pos (or len(text))."""
    while text.startswith("   ", pos):
        nl = text.find("\n", pos)
        if nl < 0:
            return len(text)
        pos = nl + 1
    return pos


class _Errors:
    """Collects the ParseErrors of one table; knows how to explain a gap."""

    def __init__(self, text, cut):
        self.text, self.cut = text, cut
        self.errors, self.lost, self.truncated = [], 0, cut

    def gap(self, pos, end, line, head_reason):
        """Report text[pos:end] once per record; return the line number at end."""
        text = self.text
        while pos < end:
            nxt = _skip_continuations(text, pos if text.startswith("   ", pos)
                                      else text.find("\n", pos) + 1 or end)
            nxt = min(nxt, end)
            head = _line_at(text, pos)
            if text.startswith("   ", pos):
                reason = "continuation line outside a record"
            else:
                reason = head_reason(pos) or "not a pfctl state line"
            if nxt >= len(text) and (self.cut or reason.startswith("missing")):
                self.truncated = True
                reason = "truncated record: " + reason
            self.add(line, head, reason)
            line += text.count("\n", pos, nxt)
            pos = nxt
        return line

    def add(self, line, text, reason):
        self.errors.append(ParseError(line, text, reason))
        self.lost += 1


def parse_states(text: str) -> Table:
    was_enabled = gc.isenabled()
    gc.disable()    # only acyclic objects are made; collections only cost time
    try:
        return _parse_states(text)
    finally:
        if was_enabled:
            gc.enable()


# Per verbosity: the fast regex and the lines every record has besides its
# tcp and origif ones.
_FAST = {"ss": (g.FAST_RECORD["ss"], 1), "v": (g.FAST_RECORD["v"], 2),
         "vv": (g.FAST_RECORD["vv"], 3)}
# Where a chunk of the fast path may end: before a state line.
_RECORD_START = re.compile(r"\n(?! )")
_CHUNK = 1 << 14


def _parse_states(text):
    vv = "   id: " in text
    v = "   age " in text
    cut = bool(text) and not text.endswith("\n")
    if cut:
        text += "\n"
    rx, base = _FAST["vv" if vv else "v" if v else "ss"]
    if not cut:
        try:
            states = _parse_clean(text, rx, base)
        except ValueError:
            states = None
        if states is not None:
            return Table(states)
    return _parse_checked(text, cut, v, vv, rx, base)


def _parse_clean(text, rx, base):
    """The whole table as the fast regex reads it (findall(): no match
    objects), or None unless its records cover the text: records are whole
    lines, so they do iff their line counts add up to the text's. Line numbers
    assume so, and hold when it does. In chunks of ~75 records: findall()'s
    tuples stay in the CPU cache until built (a third faster than 1 MB)."""
    states = []
    append = states.append
    line = 1
    pos, n = 0, len(text)
    while pos < n:
        m = _RECORD_START.search(text, pos + _CHUNK)
        end = m.end() if m else n
        line = _build_into(rx.findall(text, pos, end), line, base, append)
        pos = end
    return states if line - 1 == text.count("\n") else None


def _parse_checked(text, cut, v, vv, rx, base):
    """Fast regex where it matches and the strict grammar (with errors) between."""
    errs = _Errors(text, cut)
    states = []
    append = states.append
    startswith = text.startswith
    pos = 0
    line = 1
    for m in rx.finditer(text):
        s = m.start()
        if s != pos:
            line = _parse_slow(text, pos, s, line, errs, states, v, vv)
        e = m.end()
        if startswith("   ", e):
            pos = _skip_continuations(text, e)
            line = _parse_slow(text, s, pos, line, errs, states, v, vv)
            continue
        try:
            line = _build_into((m.groups(),), line, base, append)
        except ValueError:
            line = _parse_slow(text, s, e, line, errs, states, v, vv)
        pos = e
    if pos != len(text):
        _parse_slow(text, pos, len(text), line, errs, states, v, vv)
    return Table(states, errs.errors, errs.lost, errs.truncated)


def _parse_slow(text, pos, end, line, errs, states, v, vv):
    """The strict grammar over text[pos:end]; returns the line number at end."""
    count = text.count
    for m in g.RECORD.finditer(text, pos, end):
        s = m.start()
        if s != pos:
            line = errs.gap(pos, s, line, _no_head_reason)
        e = m.end()
        nl = count("\n", s, e)
        if ((v and m["age"] is None) or (vv and m["id"] is None)
                or (v and m["sseq"] is None and m["proto"] == "tcp")
                or text.startswith("   ", e)):
            pos = _broken(errs, text, m, s, e, line, v, vv)
            line += count("\n", s, pos)
            continue
        try:
            states.append(_build_strict(m, line))
        except ValueError as exc:
            errs.add(line, _line_at(text, s), str(exc))
        pos = e
        line += nl
    if pos != end:
        line = errs.gap(pos, end, line, _no_head_reason)
    return line


def _no_head_reason(pos):
    return None


def _broken(errs, text, m, s, e, line, v, vv):
    """Report an incomplete record once; return the offset after its lines."""
    end = _skip_continuations(text, e)
    if text.startswith("   ", e):
        bad = _line_at(text, e)
        kind = next((k for p, k in _CONT_KINDS if bad.startswith(p)),
                    "unexpected continuation line")
        reason = f"malformed {kind}" if kind[0] != "u" else kind
        where, shown = line + text.count("\n", s, e), bad
    else:
        if v and m["sseq"] is None and m["proto"] == "tcp":
            what = "tcp window line"
        elif v and m["age"] is None:
            what = "age/counters line"
        else:
            what = "id line"
        reason = f"missing {what}"
        where, shown = line, _line_at(text, s)
    if end >= len(text) and (errs.cut or reason.startswith("missing")):
        errs.truncated = True
        reason = "truncated record: " + reason
    errs.add(where, shown, reason)
    return end


def scan(text: str) -> Scan:
    """Key, state line, counters text and span of every -vv record."""
    cut = bool(text) and not text.endswith("\n")
    if cut:
        text += "\n"
    was_enabled = gc.isenabled()
    gc.disable()    # 400k acyclic tuples: collections would only cost time
    try:
        records = [((m[4], m[3]), m[1], m[2], m.start(), m.end())
                   for m in g.SCAN_RECORD.finditer(text)]
    finally:
        if was_enabled:
            gc.enable()
    if sum(r[4] - r[3] for r in records) == len(text):
        return Scan(records, [], cut)
    errs = _Errors(text, cut)
    pos, line = 0, 1

    def head_reason(p):
        if g.STATE_LINE_RE.match(text, p):
            return "missing id line"
        return None
    for r in records:
        if r[3] != pos:
            line = errs.gap(pos, r[3], line, head_reason)
        line += text.count("\n", r[3], r[4])
        pos = r[4]
    if pos != len(text):
        errs.gap(pos, len(text), line, head_reason)
    return Scan(records, errs.errors, errs.truncated)


def parse_record(text: str, start: int, end: int, line: int = 0) -> State:
    """Full parse of text[start:end], one record as found by scan()."""
    m = _VV_RECORD.match(text, start, end)
    if m is not None and m.end() == end:
        out = []
        try:
            _build_into((m.groups(),), line, 3, out.append)
            return out[0]
        except ValueError:
            pass
    m = g.RECORD.match(text, start, end)
    if m is None or m.end() != end:
        raise ValueError(f"not one pfctl state record: {text[start:end]!r}")
    return _build_strict(m, line)


_VV_RECORD = g.FAST_RECORD["vv"]


def summary(st):
    def host(h, alt):
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


def _fmt_host(h):
    rd = f"({h.rdomain}) " if h.rdomain else ""
    if not h.port:
        return rd + h.addr
    return f"{rd}{h.addr}[{h.port}]" if ":" in h.addr else f"{rd}{h.addr}:{h.port}"


def _printable(s):
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def cmd_states(text: str, as_json: bool, out, err) -> int:
    table = parse_states(text)
    for st in table.states:
        if as_json:
            out.write(json.dumps(st.to_json(), separators=(",", ":")) + "\n")
        else:
            out.write(_printable(summary(st)) + "\n")
    for e in table.errors:
        err.write(f"pflowbsd: line {e.line}: {e.reason}: {_printable(e.text)}\n")
    return 1 if table.errors else 0
