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

Active timeout (off unless `active_timeout` > 0).  A selected state alive that many
seconds since its creation or its last export is exported at the next whole poll with
what it gained since, First/Last covering that span; at removal only the rest.  What was
exported is the side table `exported`: per state key (the last TRACK_KEY characters of
its tail) one EXPORTED record, 40 bytes, only for states exported at least once.  A
heap of (due uptime, tail as pushed) finds the states due without a scan, at about 100
bytes a state (the tail is the entries' own string); a state whose tail changed since
is found through a key -> tail map made from the poll's tails, only when one is due.
The heap is kept only while the active timeout is on.  Measured on the 200,000-state
table: 278 B a state off, ~100 B more for the heap, ~230 B more for a state once
exported (its key string, its EXPORTED bytes, the dict slot).  The next span
starts one second after the poll that exported, so spans never overlap; a span with no
byte gained makes no record, and a state whose due poll found nothing new is exported
at the first later poll that sees it change.

Time is a parameter: `poll` is seconds since the firewall booted (kernel uptime).
"""

from __future__ import annotations

import bisect
import heapq
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, filterfalse

from pflowbsd import flows
from pflowbsd.flows import Entry
from pflowbsd.pf import snapshot
from pflowbsd.pf import states as pfstates
from pflowbsd.pf.counters import read_change
from pflowbsd.pf.grammar import FastRecord
from pflowbsd.pf.record import State, build_into, check_addresses
from pflowbsd.pf.timeouts import DEFAULTS, Policy

TAIL, KEY = snapshot.TRACK_TAIL, snapshot.TRACK_KEY
# What an active-timeout export left behind, per state key: the next span's First
# (uptime seconds), then the counters exported so far: packets[0], packets[1],
# bytes[0], bytes[1].
EXPORTED = struct.Struct("<qQQQQ")
NO_IF = (0, 0)  # if_index in, out: no interface table
# A poll with more than this share of its records new or changed reads them all with the
# bulk scanner (pf.snapshot.fresh_states) rather than finding each one.
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


class Tracker:
    """Pure: feed it `pfctl -ss -vv` text and the uptime of the poll.

    `entries` maps each known state's TAIL text to its packed entry (None when the
    state is tracked but not selected), so a poll that changes nothing is one
    findall() and two set differences, all in C.
    """

    def __init__(self, policy: Policy | None = None,
                 select: Callable[[State], bool] | None = None,
                 active_timeout: int = 0) -> None:
        self.policy = policy or Policy(timeouts=dict(DEFAULTS))
        self.select: Callable[[State], bool] = select or (lambda st: bool(st.pflow))
        self.entries: dict[str, Entry | None] = {}
        # The rule of each selected state whose rule has timeouts of its own, kept from
        # first sight: an OpenBSD reload takes `rule N` away, not the rule's timeouts.
        self.rules: dict[str, object] = {}
        self.ifaces: dict[str, int] = {}  # interface name -> if_index (the host's table)
        self.active_timeout = active_timeout
        self.exported: dict[str, bytes] = {}  # key -> EXPORTED
        self._due: list[tuple[int, str]] = []  # (uptime due, tail), a heap (active only)
        self._overdue: set[str] = set()  # tails of states due with nothing gained yet
        self.stats = dict(polls=0, partial=0, parse_errors=0, new=0, changed=0,
                          expired=0, exported=0, restarted=0, active_exports=0)
        # What changed since take_changes(): tails whose entry was set or removed, and
        # keys whose `exported` record was, so a state file can be written as a delta.
        # Kept only once take_changes() has been called: with no state file, nothing.
        self.touched: set[str] = _NOWHERE
        self.touched_exported: set[str] = _NOWHERE

    def __len__(self) -> int:
        return len(self.entries)

    def update(self, text: str | Iterable[str], poll: float,
               complete: bool | Callable[[Update], bool] = True,
               states_hint: int | None = None) -> Update:
        """One snapshot: the whole text, or its chunks as they arrive, each cut before a
        state line (pf.snapshot.record_chunks).  `complete` may be a function of the Update
        so far, asked once the chunks are all in (did the run end well; is the count of
        records near pf's own).  A chunk's new
        states are read at once when the tracker was empty and the table's size is known
        (the whole text, or `states_hint`: pf's `current entries`, which adaptive
        timeouts scale by); otherwise the records to read wait for the last chunk, since
        a record with a known key can be told changed only once every tail is in."""
        chunks = (text,) if isinstance(text, str) else text
        up = Update()
        cur: set[str] = set()
        at_once = not self.entries and (isinstance(text, str) or states_hint is not None)
        waiting: list[tuple[str, str, int]] = []  # (tail, record text, its line)
        # the one text's tails, fresh tails (and where they are, if known)
        whole: tuple[list[str], list[str], list[int] | None] = ([], [], None)
        line = 1  # of the chunk's first line
        seen = 0  # tails
        last = ""
        blank = True
        for chunk in chunks:
            if not chunk:
                continue
            last = chunk
            nlines, heads = snapshot.layout(chunk)
            if at_once:
                tails, offsets = snapshot.tails(chunk), None
            else:  # the unknown ones come with where they are: no search for them
                tails, known_not, offsets = snapshot.tails_fresh(chunk, self.entries)
            mine = set(tails)
            seen += len(mine)
            if at_once:  # every tail seen is kept as an entry's key: no set of them all
                new = mine.difference(self.entries)  # (dict: a lookup per tail, not a pass over it)
                cur, before = mine, len(mine) - len(new)  # a tail of an earlier chunk again
            else:
                new = None
                before = len(cur)
                if cur:
                    cur |= mine
                else:
                    cur = mine  # the first chunk (the only one of a whole text): no copy
            if len(cur) - before == len(tails) == heads and chunk.endswith("\n"):
                up.states += len(tails)
                if new is None:
                    fresh = known_not
                else:  # in text order, filtered at C speed
                    fresh = list(filter(new.__contains__, tails)) if new else []
                if blank and (tails or chunk.strip()):
                    blank = False
            else:
                blank = blank and not chunk.strip()
                if blank:
                    continue
                fresh = self._slow(chunk, tails, cur, before, up, line)
                offsets = None
            if at_once:
                nstates = len(tails) if isinstance(text, str) else states_hint or 0
                self._now(chunk, tails, fresh, line, {}, poll, up, nstates)
            elif isinstance(text, str):
                whole = (tails, fresh, offsets)  # read in place, below
            elif fresh:
                at, at_line = 0, line  # counted on from the last record, not from 0
                for t, start, end in snapshot.spans(chunk, fresh, offsets=offsets):
                    at_line += chunk.count("\n", at, start)
                    at = start
                    waiting.append((t, chunk[start:end], at_line))
            line += nlines
        up.blank = blank
        ok = complete(up) if callable(complete) else complete
        if not ok or (last and not last.endswith("\n")):
            up.partial = True
        if not blank and not seen:
            up.partial = True  # text, and not one record in it
        if at_once:
            old = {}  # the tracker was empty: nothing can have gone
        elif waiting or whole[1] or len(cur) != len(self.entries):
            old = {t[-KEY:]: t for t in filterfalse(cur.__contains__, self.entries)}
        else:
            old = {}  # nothing new and nothing missing: the usual quiet poll
        if whole[1]:
            assert isinstance(text, str)
            self._now(text, whole[0], whole[1], 1, old, poll, up, up.states, offsets=whole[2])
        elif waiting:
            tails = [t for t, _r, _l in waiting]
            starts = list(accumulate((len(r) for _t, r, _l in waiting), initial=0))
            self._now("".join(r for _t, r, _l in waiting), tails, tails, 0, old, poll, up,
                      up.states, lines=(starts, [n for _t, _r, n in waiting]))
        self.stats["polls"] += 1
        self.stats["parse_errors"] += len(up.errors)
        if up.partial:
            self.stats["partial"] += 1
        else:
            for t in old.values():
                up.gone += 1
                entry = self.entries.pop(t)
                self.touched.add(t)
                self.rules.pop(t[-KEY:], None)
                if entry is not None:
                    if self._overdue:
                        self._overdue.discard(t)
                    rest = self._rest(t[-KEY:], entry, poll)
                    if rest is not None:
                        up.expired.append(rest)
            if self.active_timeout:
                self._active_exports(poll, up, self.entries.keys() if at_once else cur)
        self.stats["new"] += up.new
        self.stats["changed"] += up.changed
        self.stats["expired"] += up.gone
        self.stats["exported"] += len(up.expired)
        return up

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
        line_of = _line_numbers(text, line, lines)
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
        entries = self.entries
        build: list[tuple[str, FastRecord | None, int, int]] = []
        if not old and todo and len(todo[0]) == 2:  # the bulk scanner's, and all new
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
            if prev is not None and rec is not None and self._counters(t, prev, rec, poll, nstates):
                del old[key]
                up.changed += 1
                continue
            build.append((t, rec, start, end))
        if not old:  # every record new: the first poll's loop, kept tight
            admit, added = self._admit, []
            for t, st, start in self._built(text, build, up, line_of):
                if st is None:
                    continue
                try:
                    entries[t] = admit(t, st, poll, nstates)
                except ValueError as e:
                    self._bad(text, t, start, e, up, line_of)
                    continue
                added.append(t)
            up.new += len(added)
            self.touched.update(added)
            return
        for t, st, start in self._built(text, build, up, line_of):
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
                self._bad(text, t, start, e, up, line_of)
                old.pop(key, None)   # skipped, counted, and treated as present:
            except _Skipped:         # it neither expires nor blocks other expiries
                old.pop(key, None)

    @staticmethod
    def _bad(text: str, t: str, start: int, e: ValueError, up: Update,
             line_of: Callable[[int], int]) -> None:
        """The ParseError of a record built but refused (an address)."""
        if start < 0:
            start = snapshot.record_at(text, text.find(t))[0]
        up.errors.append(pfstates.ParseError(line_of(start), text[start:text.find("\n", start)],
                                             str(e)))

    @staticmethod
    def _built(text: str, todo: list[tuple[str, FastRecord | None, int, int]], up: Update,
               line_of: Callable[[int], int]) -> Iterator[tuple[str, State | None, int]]:
        """(tail, State, start or -1) per record, its addresses left to pack_entry() (or
        check_addresses()) to check; State None for a record that failed (its ParseError
        is in up.errors).  Records the fast scanner took are built in one batch; the
        others, or a batch that fails, record by record."""
        fast = [r for _t, r, _s, _e in todo if r is not None]
        states: list[State] = []
        if len(fast) == len(todo):
            try:
                build_into(fast, 0, 3, states.append)
            except (ValueError, KeyError):
                states = []
        if len(states) == len(todo):
            for (t, _r, start, _e), st in zip(todo, states, strict=True):
                yield t, st, start
            return
        for t, _r, start, end in todo:
            if start < 0:
                start, end = snapshot.record_at(text, text.find(t))
            try:
                yield t, pfstates.parse_record(text, start, end), start
            except ValueError as e:
                up.errors.append(pfstates.ParseError(line_of(start), text[start:end].split("\n")[0],
                                                     str(e)))
                yield t, None, start

    def _counters(self, t: str, prev: str, rec: FastRecord, poll: float, nstates: int) -> bool:
        """A selected state's new counters, from its record's counter fields: False when
        the record must be read in full (unusual text, counters gone down, another key)."""
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
        rule = self.rules.get(t[-KEY:]) if st.rule is None else None
        last, _known = self.policy.last_packet(st, poll, nstates, rule)
        try:
            entry = flows.with_update(old, int(last), (p0, p1, b0, b1))
        except struct.error:
            return False  # past 64 bits: the full parse refuses it, with a reason
        del self.entries[prev]
        self.entries[t] = entry
        self.touched.update((t, prev))
        if self._overdue and prev in self._overdue:
            self._overdue.discard(prev)
            heapq.heappush(self._due, (0, t))
        return True

    def _slow(self, text: str, tails: list[str], cur: set[str], before: int, up: Update,
              line: int) -> list[str]:
        """A chunk the counts do not vouch for.  The validating scan names what is wrong
        (logged and counted); the snapshot is still whole, and may expire states, when
        every state line in it came with its counters and id, i.e. only lines that are
        not states were skipped.  Otherwise it updates what it can and expires nothing.
        Returns the chunk's fresh tails, in order; `cur` ends up holding its tails."""
        sc = pfstates.scan(text)
        up.errors += [e._replace(line=e.line + line - 1) for e in sc.errors]
        up.states += len(sc.records)
        distinct = set(tails)
        if (sc.truncated or not text.endswith("\n") or len(tails) != snapshot.state_lines(text)
                or len(distinct) != len(tails) or len(cur) - before != len(tails)):
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
        rule = self.rules.get(t[-KEY:]) if st.rule is None else None
        last, _known = self.policy.last_packet(st, poll, nstates, rule)
        ifidx = flows.if_indexes(st, self.ifaces) if self.ifaces else NO_IF
        entry = flows.pack_entry(st, first, int(last), ifidx)
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
        if self._overdue and prev in self._overdue:
            self._overdue.discard(prev)
            heapq.heappush(self._due, (0, t))

    def _admit(self, t: str, st: State, poll: float, nstates: int) -> Entry | None:
        """A new state's entry (None: not selected); ValueError, and nothing kept, if
        one of its addresses is not one pf prints."""
        if not self.select(st):
            check_addresses(st)
            return None
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

    def set_active_timeout(self, secs: int) -> None:
        """Turn the active timeout on, off or to another value (SIGHUP): the states
        tracked so far are scheduled from their creation or last export."""
        self.active_timeout = secs
        self._due, self._overdue = [], set()
        if not secs:
            return
        for t, entry in self.entries.items():
            if entry is not None:
                done = self.exported.get(t[-KEY:])
                first = EXPORTED.unpack(done)[0] if done else flows.entry_times(entry)[0]
                self._due.append((first + secs, t))
        heapq.heapify(self._due)

    def snapshot(self) -> tuple[dict[str, Entry | None], dict[str, bytes]]:
        """What a state file keeps (pflowbsd.statefile): the tracked states and the
        active timeout's side table.  The live tables: encode them before the next poll."""
        return self.entries, self.exported

    def take_changes(self) -> tuple[set[str], set[str]]:
        """The tails whose entry was set or removed and the keys whose `exported` record
        was set or removed since the last call (or restore()); the sets start again.
        The first call (changes were not kept before it) gives every tail and key."""
        if self.touched is _NOWHERE:
            out = set(self.entries), set(self.exported)
        else:
            out = self.touched, self.touched_exported
        self.touched, self.touched_exported = set(), set()
        return out

    def restore(self, entries: dict[str, Entry | None], exported: dict[str, bytes]) -> None:
        """A restart: the states known before it.  The active timeout's schedule is made
        again from them; rules with timeouts of their own are looked up again."""
        self.entries, self.exported, self.rules = dict(entries), dict(exported), {}
        if self.touched is not _NOWHERE:
            self.touched, self.touched_exported = set(), set()
        self.set_active_timeout(self.active_timeout)

    def expire_all(self, at: int) -> list[Entry]:
        """`pflowbsd ctl expire-all` at uptime `at`: each selected state's span of what
        it has not exported yet (all of it, or since its last active-timeout span), Last
        up to `at`.  The states stay tracked; what was exported goes into `exported`
        (and so into the next state file delta), so at removal only the rest goes."""
        spans = []
        for tail, entry in self.entries.items():
            if entry is None:
                continue
            key = tail[-KEY:]
            done = self.exported.get(key)
            current = flows.entry_counters(entry)
            if done is None:
                first, counts = flows.entry_times(entry)[0], (0, 0, 0, 0)
            else:
                first, *rest = EXPORTED.unpack(done)
                counts = (rest[0], rest[1], rest[2], rest[3])
            p0, p1, b0, b1 = (c - d for c, d in zip(current, counts, strict=True))
            if not b0 and not b1:
                continue
            last = flows.entry_times(entry)[1]
            spans.append(flows.with_span(entry, first, min(max(last, first), at),
                                         (p0, p1, b0, b1)))
            self.exported[key] = EXPORTED.pack(at + 1, *current)
            self.touched_exported.add(key)
        if self.active_timeout:  # each state's next span is due from its new start
            self.set_active_timeout(self.active_timeout)
        return spans

    def _rest(self, key: str, entry: Entry, seen_gone: float) -> Entry | None:
        """What a state that is gone still has to export: all of it, or with the active
        timeout what it gained since its last export (None: nothing)."""
        done = self.exported.pop(key, None) if self.exported else None
        if done is not None:
            self.touched_exported.add(key)
        if done is None:
            return self._final(entry, seen_gone)
        first, *counts = EXPORTED.unpack(done)
        p0, p1, b0, b1 = (c - d for c, d in zip(flows.entry_counters(entry), counts, strict=True))
        if not b0 and not b1:
            return None
        last = flows.entry_times(entry)[1]
        return flows.with_span(entry, first, min(max(last, first), int(seen_gone)),
                               (p0, p1, b0, b1))

    def _active_exports(self, poll: float, up: Update, tails: Iterable[str]) -> None:
        """The states whose span reached active_timeout: each exports what it gained."""
        now, heap, seen = int(poll), self._due, set()
        tail_of: dict[str, str] | None = None  # key -> this poll's tail, made if needed
        while heap and heap[0][0] <= now:
            t = heapq.heappop(heap)[1]
            key = t[-KEY:]
            if key in seen:
                continue
            seen.add(key)
            if t not in self.entries:  # its counters moved since: its tail is another
                if tail_of is None:
                    tail_of = {x[-KEY:]: x for x in tails}
                t = tail_of.get(key, "")
            entry = self.entries.get(t)
            if entry is None:
                continue  # gone, or tracked and not selected
            done = self.exported.get(key)
            if done is None:
                first, counts = flows.entry_times(entry)[0], (0, 0, 0, 0)
            else:
                first, *rest = EXPORTED.unpack(done)
                counts = tuple(rest)
            if first + self.active_timeout > now:
                continue  # a stale heap item: the state's real due is still in the heap
            current = flows.entry_counters(entry)
            p0, p1, b0, b1 = (c - d for c, d in zip(current, counts, strict=True))
            if not b0 and not b1:
                self._overdue.add(t)  # the tail: shared with `entries`, no new string
                continue
            last = flows.entry_times(entry)[1]
            up.active.append(flows.with_span(entry, first, min(max(last, first), now),
                                             (p0, p1, b0, b1)))
            self.exported[key] = EXPORTED.pack(now + 1, *current)
            self.touched_exported.add(key)
            heapq.heappush(heap, (now + 1 + self.active_timeout, t))
        self.stats["active_exports"] += len(up.active)

    @staticmethod
    def _final(entry: Entry, seen_gone: float) -> Entry:
        """Clamp Last into [First, the poll that saw the state gone]."""
        first, last = flows.entry_times(entry)
        return flows.with_times(entry, first, min(max(last, first), int(seen_gone)))


def _line_numbers(text: str, line: int, lines: tuple[list[int], list[int]] | None
                  ) -> Callable[[int], int]:
    """offset -> line number in the snapshot, for an error's message: counted from
    `line` at the text's start, or (records joined one after another) the line of the
    record the offset lies in, from (their starts, their lines)."""
    if lines is None:
        return lambda at: line + text.count("\n", 0, at)
    starts, numbers = lines
    return lambda at: numbers[max(0, bisect.bisect_right(starts, at) - 1)]


class _Skipped(Exception):
    """A record that could not be read (its ParseError is already counted)."""


class _Nowhere(set[str]):
    """A set that keeps nothing: Tracker.touched until someone takes the changes."""

    def add(self, _item: str) -> None:
        pass

    def update(self, *_items: Iterable[str]) -> None:
        pass


_NOWHERE = _Nowhere()
