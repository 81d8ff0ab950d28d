"""_fastbuild.changes() and gone(): the tracker's loops over changed and gone states, in C.

The reference is that loop written out in Python over _fastbuild.change() (whose own
tests are test_fastbuild.py's): for each (tail, record) pair, a known key whose entry is
bytes, with a rule number or no kept rule, and whose change() is an entry, is updated in
place (old tail out, new tail in, both touched); every other pair is left, in order.
The pairs: a golden table's records a poll later (a third with new counters, a tenth
gone), among new states, states not selected, kept rules and records with no rule
number, with the Lasts known or not.  gone() against Tracker.update's loop over the
states a poll saw gone (Last clamped into [First, the poll]), with kept rules,
active-timeout spans and overdue states among them.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from pflowbsd import flows
from pflowbsd.pf import fastscan, record, snapshot
from tests.unit.test_fastbuild import builder
from tests.unit.test_tracker_paths import golden_polls

KEY = snapshot.TRACK_KEY
F_RULE = 28  # grammar.FAST_FIELDS "rule"


def reference(todo: list[Any], old: dict[str, str], entries: dict[str, Any],
              rules: dict[str, object], lasts: dict[tuple[Any, ...], int],
              touched: set[str] | None) -> tuple[list[Any], int, int]:
    rest, n, known = [], 0, 0
    for item in todo:
        t, rec = item
        key = t[-KEY:]
        prev = old.get(key)
        known += prev is not None
        if (prev is None or type(entries.get(prev)) is not bytes
                or (not rec[F_RULE] and key in rules)):
            rest.append(item)
            continue
        new = record._fastbuild.change(rec, entries[prev], lasts)
        if type(new) is not bytes:
            rest.append(item)
            continue
        known -= 1
        del entries[prev], old[key]
        entries[t] = new
        if touched is not None:
            touched.update((t, prev))
        n += 1
    return rest, n, known


def setting() -> tuple[list[Any], dict[str, str], dict[str, Any]]:
    """A poll's (tail, record) pairs, `old` and the entries before it."""
    from pflowbsd.tracker import Tracker
    (a, up), (b, _up), _ = golden_polls(same_expiry=True)
    t = Tracker(select=lambda st: True)
    t.update(a, up)
    tails = fastscan.tails_regex(b)
    fresh = [x for x in tails if x not in t.entries]
    todo = [p for chunk in snapshot.fresh_records(b, tails, set(fresh)) for p in chunk]
    assert len(todo) == len(fresh) > 100 and all(len(p) == 2 for p in todo)
    # new states among them: another id
    for i in range(0, len(todo), 17):
        tail, rec = todo[i]
        tail = tail[:-KEY] + "f" + tail[-KEY + 1:]
        todo[i] = (tail, rec)
    entries = dict(t.entries)
    old = {x[-KEY:]: x for x in entries}
    return todo, old, entries


def same(todo: list[Any], old: dict[str, str], entries: dict[str, Any],
         rules: dict[str, object], lasts: dict[tuple[Any, ...], int], keep: bool) -> int:
    """Assert C == reference (each given its own copies); the states updated."""
    o_c, o_py, e_c, e_py = dict(old), dict(old), dict(entries), dict(entries)
    t_c: set[str] | None = set() if keep else None
    t_py: set[str] | None = set() if keep else None
    got = record._fastbuild.changes(list(todo), o_c, e_c, rules, lasts, t_c)
    want = reference(list(todo), o_py, e_py, rules, lasts, t_py)
    assert got[1:] == want[1:] and [p is q for p, q in zip(got[0], want[0])] == [True] * len(want[0])
    assert len(got[0]) == len(want[0])
    assert o_c == o_py and e_c == e_py and list(e_c) == list(e_py) and t_c == t_py
    return want[1]


@pytest.mark.parametrize("keep", [False, True])
def test_changes_golden(keep: bool) -> None:
    builder()
    todo, old, entries = setting()
    lasts: dict[tuple[Any, ...], int] = {}
    assert same(todo, old, entries, {}, lasts, keep) == 0  # no Last known: all left
    for (t, rec) in todo:  # every Last known (any value: change() only stores it)
        prev = old.get(t[-KEY:])
        if prev is not None and type(entries[prev]) is bytes:
            k = record._fastbuild.change(rec, entries[prev], lasts)
            if type(k) is tuple:
                lasts[k] = 12345
    n = same(todo, old, entries, {}, lasts, keep)
    assert n > 100
    # kept rules: a state with no rule number whose kept rule decides Last is left
    norule = [(t, tuple("" if i == F_RULE else f for i, f in enumerate(rec))) for t, rec in todo]
    rules = {t[-KEY:]: object() for t, _r in todo[::2]}
    m = same(norule, old, entries, rules, lasts, keep)
    # a rule number: not the kept rule's (only those printed with none are left)
    assert m < same(todo, old, entries, rules, lasts, keep) < n
    # not selected: left to Python
    unselected = {k: (None if i % 3 == 0 else v) for i, (k, v) in enumerate(entries.items())}
    assert same(todo, old, unselected, {}, lasts, keep) < n


def test_changes_bad_arguments() -> None:
    builder()
    c = record._fastbuild.changes
    for bad in (((), {}, {}, {}, {}, None), ([], [], {}, {}, {}, None),
                ([], {}, {}, {}, {}, []), ([], {}, {}, {}, {}, frozenset())):
        with pytest.raises(TypeError):
            c(*bad)
    with pytest.raises(TypeError):
        c([], {}, {}, {}, {})
    junk = [1, ("t",), ("t", "rec"), ("t" * 40, (1, 2)), (b"t", ())]
    assert c(list(junk), {}, {}, {}, {}, None) == (junk, 0, len(junk))  # Python's to judge


def test_changes_is_taken_only_with_the_packer() -> None:
    builder()
    assert flows.changes_c is record._fastbuild.changes


def test_keys_are_the_tails_track_key() -> None:
    """Both extensions cut a state's key as grammar.TRACK_KEY says."""
    builder()
    assert record._fastbuild.TRACK_KEY == KEY
    if fastscan.ACCELERATED:
        assert fastscan._fastscan.TRACK_KEY == KEY and fastscan._fastscan.RESYNC == fastscan.RESYNC


# ---- gone(): the tracker's loop over the states a poll saw gone ---------------------------

def gone_reference(tails: list[str], entries: dict[str, Any], rules: dict[str, object],
                   exported: dict[str, bytes], overdue: set[str], touched: set[str] | None,
                   seen_gone: float) -> tuple[list[Any], int]:
    """Tracker.update's Python loop, _rest() left as (key, entry) where `exported`
    holds the key."""
    out: list[Any] = []
    left = 0
    for t in tails:
        entry = entries.pop(t)
        if touched is not None:
            touched.add(t)
        rules.pop(t[-KEY:], None)
        if entry is None:
            continue
        overdue.discard(t)
        if t[-KEY:] in exported:
            out.append((t[-KEY:], entry))
            left += 1
            continue
        first, last = flows.entry_times(entry)
        out.append(flows.with_times(entry, first, min(max(last, first), int(seen_gone))))
    return out, left


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("seen_gone", [0.0, 1000.5, 1e6, 4e9])
def test_gone_golden(keep: bool, seen_gone: float) -> None:
    """A golden table's entries, a third gone, some not selected, some with kept rules,
    an active-timeout span or overdue: C == the loop, Last clamped to the poll."""
    builder()
    _todo, _old, entries = setting()
    for i, k in enumerate(list(entries)[::7]):
        entries[k] = None if i % 2 else entries[k]
    tails = list(entries)[::3]
    rules = {t[-KEY:]: object() for t in tails[::4]} | {"x" * KEY: object()}
    exported = {t[-KEY:]: b"span" for t in tails[1::9]} | {"y" * KEY: b"span"}
    overdue = set(tails[2::5]) | {"z"}
    got_sides = dict(entries), dict(rules), set(overdue), set() if keep else None
    want_sides = dict(entries), dict(rules), set(overdue), set() if keep else None
    got = record._fastbuild.gone(list(tails), got_sides[0], got_sides[1], exported,
                                 got_sides[2], got_sides[3], seen_gone)
    want = gone_reference(list(tails), want_sides[0], want_sides[1], exported,
                          want_sides[2], want_sides[3], seen_gone)
    assert got == want and got_sides == want_sides
    assert got[1] > 0 and len(got[0]) > 100
    # a poll earlier than their Last: Last is the poll's
    lasts = [flows.entry_times(a)[1] for a in got[0] if type(a) is bytes]
    assert (int(seen_gone) in lasts) == (seen_gone < 1e5), (seen_gone, lasts[:5])


def test_gone_clamps_last_both_ways() -> None:
    builder()
    _todo, _old, entries = setting()
    t, e = next((t, e) for t, e in entries.items() if e is not None)
    first, _last = flows.entry_times(e)
    for last, seen in ((first - 5, first + 100.0), (first + 50, first + 10.9),
                       (first + 5, first + 10.0), (first + 5, first - 3.5)):
        want = min(max(last, first), int(seen))  # int(): toward 0, as Tracker._final
        entry = flows.with_times(e, first, last)
        (out,), left = record._fastbuild.gone([t], {t: entry}, {}, {}, set(), None, seen)
        assert left == 0 and flows.entry_times(out) == (first, want)
        assert (out is entry) == (want == last)  # unchanged: the same bytes, not a copy


def test_gone_bad_arguments() -> None:
    builder()
    g = record._fastbuild.gone
    for bad in (((), {}, {}, {}, set(), None, 1.0), ([], {}, {}, {}, [], None, 1.0),
                ([], {}, {}, {}, set(), [], 1.0), ([], {}, {}, {}, set(), None, 1),
                ([], {}, {}, {}, frozenset(), None, 1.0)):
        with pytest.raises(TypeError):
            g(*bad)
    with pytest.raises(ValueError):
        g([], {}, {}, {}, set(), None, float("nan"))
    with pytest.raises(KeyError):
        g(["not tracked"], {}, {}, {}, set(), None, 1.0)
    entries: dict[str, Any] = {"t" * 40: b"short"}  # not the tracker's: _rest() decides
    assert g(["t" * 40], entries, {}, {}, set(), None, 1.0) == ([("t" * KEY, b"short")], 1)
    assert entries == {}


def test_keys_of_is_the_tracker_s_old_map() -> None:
    """keys_of(): {tail[-TRACK_KEY:]: tail} of a dict's tails, each value the tail itself;
    a tail shorter than a key is its own key, as the slice makes it."""
    builder()
    _todo, old, entries = setting()
    unseen = dict(entries) | {"short": None}
    got = record._fastbuild.keys_of(unseen)
    assert got == {t[-KEY:]: t for t in unseen} and got["short"] == "short"
    assert all(got[t[-KEY:]] is t for t in unseen)
    assert flows.keys_c is record._fastbuild.keys_of
    probe = next(iter(unseen))
    before = sys.getrefcount(probe)
    for _ in range(20):
        record._fastbuild.keys_of(unseen)  # made and dropped: no reference left behind
    assert sys.getrefcount(probe) == before
    for bad in ([], {1: None}):
        with pytest.raises(TypeError):
            record._fastbuild.keys_of(bad)
