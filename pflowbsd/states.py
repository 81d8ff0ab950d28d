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
from typing import NamedTuple

from . import grammar as g


class Host(NamedTuple):
    addr: str
    port: int
    rdomain: int = 0


class ParseError(NamedTuple):
    line: int
    text: str
    reason: str


_FREEBSD_FLAGS = {
    "allow_opts": False, "sloppy": False, "no_sync": False, "psync_ack": False,
    "no_df": False, "set_tos": None, "random_id": False, "reassemble_tcp": False,
    "set_prio": None, "dummynet": None, "source_track": False,
    "sticky_address": False, "log": 0, "log_all": False, "min_ttl": 0,
    "max_mss": 0, "pflow": False,
}

# print_state() flag tokens without arguments: token -> {flags key: value}.
_OPT_WORDS = {
    "allow-opts": {"allow_opts": True},
    "sloppy": {"sloppy": True},
    "no-sync": {"no_sync": True},
    "pflow": {"pflow": True},
    "psync-ack": {"psync_ack": True},
    "no-df": {"no_df": True},
    "random-id": {"random_id": True},
    "reassemble-tcp": {"reassemble_tcp": True},
    "source-track": {"source_track": True},
    "sticky-address": {"sticky_address": True},
    # FreeBSD 15 PF_SN_TYPE_NAMES spellings
    "limit source-track": {"source_track": True},
    "limit source-track global": {"source_track": True, "source_track_global": True},
    "NAT/RDR sticky-address": {"sticky_address": True},
    "route sticky-address": {"route_sticky_address": True},
    # PF_LOG = 0x01, PF_LOG_ALL = 0x02; the raw byte is not printed
    "log": {"log": 1},
    "log (all)": {"log": 3, "log_all": True},
}


def _opt_set_tos(m, f):
    f["set_tos"] = int(m[1], 16)


def _opt_set_prio(m, f):
    f["set_prio"] = [int(m[1], 16), int(m[2], 16)]


def _opt_dummynet(m, f):
    f["dummynet"] = {"pipe": int(m[2]), "rpipe": int(m[3]),
                     "is_pipe": m[1] == "pipe", "is_queue": m[1] == "queue"}


def _opt_int(m, f):
    f[m[1].replace("-", "_")] = int(m[2])


_OPT_PATTERNS = ((g.OPT_SET_TOS, _opt_set_tos), (g.OPT_SET_PRIO, _opt_set_prio),
                 (g.OPT_DUMMYNET, _opt_dummynet), (g.OPT_INT, _opt_int))


def _parse_opts(tokens):
    """The `, token`s after the counters; unknown tokens go to 'other'."""
    flags = dict(_FREEBSD_FLAGS)
    for tok in tokens:
        words = _OPT_WORDS.get(tok)
        if words is not None:
            flags.update(words)
            continue
        for rx, handler in _OPT_PATTERNS:
            m = rx.fullmatch(tok)
            if m:
                handler(m, flags)
                break
        else:
            flags.setdefault("other", []).append(tok)
    return flags


_ROUTE_RT = {"gateway": 1, "route-to": 2, "dup-to": 3, "reply-to": 4}
_ZERO_ADDRS = ("0.0.0.0", "::")


def _parse_id_extras(text):
    """(route, rtableid, rt_addr) from the tail of the -vv id line."""
    route = rtableid = rt_addr = None
    for m in g.ID_EXTRA.finditer(text):
        if m["kind"]:
            if m["kind"] == "gateway" and m["ifname"] is None and m["addr"] in _ZERO_ADDRS:
                continue    # FreeBSD 13 prints " gateway: 0.0.0.0" unconditionally
            route = {"kind": m["kind"], "rt": _ROUTE_RT[m["kind"]],
                     "addr": m["addr"], "ifname": m["ifname"]}
        elif m["rtable"]:
            rtableid = int(m["rtable"])
        elif m["rt_addr"]:
            rt_addr = m["rt_addr"]
    return route, rtableid, rt_addr


def _levels_table():
    t = {}
    for i, a in enumerate(g.TCP_STATES):
        for j, b in enumerate(g.TCP_STATES):
            t[6, f"{a}:{b}"] = (i, j)
    for i, a in enumerate(g.UDP_STATES):
        for j, b in enumerate(g.UDP_STATES):
            t[0, f"{a}:{b}"] = (i, j)
    for a, i in g.SCTP_STATES.items():
        for b, j in g.SCTP_STATES.items():
            t[132, f"{a}:{b}"] = (i, j)
    return t


_LEVELS = _levels_table()
_PROXY = {"PROXY:SRC": (None, None), "PROXY:DST": (None, None)}


def _levels(proto, text):
    """(left, right) raw levels of the printed pair, None where not recoverable."""
    r = _LEVELS[proto, text] = _levels_uncached(proto, text)
    return r


def _levels_uncached(proto, text):
    r = _LEVELS.get((proto if proto in (6, 132) else 0, text))
    if r is not None:
        return r
    if proto == 132:
        r = _LEVELS.get((0, text))      # OpenBSD: sctp is an "other" protocol
        if r is not None:
            return r
    if proto == 6 and text in _PROXY:
        return _PROXY[text]
    m = g.BAD_STATE.fullmatch(text)
    if m:
        return int(m[1]), int(m[2])
    a, sep, b = text.partition(":")
    lv = [int(x) if x.isdigit() else _named_level(proto, x) for x in (a, b)]
    if not sep or (lv[0] is None and lv[1] is None and "?" not in text):
        raise ValueError(f"unknown state pair {text!r}")
    return lv[0], lv[1]


def _named_level(proto, name):
    table = g.SCTP_STATES if proto == 132 else {}
    return table.get(name)      # "?" (FreeBSD sctp_state_name default) -> None


def _seconds(hms):
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + int(s)


def _peer(seq, win, diff, ws):
    seqlo = int(seq)
    window = int(win)
    return {"seqlo": seqlo, "seqhi": (seqlo + window) & 0xFFFFFFFF, "window": window,
            "seqdiff": int(diff) if diff else 0,
            "wscale": int(ws) if ws is not None else None}


class State:
    __slots__ = ("ifname", "proto", "proto_name", "af", "stack_af", "direction",
                 "wire_src", "wire_dst", "stack_src", "stack_dst", "nat",
                 "src_state", "dst_state", "state_text", "tcp", "age_s",
                 "expires_in_s", "packets", "bytes", "rule", "anchor", "id",
                 "creatorid", "flags", "pflow", "route_addr", "route",
                 "rtableid", "orig_ifname", "line", "nlines")

    @property
    def key(self):
        return (self.creatorid, self.id)

    @property
    def afto(self):
        return self.af != self.stack_af

    def to_json(self):
        d = {s: getattr(self, s) for s in self.__slots__}
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
            getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self):
        return f"<State {self.line}: {summary(self)}>"


def _host(text, rd=None):
    """print_host() text ("(N) " prefix allowed) -> Host; ValueError if not one."""
    if text[0] == "(":
        rd, _, text = text[1:].partition(") ")
    if text[-1] == "]":
        addr, _, port = text[:-1].partition("[")
        if ":" not in addr:
            raise ValueError(f"bad host {text!r}")
        return Host(addr, int(port), int(rd) if rd else 0)
    colons = text.count(":")
    if colons == 1:
        addr, _, port = text.partition(":")
        port = int(port)
    else:
        addr, port = text, 0
    if colons < 2 and (addr.count(".") != 3 or not addr.replace(".", "").isdigit()):
        raise ValueError(f"bad host {text!r}")
    return Host(addr, port, int(rd) if rd else 0)


def _build(gr, line, nlines, pfsgw=None):
    """A State from the FAST_RECORD group tuple (slow path: see _strict_groups)."""
    (ifname, proto_t, Lrd, Ltok, LX, gw1, arrow, Rrd, Rtok, RX, gw2, state_text,
     sseq, swin, sdiff, sws, dseq, dwin, ddiff, dws, age, exp, _counters,
     p0, p1, b0, b1, tail, id_, creatorid, idx, origif) = gr
    st = State()
    st.ifname = ifname
    proto = _PROTOCOLS.get(proto_t)
    if proto is None:
        if proto_t.isdigit():
            proto, st.proto_name = int(proto_t), None
        else:
            proto, st.proto_name = -1, proto_t
    else:
        st.proto_name = proto_t
    st.proto = proto
    left = _host(Ltok, Lrd)
    right = _host(Rtok, Rrd)
    left_x = _host(LX) if LX else left
    right_x = _host(RX) if RX else right
    if arrow == "<-":
        st.direction = "in"
        st.stack_dst, st.wire_dst, st.stack_src, st.wire_src = left, left_x, right, right_x
    elif LX and (":" in left.addr) != (":" in left_x.addr):   # af-to: inbound, "->"
        st.direction = "in"
        st.stack_src, st.wire_src, st.stack_dst, st.wire_dst = left, left_x, right, right_x
    else:
        st.direction = "out"
        st.wire_src, st.stack_src, st.wire_dst, st.stack_dst = left, left_x, right, right_x
    st.af = "inet6" if ":" in st.wire_src.addr else "inet"
    st.stack_af = "inet6" if ":" in st.stack_src.addr else "inet"
    st.nat = left is not left_x or right is not right_x
    st.state_text = state_text
    lv, rv = _LEVELS.get((proto, state_text)) or _levels(proto, state_text)
    if st.direction == "in":
        st.src_state, st.dst_state = rv, lv
    else:
        st.src_state, st.dst_state = lv, rv
    if sseq is not None:
        first = _peer(sseq, swin, sdiff, sws)
        second = _peer(dseq, dwin, ddiff, dws)
        if st.direction == "in":
            first, second = second, first
        st.tcp = {"src": first, "dst": second, "wscale_printed": sws is not None}
    else:
        st.tcp = None
    if age is not None:
        st.age_s = _seconds(age)
        st.expires_in_s = _seconds(exp)
        st.packets = (int(p0), int(p1))
        st.bytes = (int(b0), int(b1))
    else:
        st.age_s = st.expires_in_s = None
        st.packets = st.bytes = (0, 0)
    st.rule = st.anchor = None
    if tail:
        toks = tail[2:].split(", ")
        if toks[0].startswith("anchor "):
            st.anchor = int(toks.pop(0)[7:])
        if toks and toks[0].startswith("rule "):
            st.rule = int(toks.pop(0)[5:])
        flags = _parse_opts(toks) if toks else dict(_FREEBSD_FLAGS)
    else:
        flags = dict(_FREEBSD_FLAGS)
    st.flags = flags
    st.pflow = flags["pflow"]
    st.id = id_
    st.creatorid = creatorid
    st.route_addr = gw1 or gw2
    if idx:
        st.route, st.rtableid, rt_addr = _parse_id_extras(idx)
        st.route_addr = st.route_addr or rt_addr
    else:
        st.route = st.rtableid = None
    if pfsgw and pfsgw not in _ZERO_ADDRS and st.route is None:
        st.route = {"kind": "gateway", "rt": 1, "addr": pfsgw, "ifname": None}
    st.orig_ifname = origif or (ifname if id_ else None)
    st.line = line
    st.nlines = nlines
    return st


def _strict_groups(m):
    """grammar.RECORD match -> the FAST_RECORD group tuple _build() takes."""
    def alt(p):
        h = m[p + "h"]
        return h and (f"({m[p + 'rd']}) {h}" if m[p + "rd"] else h)
    if m["Mh"]:     # old "lan -> gwy -> ext" == "gwy (lan) -> ext"; "lan (gwy) <- ext"
        if m["arrow"] != m["arrow2"]:
            raise ValueError("mixed arrows in a three-host state line")
        if m["arrow"] == "->":
            lrd, ltok, lx = m["Mrd"], m["Mh"], alt("L")
        else:
            lrd, ltok, lx = m["Lrd"], m["Lh"], alt("M")
    else:
        lrd, ltok, lx = m["Lrd"], m["Lh"], alt("LX")
    return (m["ifname"], m["proto"], lrd, ltok, lx, m["gw1"], m["arrow"], m["Rrd"],
            m["Rh"], alt("RX"), m["gw2"], m["state"], *m.group(
                "sseq", "swin", "sdiff", "sws", "dseq", "dwin", "ddiff", "dws",
                "age", "exp", "counters", "p0", "p1", "b0", "b1", "tail", "id",
                "creatorid", "idx", "origif"))


_PROTOCOLS = g.PROTOCOLS

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


def _parse_states(text):
    vv = "   id: " in text
    v = "   age " in text
    cut = bool(text) and not text.endswith("\n")
    if cut:
        text += "\n"
    errs = _Errors(text, cut)
    states = []
    append = states.append
    count = text.count
    startswith = text.startswith
    build = _build
    pos = 0
    line = 1
    for m in g.FAST_RECORD["vv" if vv else "v" if v else "ss"].finditer(text):
        s = m.start()
        if s != pos:
            line = _parse_slow(text, pos, s, line, errs, states, v, vv)
        e = m.end()
        if startswith("   ", e):
            pos = _skip_continuations(text, e)
            line = _parse_slow(text, s, pos, line, errs, states, v, vv)
            continue
        nl = count("\n", s, e)
        try:
            append(build(m.groups(), line, nl))
        except ValueError:
            line = _parse_slow(text, s, e, line, errs, states, v, vv)
        else:
            line += nl
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
            states.append(_build(_strict_groups(m), line, nl, m["pfsgw"]))
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
    m = g.RECORD.match(text, start, end)
    if m is None or m.end() != end:
        raise ValueError(f"not one pfctl state record: {text[start:end]!r}")
    return _build(_strict_groups(m), line, text.count("\n", start, end), m["pfsgw"])


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
