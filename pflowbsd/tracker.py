"""Tracker: snapshots of the state table in, expired states out, as packed entries.

Strategy.  States are keyed by (creatorid, id).  Every poll the table is scanned, not
parsed: for a state already known only its counter text (pf.snapshot.TRACK_TAIL,
which ends with its key) is looked for among the last poll's, by one C pass per chunk
(pf.snapshot.sight) that takes each tail it finds out of a copy of the entries, so
that what is left at the end is what has gone.  A record is parsed fully only when it
is new or changed.  What a selected state needs at
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
The heap is kept only while the active timeout is on.  Measured: off, 295-299 B a
state at 1,000,000 states (bench/poll.py: the tail, the entry, the dict slot, the hint);
on, ~100 B more for the heap and ~230 B more for a state once exported (its key string,
its EXPORTED bytes, the dict slot), on the 200,000-state table.  The next span
starts one second after the poll that exported, so spans never overlap; a span with no
byte gained makes no record, and a state whose due poll found nothing new is exported
at the first later poll that sees it change.

How the records of new and changed tails are read is sightings.py's (the Tracker's
reading half); this module keeps the tables: update() over a snapshot's chunks,
expiry, the active timeout, the state file's snapshot and changes.

Time is a parameter: `poll` is seconds since the firewall booted (kernel uptime).
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Callable, Iterable
from itertools import accumulate

from pflowbsd import flows, sightings
from pflowbsd.flows import Entry
from pflowbsd.pf import snapshot
from pflowbsd.pf.record import State
from pflowbsd.pf.timeouts import DEFAULTS, Policy
from pflowbsd.sightings import Sightings, Update

__all__ = ["EXPORTED", "KEY", "Tracker", "Update"]

KEY = snapshot.TRACK_KEY
# What an active-timeout export left behind, per state key: the next span's First
# (uptime seconds), then the counters exported so far: packets[0], packets[1],
# bytes[0], bytes[1].
EXPORTED = struct.Struct("<qQQQQ")


class Tracker(Sightings):
    """Pure: feed it `pfctl -ss -vv` text and the uptime of the poll.

    `entries` maps each known state's tail (pf.snapshot.TRACK_TAIL's text) to its packed
    entry (None when the state is tracked but not selected), so a poll that changes
    nothing is one scan for the tails and one dict deletion per state, all in C; each
    tail is the str the last poll kept where it is the one expected next (`_order`,
    sight()'s hint), so the dict finds it by identity with its hash known.
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
        self._lasts: dict[int, dict[tuple[object, ...], int]] = {}  # this poll's (sightings)
        # The last poll's tails in text order, the entries' own str: the next poll's
        # sight() takes each tail equal to the one expected for that str (a hint only)
        self._order: list[str] = []
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
        state line (pf.snapshot.record_chunks).  `complete` may be a function of the
        Update so far, asked once the chunks are all in (did the run end well; is the
        count of records near pf's own).  A chunk's new states are read at once when the
        tracker was empty and the table's size is known (the whole text, or
        `states_hint`: pf's `current entries`, which adaptive timeouts scale by);
        otherwise the records to read wait for the last chunk, since a record with a
        known key can be told changed only once every tail is in: a chunk mostly fresh
        is kept whole (for the bulk scanner), of the others only the fresh records."""
        chunks = (text,) if isinstance(text, str) else text
        up = Update()
        self._lasts = {}  # Lasts worked out hold for one poll, one policy
        at_once = not self.entries and (isinstance(text, str) or states_hint is not None)
        waiting: list[tuple[str, str, int]] = []  # (tail, record text, its line)
        # chunks whose fresh records are read in place once every tail is in: the whole
        # text, or a chunk mostly fresh (for the bulk scanner)
        kept: list[tuple[str, list[str], list[str], list[int] | None, int]] = []
        # the states not yet seen this poll: what is left at the end has gone
        unseen = dict(self.entries)
        hint = [self._order, 0] if self._order else None
        order: list[str] = []  # this poll's tails: the next one's hint
        sighted: set[str] = set()  # the fresh tails seen so far (at_once: in this chunk)
        line = 1  # of the chunk's first line
        seen = 0  # tails
        last = ""
        blank = True
        for chunk in chunks:
            if not chunk:
                continue
            last = chunk
            if at_once:  # an earlier chunk's fresh tails are entries' keys by now
                sighted = set()
            # the tails, and those not known, in order, with where they are
            tails, fresh, found, fresh_lines, repeats, nlines, heads = snapshot.sight(
                chunk, self.entries, unseen, sighted, hint)
            order += tails
            offsets: list[int] | None = found
            seen += len(tails)
            if not repeats and len(tails) == heads and chunk.endswith("\n"):
                up.states += len(tails)
                if blank and (tails or chunk.strip()):
                    blank = False
            else:
                blank = blank and not chunk.strip()
                if blank:
                    continue
                fresh = self._slow(chunk, tails, repeats, up, line)
                offsets = None
            if at_once:
                nstates = len(tails) if isinstance(text, str) else states_hint or 0
                self._now(chunk, tails, fresh, line, {}, poll, up, nstates)
            elif fresh and (isinstance(text, str) or len(fresh) > sightings.BULK_SHARE * len(tails)):
                kept.append((chunk, tails, fresh, offsets, line))  # read in place, below
            elif fresh:
                waiting += _records(chunk, fresh, offsets, fresh_lines, line)
            line += nlines
        up.blank = blank
        self._order = order
        ok = complete(up) if callable(complete) else complete
        if not ok or (last and not last.endswith("\n")):
            up.partial = True
        if not blank and not seen:
            up.partial = True  # text, and not one record in it
        # not seen: gone, or changed (a known key)
        old = flows.keys_c(unseen) if flows.keys_c else {t[-KEY:]: t for t in unseen}
        for body, its_tails, its_fresh, where, first in kept:  # the whole text, busy chunks
            self._now(body, its_tails, its_fresh, first, old, poll, up, up.states, offsets=where)
        if waiting:
            tails = [t for t, _r, _l in waiting]
            starts = list(accumulate((len(r) for _t, r, _l in waiting), initial=0))
            self._now("".join(r for _t, r, _l in waiting), tails, tails, 0, old, poll, up,
                      up.states, lines=(starts, [n for _t, _r, n in waiting]))
        self.stats["polls"] += 1
        self.stats["parse_errors"] += len(up.errors)
        if up.partial:
            self.stats["partial"] += 1
        else:
            self._gone(old, poll, up)
            if self.active_timeout:
                self._active_exports(poll, up, self.entries.keys())
        self.stats["new"] += up.new
        self.stats["changed"] += up.changed
        self.stats["expired"] += up.gone
        self.stats["exported"] += len(up.expired)
        return up

    def _gone(self, old: dict[str, str], poll: float, up: Update) -> None:
        """The states not seen in a whole snapshot: out of the tables, and what each
        still has to export into up.expired (in C where the builder is: the same loop)."""
        up.gone += len(old)
        if flows.gone_c is not None and abs(poll) < 2.0 ** 53:
            out, left = flows.gone_c(list(old.values()), self.entries, self.rules, self.exported,
                                     self._overdue, self._touched_set(), float(poll))
            if left:  # (key, entry): an active-timeout span was sent, _rest() decides
                out = [self._rest(x[0], x[1], poll) if type(x) is tuple else x for x in out]
                out = [x for x in out if x is not None]
            up.expired += out
            return
        for t in old.values():
            entry = self.entries.pop(t)
            self.touched.add(t)
            self.rules.pop(t[-KEY:], None)
            if entry is not None:
                if self._overdue:
                    self._overdue.discard(t)
                rest = self._rest(t[-KEY:], entry, poll)
                if rest is not None:
                    up.expired.append(rest)

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
        self._order = []
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


def _records(chunk: str, fresh: list[str], offsets: list[int] | None, lines: list[int],
             line: int) -> list[tuple[str, str, int]]:
    """(tail, record text, its line) of each fresh tail's record in a chunk whose first
    line is `line`: from the offsets and newline counts sight() gave, or (offsets None,
    a chunk the slow path judged) found and counted here."""
    out = []
    if offsets is not None:
        for (t, start, end), at, n in zip(snapshot.spans(chunk, fresh, offsets=offsets),
                                         offsets, lines, strict=True):
            out.append((t, chunk[start:end], line + n - chunk.count("\n", start, at)))
        return out
    at, at_line = 0, line  # counted on from the last record, not from 0
    for t, start, end in snapshot.spans(chunk, fresh):
        at_line += chunk.count("\n", at, start)
        at = start
        out.append((t, chunk[start:end], at_line))
    return out


class _Nowhere(set[str]):
    """A set that keeps nothing: Tracker.touched until someone takes the changes."""

    def add(self, _item: str) -> None:
        pass

    def update(self, *_items: Iterable[str]) -> None:
        pass


_NOWHERE = _Nowhere()
