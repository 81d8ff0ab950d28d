"""Tracker: snapshots of the state table in, expired states out, as packed entries.

Strategy.  States are keyed by (creatorid, id).  Every poll the table is scanned, not
parsed: for a state already known only its counter text (pf.snapshot.TRACK_TAIL,
which ends with its key) is compared with the last poll's, as a set difference.  A
record is parsed fully only when it is new or changed.  What a selected state needs at
export is kept as a flows.Entry, a few hundred bytes, not a parsed record.

A state missing from a *complete* snapshot has been removed by pf and is handed out
with the counters it had when last seen; the pipeline turns it into flows.  A snapshot
that is partial (pfctl failed, timed out, or the text holds unparseable or truncated
records) updates what it can and expires nothing: a state it lacks may only have been
lost in the text.

Time is a parameter: `poll` is seconds since the firewall booted (kernel uptime).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pflowbsd import flows
from pflowbsd.flows import Entry
from pflowbsd.pf import snapshot
from pflowbsd.pf import states as pfstates
from pflowbsd.pf.record import State
from pflowbsd.pf.timeouts import DEFAULTS, Policy

TAIL, KEY = snapshot.TRACK_TAIL, snapshot.TRACK_KEY

@dataclass(slots=True)
class Update:
    expired: list[Entry] = field(default_factory=list)  # one per state to export
    errors: list[pfstates.ParseError] = field(default_factory=list)
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

    def __init__(self, policy: Policy | None = None,
                 select: Callable[[State], bool] | None = None) -> None:
        self.policy = policy or Policy(timeouts=dict(DEFAULTS))
        self.select: Callable[[State], bool] = select or (lambda st: bool(st.pflow))
        self.entries: dict[str, Entry | None] = {}
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
        if (complete and len(cur) == len(tails) == snapshot.heads(text) and text.endswith("\n")) \
                or (not text.strip() and complete):
            up = Update(states=len(tails))
            fresh = cur - self.entries.keys()
            order = [t for t in tails if t in fresh] if fresh else []
            spans, pos = [], 0
            for t in order:
                pos = text.find(t, pos)
                spans.append((t, *snapshot.record_at(text, pos)))
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

    def _slow(self, text: str, complete: bool, tails: list[str], distinct: set[str]
              ) -> tuple[Update, set[str], list[tuple[str, int, int]]]:
        """A table the counts do not vouch for.  The validating scan names what is wrong
        (logged and counted); the snapshot is still whole, and may expire states, when
        every state line in it came with its counters and id, i.e. only lines that are
        not states were skipped.  Otherwise it updates what it can and expires nothing."""
        sc = pfstates.scan(text)
        up = Update(errors=list(sc.errors), states=len(sc.records))
        up.partial = (not complete or sc.truncated or not text.endswith("\n")
                      or len(tails) != snapshot.state_lines(text) or len(distinct) != len(tails))
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

    def _changed(self, t: str, old: Entry | None, st: State, poll: float, nstates: int,
                 up: Update) -> None:
        if old is None:
            self.entries[t] = None  # tracked, not selected: nothing to keep
            return
        first, _last = flows.entry_times(old)
        p0, p1, b0, b1 = flows.entry_counters(old)
        rule = self.rules.get(t[-KEY:]) if st.rule is None else None
        last, _known = self.policy.last_packet(st, poll, nstates, rule)
        entry = flows.pack_entry(st, first, int(last))
        went_down = (st.packets[0] < p0 or st.packets[1] < p1
                     or st.bytes[0] < b0 or st.bytes[1] < b1)
        if flows.entry_key(entry) != flows.entry_key(old) or went_down:
            # Same (creatorid, id), another connection: the old one ended.
            self.stats["restarted"] += 1
            up.expired.append(self._final(old, poll))
            self.rules.pop(t[-KEY:], None)
            self.entries[t] = self._admit(t, st, poll, nstates)
            return
        self.entries[t] = entry

    def _admit(self, t: str, st: State, poll: float, nstates: int) -> Entry | None:
        if not self.select(st):
            return None
        rule = self.policy.rule_of(st) if self.policy.rule_of else None
        if getattr(rule, "timeouts", None):
            self.rules[t[-KEY:]] = rule
        first = int(poll) - (st.age_s or 0)
        last, _known = self.policy.last_packet(st, poll, nstates, rule)
        return flows.pack_entry(st, first, int(last))  # _final() clamps it into [First, gone]

    @staticmethod
    def _final(entry: Entry, seen_gone: float) -> Entry:
        """Clamp Last into [First, the poll that saw the state gone]."""
        first, last = flows.entry_times(entry)
        return flows.with_times(entry, first, min(max(last, first), int(seen_gone)))
