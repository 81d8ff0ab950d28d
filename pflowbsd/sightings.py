"""Sightings: a snapshot's new and changed records, read into the tracker's entries.

Strategy.  Tracker.update (tracker.py) finds which tails are fresh; this is what
happens to their records.  A changed state (a known key) is updated from its counter
fields alone where it can be (pf.counters.read_change, checked to be the same
connection by its pflow key); in C where the C builder is (flows.changes_c over a
chunk's pairs, flows.change_c one by one), Last from `_lasts`, which this Python path
fills once per poll and key of what decides it.  The rest are built as States
(batch.py: in one batch, or one by one through the strict grammar so that each bad
record gets its own ParseError), selected and packed (flows.admit_all_c's loop over
flows.admit_c, else flows.pack_entry: both check every address).  When more than BULK_SHARE of
a chunk is fresh, pf.snapshot.fresh_records scans it whole.  A record that cannot be
read is counted and taken as present: it neither expires nor blocks other expiries.
Sightings is the Tracker's reading half, a mixin: it reads and writes the Tracker's
tables (entries, rules, the active timeout's heap) and nothing else.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pflowbsd import batch, flows
from pflowbsd.flows import Entry
from pflowbsd.pf import snapshot
from pflowbsd.pf import states as pfstates
from pflowbsd.pf.counters import read_change
from pflowbsd.pf.grammar import FastRecord
from pflowbsd.pf.record import State, check_addresses
from pflowbsd.pf.timeouts import Policy

TAIL, KEY = snapshot.TRACK_TAIL, snapshot.TRACK_KEY
NO_IF = (0, 0)  # if_index in, out: no interface table
# A poll with more than this share of its records new or changed reads them all with the
# bulk scanner (pf.snapshot.fresh_records) rather than finding each one.
BULK_SHARE = 0.25
# A record to read: (tail, start, end) to find in the text, or (tail, its FastRecord).
Item = tuple[str, int, int] | tuple[str, FastRecord]


@dataclass(slots=True)
class Update:
    expired: list[Entry] = field(default_factory=list)  # one per state to export
    active: list[Entry] = field(default_factory=list)  # active-timeout spans of live states
    errors: list[pfstates.ParseError] = field(default_factory=list)
    partial: bool = False
    blank: bool = True  # the snapshot held nothing but white space
    states: int = 0
    new: int = 0
    changed: int = 0
    gone: int = 0


class Sightings:
    """The Tracker's tables this half reads and writes (set by Tracker.__init__)."""

    policy: Policy
    select: Callable[[State], bool]
    entries: dict[str, Entry | None]
    rules: dict[str, object]
    ifaces: dict[str, int]
    active_timeout: int
    _due: list[tuple[int, str]]
    _overdue: set[str]
    _lasts: dict[int, dict[tuple[object, ...], int]]
    stats: dict[str, int]
    touched: set[str]

    def _rest(self, key: str, entry: Entry, seen_gone: float) -> Entry | None:
        raise NotImplementedError  # Tracker's: what a state that ended still exports

    def _now(self, text: str, tails: list[str], fresh: list[str], line: int,
             old: dict[str, str], poll: float, up: Update, nstates: int,
             lines: tuple[list[int], list[int]] | None = None,
             offsets: list[int] | None = None) -> None:
        """Read the fresh records of text (`tails`: all of text's, in order): the bulk
        scanner when they are many, else record by record (`offsets`: where each fresh
        tail is, when known).  Line numbers for errors: from `line` on, or (lines:
        records joined) each record's start and line."""
        if not fresh:
            return
        line_of = batch.line_numbers(text, line, lines)
        if len(fresh) > BULK_SHARE * len(tails):
            todo: Iterable[Sequence[Item]] = snapshot.fresh_records(text, tails, set(fresh))
        else:
            todo = [snapshot.spans(text, fresh, offsets=offsets)]
        for items in todo:
            self._read(text, items, old, poll, up, nstates, line_of)

    def _read(self, text: str, todo: Sequence[Item], old: dict[str, str], poll: float,
              up: Update, nstates: int, line_of: Callable[[int], int]) -> None:
        """The records of new and changed tails: (tail, start, end) to find in the text,
        or (tail, FastRecord) from the bulk scanner.  A changed state is updated from its
        counters alone where it can be (read_change); the rest are built in one batch."""
        entries, rules, change = self.entries, self.rules, flows.change_c
        # Last by what decides it, for the C update (one table per poll and table size)
        lasts = self._lasts.setdefault(nstates, {})
        build: batch.Todo = []
        rebuilt = False  # a known state among them, to be read in full
        paired = bool(todo) and len(todo[0]) == 2  # the bulk scanner's (tail, record)s
        all_new = paired and not old
        if (not all_new and paired and change is not None and flows.changes_c is not None
                and not self._overdue and isinstance(todo, list)):
            # what change() updates, in one C loop; the rest below
            todo, n, not_new = flows.changes_c(todo, old, entries, rules, lasts,
                                               self._touched_set())
            up.changed += n
            all_new = not not_new
        if all_new:  # none for the loop below to look at
            build = [(t, rec, -1, -1) for t, rec in todo]  # type: ignore[misc]
            todo = ()
        for item in todo:
            t = item[0]
            key = t[-KEY:]
            prev = old.get(key)
            if prev is not None and entries[prev] is None:
                del old[key], entries[prev]  # tracked, not selected: nothing to read
                entries[t] = None
                self.touched.update((t, prev))
                up.changed += 1
                continue
            if len(item) == 3:
                start, end = item[1], item[2]
                rec = snapshot.one_record(text, start, end)
            else:
                rec, start, end = item[1], -1, -1
            if prev is not None and rec is not None:
                known: tuple[object, ...] | None = None  # where to keep the Last found
                if change is not None and (rec[28] or key not in rules):  # no kept rule
                    new = change(rec, entries[prev], lasts)  # type: ignore[arg-type]
                    if type(new) is bytes:
                        del entries[prev], old[key]
                        entries[t] = new
                        self.touched.update((t, prev))
                        self._moved(prev, t)
                        up.changed += 1
                        continue
                    known = new  # type: ignore[assignment]
                if self._counters(t, prev, rec, poll, nstates, known, lasts):
                    del old[key]
                    up.changed += 1
                    continue
            rebuilt = rebuilt or prev is not None
            build.append((t, rec, start, end))
        if not rebuilt:  # every record to build new (a first poll's all): a tight loop
            added = self._admit_all(text, build, poll, nstates, up, line_of)
            up.new += len(added)
            self.touched.update(added)
            return
        for t, st, start in batch.built(text, build, up.errors, line_of):
            key = t[-KEY:]
            try:
                if st is None:
                    raise _Skipped
                prev = old.get(key)
                if prev is None:
                    entries[t] = self._admit(t, st, poll, nstates)
                    up.new += 1
                    self.touched.add(t)
                else:
                    self._changed(t, entries[prev], st, poll, nstates, up, prev)
                    del entries[prev], old[key]
                    up.changed += 1
                    self.touched.update((t, prev))
            except ValueError as e:  # an address inet_pton() refuses
                batch.bad(text, t, start, e, up.errors, line_of)
                old.pop(key, None)   # skipped, counted, and treated as present:
            except _Skipped:         # it neither expires nor blocks other expiries
                old.pop(key, None)

    def _touched_set(self) -> set[str] | None:
        """`touched` for the C loops to add to; None while nobody takes the changes."""
        return self.touched if type(self.touched) is set else None

    def _counters(self, t: str, prev: str, rec: FastRecord, poll: float, nstates: int,
                  known: tuple[object, ...] | None = None,
                  lasts: dict[tuple[object, ...], int] | None = None) -> bool:
        """A selected state's new counters, from its record's counter fields: False when
        the record must be read in full (unusual text, counters gone down, another key).
        The reference for flows.change_c, which asks it to work Last out once per
        `known` key (then kept in `lasts`)."""
        old = self.entries[prev]
        assert old is not None
        ch = read_change(rec)
        if ch is None:
            return False
        st, sa, sp, da, dp = ch
        p0, p1 = st.packets
        b0, b1 = st.bytes
        o0, o1, o2, o3 = flows.entry_counters(old)
        if p0 < o0 or p1 < o1 or b0 < o2 or b1 < o3 or not flows.key_is(old, sa, sp, da, dp):
            return False  # another connection, maybe: _changed() decides
        last = self._last(t, st, poll, nstates)
        if known is not None and lasts is not None:
            lasts[known] = last
        try:
            entry = flows.with_update(old, last, (p0, p1, b0, b1))
        except struct.error:
            return False  # past 64 bits: the full parse refuses it, with a reason
        del self.entries[prev]
        self.entries[t] = entry
        self.touched.update((t, prev))
        self._moved(prev, t)
        return True

    def _last(self, t: str, st: State, poll: float, nstates: int) -> int:
        """Last (uptime s) of a known state: by its rule's timeouts, the rule kept from
        first sight where the record no longer names it (an OpenBSD reload)."""
        rule = self.rules.get(t[-KEY:]) if st.rule is None else None
        return int(self.policy.last_packet(st, poll, nstates, rule)[0])

    def _moved(self, prev: str, t: str) -> None:
        """A state due for an active-timeout span with nothing gained (overdue, under
        its old tail) that now changed: it is due again at once, under its new tail."""
        if self._overdue and prev in self._overdue:
            self._overdue.discard(prev)
            heapq.heappush(self._due, (0, t))

    def _slow(self, text: str, tails: list[str], repeats: int, up: Update,
              line: int) -> list[str]:
        """A chunk the counts do not vouch for.  The validating scan names what is wrong
        (logged and counted); the snapshot is still whole, and may expire states, when
        every state line in it came with its counters and id, i.e. only lines that are
        not states were skipped.  Otherwise it updates what it can and expires nothing.
        Returns the chunk's fresh tails, in order (`repeats`: its tails seen before in
        this poll, sight()'s count)."""
        sc = pfstates.scan(text)
        up.errors += [e._replace(line=e.line + line - 1) for e in sc.errors]
        up.states += len(sc.records)
        distinct = set(tails)
        if (sc.truncated or not text.endswith("\n") or len(tails) != snapshot.state_lines(text)
                or len(distinct) != len(tails) or repeats):
            up.partial = True
        seen: set[str] = set()
        fresh = []
        for _key, _head, _counters, start, end in sc.records:
            m = TAIL.search(text, start, end)
            if m is None:
                up.partial = True
                continue
            t = m[1]
            if t in seen:
                up.partial = True  # the same state twice: not a table pfctl printed
                continue
            seen.add(t)
            if t not in self.entries:
                fresh.append(t)
        if len(seen) != len(distinct):
            up.partial = True  # a tail outside the records the scan accepted
        return fresh

    def _changed(self, t: str, old: Entry | None, st: State, poll: float, nstates: int,
                 up: Update, prev: str = "") -> None:
        """A known state's record read in full; ValueError (nothing changed) if one of
        its addresses is not one pf prints."""
        if old is None:
            check_addresses(st)
            self.entries[t] = None  # tracked, not selected: nothing to keep
            return
        first, _last = flows.entry_times(old)
        p0, p1, b0, b1 = flows.entry_counters(old)
        ifidx = flows.if_indexes(st, self.ifaces) if self.ifaces else NO_IF
        entry = flows.pack_entry(st, first, self._last(t, st, poll, nstates), ifidx)
        went_down = (st.packets[0] < p0 or st.packets[1] < p1
                     or st.bytes[0] < b0 or st.bytes[1] < b1)
        if flows.entry_key(entry) != flows.entry_key(old) or went_down:
            # Same (creatorid, id), another connection: the old one ended.
            self.stats["restarted"] += 1
            self._overdue.discard(prev)
            rest = self._rest(t[-KEY:], old, poll)
            if rest is not None:
                up.expired.append(rest)
            self.rules.pop(t[-KEY:], None)
            self.entries[t] = self._admit(t, st, poll, nstates)
            return
        self.entries[t] = entry
        self._moved(prev, t)

    def _admit_all(self, text: str, build: batch.Todo,
                   poll: float, nstates: int, up: Update, line_of: Callable[[int], int]
                   ) -> list[str]:
        """_admit() of every record of `build`, all new: in C's loop (flows.admit_all_c)
        where _fast_admit() says, each state it leaves (and all, where it does not) by
        one() here, inlined (First, Last and the entry in C where fast packs them)."""
        entries, fast = self.entries, self._fast_admit()
        known = self.policy.known_classes(nstates)
        added: list[str] = []
        now = int(poll)

        def one(t: str, st: State, start: int) -> None:
            try:
                if fast is None:
                    entries[t] = self._admit(t, st, poll, nstates)
                elif self.select(st):
                    entry = fast(st, now, poll, known)
                    # a class not met yet this poll, or one C leaves to Python
                    entries[t] = entry if type(entry) is bytes else self._admit(t, st, poll, nstates)
                else:
                    check_addresses(st)
                    entries[t] = None
            except ValueError as e:
                batch.bad(text, t, start, e, up.errors, line_of)
                return
            added.append(t)

        loop = flows.admit_all_c if fast is not None else None
        states = batch.states_of(build) if loop is not None else None
        if loop is None or states is None:
            for t, st, start in batch.built(text, build, up.errors, line_of):
                if st is not None:
                    one(t, st, start)
            return added
        tails, i = [t for t, _r, _s, _e in build], 0
        while (i := loop(tails, states, i, entries, self.select, now, poll, known, added)) < len(tails):
            one(tails[i], states[i], build[i][2])
            i += 1
        return added

    def _fast_admit(self) -> _AdmitC | None:
        """flows.admit_c where it packs what _admit() would: no rule of its own
        timeouts, no interface table, no active timeout to schedule."""
        plain = not self.ifaces and not self.active_timeout and self.policy.rule_of is None
        return flows.admit_c if plain else None

    def _admit(self, t: str, st: State, poll: float, nstates: int) -> Entry | None:
        """A new state's entry (None: not selected); ValueError, and nothing kept, if
        one of its addresses is not one pf prints.  In C where _fast_admit() says (its
        class's timeouts learnt here when they are new to this poll)."""
        if not self.select(st):
            check_addresses(st)
            return None
        if (fast := self._fast_admit()) is not None:
            known = self.policy.known_classes(nstates)
            if type(entry := fast(st, int(poll), poll, known)) is tuple:
                self.policy.learn(st, nstates)
                entry = fast(st, int(poll), poll, known)
            if type(entry) is bytes:
                return entry
        rule = self.policy.rule_of(st) if self.policy.rule_of else None
        first = int(poll) - (st.age_s or 0)
        last, _known = self.policy.last_packet(st, poll, nstates, rule)
        # _final() clamps Last into [First, gone]
        ifidx = flows.if_indexes(st, self.ifaces) if self.ifaces else NO_IF
        entry = flows.pack_entry(st, first, int(last), ifidx)
        if rule is not None and getattr(rule, "timeouts", None):
            self.rules[t[-KEY:]] = rule
        if self.active_timeout:
            heapq.heappush(self._due, (first + self.active_timeout, t))
        return entry


_AdmitC = Callable[[State, int, float, dict[tuple[object, ...], tuple[int, int] | None]],
                   "bytes | tuple[object, ...] | None"]  # flows.admit_c: _fastbuild.admit


class _Skipped(Exception):
    """A record that could not be read (its ParseError is already counted)."""

