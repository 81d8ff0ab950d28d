"""Tracker: snapshots of the state table in, expired states out, as flow pairs.

Strategy.  States are keyed by (creatorid, id).  Every poll the table is scanned, not
parsed: for a state already known only its counter text (grammar.TRACK_TAIL, which ends
with its key) is compared with the last poll's, as a set difference.  A record is
parsed fully only when it is new or changed.  What a selected state needs at export (its pflow key, the other key when it
was translated, counters, first and last packet times) is kept packed in one bytes
object, so a tracked state costs a few hundred bytes, not a parsed record.

A state missing from a *complete* snapshot has been removed by pf and is exported with
the counters it had when last seen.  A snapshot that is partial (pfctl failed, timed
out, or the text holds unparseable or truncated records) updates what it can and
expires nothing: a state it lacks may only have been lost in the text.

Time is a parameter: `poll` is seconds since the firewall booted (kernel uptime).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from pflowbsd.flows import AF, Flow
from pflowbsd.pf import grammar
from pflowbsd.pf import states as pfstates
from pflowbsd.pf.timeouts import DEFAULTS, Policy

# The packed per-state entry:
#   0 flags B (NATTED, INET6)   1 proto B
#   2 src_port H   4 dst_port H   6 first s q   14 last s q
#   22 packets[0] Q  30 packets[1] Q  38 bytes[0] Q  46 bytes[1] Q
#   54 src, dst (4 or 16 bytes each), then when NATTED the other key:
#      nat_src_port H, nat_dst_port H, nat_src, nat_dst
ENTRY = struct.Struct("<BBHHqqQQQQ")
NAT_PORTS = struct.Struct("<HH")
NATTED, INET6 = 0x01, 0x02
_FIRST = 6  # first, then last
_TIMES = struct.Struct("<qq")


def _pflow_keys(st):
    """pflow's key, `key[direction == in ? WIRE : STACK]`, and the other one."""
    if st.direction == "in":
        return st.af, st.wire_src, st.wire_dst, st.stack_af, st.stack_src, st.stack_dst
    return st.stack_af, st.stack_src, st.stack_dst, st.af, st.wire_src, st.wire_dst


def pack_entry(st, first: int, last: int) -> bytes:
    af, src, dst, oaf, osrc, odst = _pflow_keys(st)
    fam = AF[af]
    natted = oaf == af and (osrc[:2] != src[:2] or odst[:2] != dst[:2])
    flags = (NATTED if natted else 0) | (INET6 if af == "inet6" else 0)
    out = ENTRY.pack(flags, st.proto, src.port, dst.port, first, last,
                     st.packets[0], st.packets[1], st.bytes[0], st.bytes[1])
    out += socket.inet_pton(fam, src.addr) + socket.inet_pton(fam, dst.addr)
    if natted:
        out += (NAT_PORTS.pack(osrc.port, odst.port) + socket.inet_pton(fam, osrc.addr)
                + socket.inet_pton(fam, odst.addr))
    return out


def flow_pair(entry: bytes) -> tuple[Flow, Flow]:
    """flow1 initiator -> responder from counters[0], flow2 the mirror (copy_flow_data)."""
    flags, proto, sport, dport, first, last, p0, p1, b0, b1 = ENTRY.unpack_from(entry)
    n = 16 if flags & INET6 else 4
    fam = socket.AF_INET6 if flags & INET6 else socket.AF_INET
    o = ENTRY.size
    src, dst = entry[o:o + n], entry[o + n:o + 2 * n]
    nat = {}, {}
    if flags & NATTED:
        nsport, ndport = NAT_PORTS.unpack_from(entry, o + 2 * n)
        o += 2 * n + NAT_PORTS.size
        nsrc, ndst = entry[o:o + n], entry[o + n:o + 2 * n]
        nat = (dict(nat_src=nsrc, nat_dst=ndst, nat_src_port=nsport, nat_dst_port=ndport),
               dict(nat_src=ndst, nat_dst=nsrc, nat_src_port=ndport, nat_dst_port=nsport))
    start, end = first * 1000, last * 1000
    return (Flow(fam, src, dst, sport, dport, proto, p0, b0, start, end, **nat[0]),
            Flow(fam, dst, src, dport, sport, proto, p1, b1, start, end, **nat[1]))


def _key_part(entry: bytes) -> bytes:
    """What identifies the connection: everything but times and counters."""
    return entry[:_FIRST] + entry[ENTRY.size:]


TAIL, KEY = grammar.TRACK_TAIL, grammar.TRACK_KEY


def _heads(text: str) -> int:
    """Lines that do not start with a space: state lines, and garbage (C-speed counts)."""
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    return lines - text.count("\n ") - (1 if text.startswith(" ") else 0)


def _state_lines(text: str) -> int:
    """State lines only: each holds the 7 spaces print_state() puts before the state
    pair ("    " then "   %s:%s"), and no other line pfctl prints does."""
    return text.count("       ")


def _record_at(text: str, at: int) -> tuple[int, int]:
    """The span of the record whose counters line holds offset `at`."""
    start = text.rfind("\n", 0, at) + 1  # the age line
    while start > 0 and text.startswith(" ", start):
        start = text.rfind("\n", 0, start - 1) + 1
    end = text.find("\n", at)
    end = len(text) if end < 0 else end + 1  # past the id line
    end = text.find("\n", end) + 1 or len(text)
    while text.startswith(" ", end):  # FreeBSD origif:, pfSense gateway:
        end = text.find("\n", end) + 1 or len(text)
    return start, end


@dataclass(slots=True)
class Update:
    expired: list = field(default_factory=list)  # (flow1, flow2) per exported state
    errors: list = field(default_factory=list)  # pfstates.ParseError
    partial: bool = False
    states: int = 0
    new: int = 0
    changed: int = 0
    gone: int = 0


class Tracker:
    """Pure: feed it `pfctl -ss -vv` text and the uptime of the poll.

    `entries` maps each known state's TAIL text to its packed entry (None when the
    state is tracked but not selected), so a poll that changes nothing is one
    findall() and two set differences, all in C.
    """

    def __init__(self, policy: Policy | None = None, select=None):
        self.policy = policy or Policy(timeouts=dict(DEFAULTS))
        self.select = select or (lambda st: st.pflow)
        self.entries: dict[str, bytes | None] = {}
        # The rule of each selected state whose rule has timeouts of its own, kept from
        # first sight: an OpenBSD reload takes `rule N` away, not the rule's timeouts.
        self.rules: dict[str, object] = {}
        self.stats = dict(polls=0, partial=0, parse_errors=0, new=0, changed=0,
                          expired=0, exported=0, restarted=0)

    def __len__(self) -> int:
        return len(self.entries)

    def update(self, text: str, poll: float, complete: bool = True) -> Update:
        tails = TAIL.findall(text)
        cur = set(tails)
        if (complete and len(cur) == len(tails) == _heads(text) and text.endswith("\n")) \
                or (not text.strip() and complete):
            up = Update(states=len(tails))
            fresh = cur - self.entries.keys()
            order = [t for t in tails if t in fresh] if fresh else []
            spans, pos = [], 0
            for t in order:
                pos = text.find(t, pos)
                spans.append((t, *_record_at(text, pos)))
        else:
            up, cur, spans = self._slow(text, complete, tails, cur)
        if not spans and len(cur) == len(self.entries):
            old = {}  # nothing new and nothing missing: the usual quiet poll
        else:
            old = {t[-KEY:]: t for t in self.entries.keys() - cur}
        nstates = up.states
        for t, start, end in spans:
            try:
                st = pfstates.parse_record(text, start, end)
            except ValueError as e:
                line = text.count("\n", 0, start) + 1
                up.errors.append(pfstates.ParseError(line, text[start:end].split("\n")[0], str(e)))
                up.partial = True
                old.pop(t[-KEY:], None)
                continue
            prev = old.pop(t[-KEY:], None)
            if prev is None:
                up.new += 1
                self.entries[t] = self._admit(t, st, poll, nstates)
            else:
                up.changed += 1
                self._changed(t, self.entries.pop(prev), st, poll, nstates, up)
        self.stats["polls"] += 1
        self.stats["parse_errors"] += len(up.errors)
        if up.partial:
            self.stats["partial"] += 1
        else:
            for t in old.values():
                up.gone += 1
                entry = self.entries.pop(t)
                self.rules.pop(t[-KEY:], None)
                if entry is not None:
                    up.expired.append(self._final(entry, poll))
        self.stats["new"] += up.new
        self.stats["changed"] += up.changed
        self.stats["expired"] += up.gone
        self.stats["exported"] += len(up.expired)
        return up

    def _slow(self, text: str, complete: bool, tails: list[str], distinct: set[str]):
        """A table the counts do not vouch for.  The validating scan names what is wrong
        (logged and counted); the snapshot is still whole, and may expire states, when
        every state line in it came with its counters and id, i.e. only lines that are
        not states were skipped.  Otherwise it updates what it can and expires nothing."""
        sc = pfstates.scan(text)
        up = Update(errors=list(sc.errors), states=len(sc.records))
        up.partial = (not complete or sc.truncated or not text.endswith("\n")
                      or len(tails) != _state_lines(text) or len(distinct) != len(tails))
        cur, spans = set(), []
        for _key, _head, _counters, start, end in sc.records:
            m = TAIL.search(text, start, end)
            if m is None:
                up.partial = True
                continue
            t = m[1]
            if t in cur:
                up.partial = True  # the same state twice: not a table pfctl printed
                continue
            cur.add(t)
            if t not in self.entries:
                spans.append((t, start, end))
        if len(cur) != len(distinct):
            up.partial = True  # a tail outside the records the scan accepted
        return up, cur, spans

    def _changed(self, t, old, st, poll, nstates, up: Update) -> None:
        if old is None:
            self.entries[t] = None  # tracked, not selected: nothing to keep
            return
        *_, first, _last, p0, p1, b0, b1 = ENTRY.unpack_from(old)
        rule = self.rules.get(t[-KEY:]) if st.rule is None else None
        last, _known = self.policy.last_packet(st, poll, nstates, rule)
        entry = pack_entry(st, first, int(last))
        went_down = (st.packets[0] < p0 or st.packets[1] < p1
                     or st.bytes[0] < b0 or st.bytes[1] < b1)
        if _key_part(entry) != _key_part(old) or went_down:
            # Same (creatorid, id), another connection: the old one ended.
            self.stats["restarted"] += 1
            up.expired.append(self._final(old, poll))
            self.rules.pop(t[-KEY:], None)
            entry = self._admit(t, st, poll, nstates)
        self.entries[t] = entry

    def _admit(self, t, st, poll, nstates) -> bytes | None:
        if not self.select(st):
            return None
        rule = self.policy.rule_of(st) if self.policy.rule_of else None
        if getattr(rule, "timeouts", None):
            self.rules[t[-KEY:]] = rule
        first = int(poll) - (st.age_s or 0)
        last, _known = self.policy.last_packet(st, poll, nstates, rule)
        return pack_entry(st, first, int(last))  # _final() clamps it into [First, gone]

    @staticmethod
    def _final(entry: bytes, seen_gone: float) -> tuple[Flow, Flow]:
        """Clamp Last into [First, the poll that saw the state gone], then build flows."""
        first, last = _TIMES.unpack_from(entry, _FIRST)
        last = min(max(last, first), int(seen_gone))
        entry = entry[:_FIRST] + _TIMES.pack(first, last) + entry[_FIRST + _TIMES.size:]
        return flow_pair(entry)
