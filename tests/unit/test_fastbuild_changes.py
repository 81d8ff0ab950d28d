"""_fastbuild.changes(): Sightings._read()'s loop over changed states, in C.

The reference is that loop written out in Python over _fastbuild.change() (whose own
tests are test_fastbuild.py's): for each (tail, record) pair, a known key whose entry is
bytes, with a rule number or no kept rule, and whose change() is an entry, is updated in
place (old tail out, new tail in, both touched); every other pair is left, in order.
The pairs: a golden table's records a poll later (a third with new counters, a tenth
gone), among new states, states not selected, kept rules and records with no rule
number, with the Lasts known or not.
"""

from __future__ import annotations

import re
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
              touched: set[str] | None) -> tuple[list[Any], int]:
    rest, n = [], 0
    for item in todo:
        t, rec = item
        key = t[-KEY:]
        prev = old.get(key)
        if (prev is None or type(entries.get(prev)) is not bytes
                or (not rec[F_RULE] and key in rules)):
            rest.append(item)
            continue
        new = record._fastbuild.change(rec, entries[prev], lasts)
        if type(new) is not bytes:
            rest.append(item)
            continue
        del entries[prev], old[key]
        entries[t] = new
        if touched is not None:
            touched.update((t, prev))
        n += 1
    return rest, n


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
    assert got[1] == want[1] and [p is q for p, q in zip(got[0], want[0])] == [True] * len(want[0])
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
    assert c(list(junk), {}, {}, {}, {}, None) == (junk, 0)


def test_changes_is_taken_only_with_the_packer() -> None:
    builder()
    assert flows.changes_c is record._fastbuild.changes


def test_keys_are_the_tails_last_36() -> None:
    assert KEY == 36 and re.search(r"#define KEY_LEN 36\b",
                                   open(record.__file__.replace("record.py", "_fastbuild.c")).read())
