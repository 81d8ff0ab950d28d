"""The tracker's fast paths give what its plain path gives.

Four ways through Tracker.update: the record-by-record path with every changed state
parsed in full and every entry packed in Python (the reference), the bulk scanner for
every poll, counters-only updates in Python alone (no flows.change_c), and the default
(bulk when many records are fresh, counters-only updates for changed states, in C where
_fastbuild.change takes them, a first poll's entries packed in C).
Fed the same polls, they must hand out the same expired and active entries, count the
same, touch the same tails (what a state file delta writes), and end holding the same
entries.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from pflowbsd import flows, sightings
from pflowbsd.pf import snapshot
from pflowbsd.sim.simpf import SimPf
from pflowbsd.tracker import Tracker, Update

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures/golden"
COUNTERS = re.compile(r"(\d+):(\d+) pkts, (\d+):(\d+) bytes")


def run(texts: list[tuple[str, float]], mode: str, monkeypatch: pytest.MonkeyPatch,
        active: int = 0) -> tuple[list[tuple[object, ...]], Tracker]:
    with monkeypatch.context() as m:
        if mode == "plain":
            m.setattr(sightings, "BULK_SHARE", 2.0)       # never the bulk scanner
            m.setattr(sightings, "read_change", lambda rec: None)  # always a full parse
            m.setattr(flows, "change_c", None)
            m.setattr(flows, "pack_c", None)  # entries packed in Python, one _admit each
            m.setattr(flows, "admit_c", None)
            m.setattr(flows, "gone_c", None)  # the gone states' loop in Python
        elif mode == "python":
            m.setattr(flows, "change_c", None)  # counters-only updates, in Python
        elif mode == "bulk":
            m.setattr(sightings, "BULK_SHARE", -1.0)      # always the bulk scanner
        t = Tracker(select=lambda st: st.pflow or st.proto != 17, active_timeout=active)
        t.take_changes()  # from here on the tracker keeps what each poll touched
        out = [(*summary(t.update(text, up)), sorted(t.take_changes()[0])) for text, up in texts]
    return out, t


def summary(u: Update) -> tuple[object, ...]:
    return (sorted(u.expired), sorted(u.active), u.new, u.changed, u.gone, u.partial,
            [(e.line, e.reason) for e in u.errors], u.states)


def sim_polls(seed: int, n: int = 30, step: int = 7) -> list[tuple[str, float]]:
    sim = SimPf(seed=seed, rate=4.0)
    out = []
    for _ in range(n):
        out.append((sim.states_text(), float(sim.now - sim.boot)))
        sim.advance(sim.now + step)
    return out


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("active", [0, 30])
def test_every_path_agrees_on_the_simulator(seed: int, active: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    texts = sim_polls(seed)
    ref, t0 = run(texts, "plain", monkeypatch, active)
    assert sum(s[3] for s in ref) > 50 and sum(len(s[0]) for s in ref) > 20  # changed, expired
    for mode in ("bulk", "python", "default"):
        got, t = run(texts, mode, monkeypatch, active)
        assert got == ref, mode
        assert t.entries == t0.entries and t.exported == t0.exported, mode


EXPIRES = re.compile(r"expires in \d+:\d\d:\d\d")


def golden_polls(same_expiry: bool = False) -> list[tuple[str, float]]:
    """A golden table, then the same ten seconds on: a third of the states with more
    traffic, a tenth gone, and one changed to another connection under the same id.
    same_expiry: the states with more traffic show one of a few `expires in` values, as
    on a busy firewall (where the C update's kept Lasts are found), and some show
    counters gone down."""
    with gzip.open(GOLDEN / "openbsd-random-vv.txt.gz", "rt") as f:
        a = f.read()
    recs = re.findall(r"^\S.*\n(?:[ \t].*\n)*", a, re.M)
    b = []
    for i, r in enumerate(recs):
        if i % 10 == 9:
            continue
        if i % 3 == 0:
            r = COUNTERS.sub(lambda m: f"{int(m[1]) + 3}:{int(m[2]) + 2} pkts, "
                             f"{int(m[3]) + 180}:{int(m[4]) + 1460} bytes", r, count=1)
            if same_expiry:
                r = EXPIRES.sub(("expires in 23:59:58", "expires in 00:00:25",
                                 "expires in 00:00:09")[i % 9 // 3], r, count=1)
            if same_expiry and i % 51 == 0:
                r = COUNTERS.sub(lambda m: f"{m[1]}:{m[2]} pkts, 0:{m[4]} bytes", r, count=1)
        if i == 6:
            r = COUNTERS.sub(lambda m: f"{int(m[1]) + 1}:{m[2]} pkts, {int(m[3]) + 1}:{m[4]} bytes",
                             r, count=1)
            head, rest = r.split("\n", 1)
            r = re.sub(r":(\d+) ", lambda m: f":{(int(m[1]) + 1) % 65536} ", head, count=1) + "\n" + rest
        b.append(r)
    return [(a, 1000.0), ("".join(b), 1010.0), ("".join(b[5:]), 1020.0)]


@pytest.mark.parametrize("same_expiry", [False, True])
def test_every_path_agrees_on_a_golden_table(same_expiry: bool,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    texts = golden_polls(same_expiry)
    ref, t0 = run(texts, "plain", monkeypatch)
    assert ref[1][3] > 100 and ref[1][4] > 10  # changed, gone
    for mode in ("bulk", "python", "default"):
        got, t = run(texts, mode, monkeypatch)
        assert got == ref, mode
        assert t.entries == t0.entries, mode


@pytest.mark.parametrize("c", [False, True])
def test_counters_only_update_is_taken_for_changed_states(
        c: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default path really uses the counters-only update, in Python and in C where
    a Last is kept (else the tests above would compare the plain path with itself)."""
    calls: list[str] = []
    real, real_c = sightings.read_change, flows.change_c

    def spy(rec):  # type: ignore[no-untyped-def]
        out = real(rec)
        calls.append("python" if out is not None else "none")
        return out

    def spy_c(rec, entry, lasts):  # type: ignore[no-untyped-def]
        out = real_c(rec, entry, lasts)  # type: ignore[misc]
        if type(out) is bytes:
            calls.append("c")
        return out
    real_all = flows.changes_c

    def spy_all(todo, *rest):  # type: ignore[no-untyped-def]
        left, n, not_new = real_all(todo, *rest)  # type: ignore[misc]
        calls.extend(["c"] * n)
        return left, n, not_new
    monkeypatch.setattr(sightings, "read_change", spy)
    if c and real_c is None:
        pytest.skip("pflowbsd.pf._fastbuild did not build")
    monkeypatch.setattr(flows, "change_c", spy_c if c else None)
    monkeypatch.setattr(flows, "changes_c", spy_all if c else None)
    t = Tracker(select=lambda st: True)
    texts = golden_polls(same_expiry=True)
    t.update(*texts[0])
    u = t.update(*texts[1])
    fast = calls.count("c") + calls.count("python")
    assert u.changed > 100 and fast >= 0.9 * u.changed
    # C takes each record whose Last is kept: of this table's random words and rules,
    # a few dozen (on the simulator, about half of the changed states)
    assert (calls.count("c") >= 25) is c


def test_new_states_are_packed_in_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """A poll admits every new state in C: a batch through _fastbuild.admit_all, the
    states it leaves (a class new to the poll) through admit, each class learnt once
    (else the comparisons above would compare Python with itself)."""
    real, real_all = flows.admit_c, flows.admit_all_c
    if real is None or real_all is None:
        pytest.skip("pflowbsd.pf._fastbuild did not build")
    calls: list[str] = []

    def spy(st, now, poll, known):  # type: ignore[no-untyped-def]
        out = real(st, now, poll, known)
        calls.append(type(out).__name__)
        return out

    def spy_all(tails, states, i, entries, select, now, poll, known, added):  # type: ignore[no-untyped-def]
        before = len(added)
        out = real_all(tails, states, i, entries, select, now, poll, known, added)
        calls.extend(["loop"] * (len(added) - before))
        return out
    monkeypatch.setattr(flows, "admit_c", spy)
    monkeypatch.setattr(flows, "admit_all_c", spy_all)
    monkeypatch.setattr(flows, "pack_entry_py", lambda *a: pytest.fail("not in C"))
    t = Tracker(select=lambda st: True)
    polls = golden_polls()
    u = t.update(polls[2][0], 1000.0)  # of the table, 9 of 10 states, a third changed
    assert u.new == len(t.entries) > 100 and not u.errors
    # each state packed once, most in the loop; a class new to the poll asked for twice
    # (the loop leaves it to _admit_all()'s Python step, then _admit() learns it)
    assert calls.count("bytes") + calls.count("loop") == u.new
    assert calls.count("loop") > u.new // 2 and 0 < calls.count("tuple") < u.new // 2
    calls.clear()
    u = t.update(polls[0][0], 1010.0)  # the whole table: later polls' new states too
    # (and the changed ones whose counters went down: read again as new)
    assert u.new > 10 and calls.count("bytes") + calls.count("loop") >= u.new


def test_a_poll_takes_the_last_polls_tails_again() -> None:
    """A quiet poll's tails are the last poll's str (sight()'s hint), in chunks too, and
    the tracker's keys stay those; a restore starts without a hint."""
    text, poll = golden_polls()[0]
    t = Tracker(select=lambda st: True)
    t.update(text, poll)
    first = t._order
    keys = {id(k) for k in t.entries}
    assert len(first) == len(t.entries) and all(id(k) in keys for k in first)
    t.update(snapshot.record_chunks(blocks(text, 4096)), poll + 10, states_hint=len(first))
    assert len(t._order) == len(first) and all(a is b for a, b in zip(t._order, first))
    assert {id(k) for k in t.entries} == keys
    t.restore(dict(t.entries), {})
    assert t._order == []


def blocks(text: str, size: int) -> list[bytes]:
    data = text.encode()
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 97, 4096, 1 << 20])
def test_record_chunks_cut_before_state_lines_only(size: int) -> None:
    text = golden_polls()[0][0] + "em0 tcp 10.0.0.1:1 -> 10.0.0."  # ends inside a record
    chunks = list(snapshot.record_chunks(blocks(text, size)))
    assert "".join(chunks) == text
    assert all(c.endswith("\n") for c in chunks[:-1])
    assert not any(c.startswith(" ") for c in chunks)


@pytest.mark.parametrize("hint", [None, "exact"])
@pytest.mark.parametrize("size", [300, 1 << 16])
def test_chunks_as_they_arrive_give_what_the_whole_text_gives(
        size: int, hint: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = golden_polls() + sim_polls(4, n=12)
    ref, t0 = run(texts, "default", monkeypatch, 30)
    t = Tracker(select=lambda st: st.pflow or st.proto != 17, active_timeout=30)
    t.take_changes()
    got = []
    for text, up in texts:
        states = text.count("   id: ") if hint else None
        u = t.update(snapshot.record_chunks(blocks(text, size)), up, states_hint=states)
        got.append((*summary(u), sorted(t.take_changes()[0])))
    assert got == ref
    assert t.entries == t0.entries and t.exported == t0.exported


def test_a_stream_that_ended_badly_expires_nothing() -> None:
    text, up = golden_polls()[0]
    t = Tracker(select=lambda st: True)
    t.update(text, up)
    u = t.update(snapshot.record_chunks(blocks(text[: len(text) // 2], 4096)), up + 10,
                 complete=lambda u: False)
    assert u.partial and not u.expired and u.gone == 0 and len(t) > 1000


def test_errors_in_chunks_name_the_snapshot_line() -> None:
    text, up = golden_polls()[0]
    lines = text.splitlines(keepends=True)
    bad = next(i for i, ln in enumerate(lines)
               if i > 2000 and not ln.startswith(" ") and re.search(r" \d+\.\d+\.", ln))
    lines[bad] = re.sub(r" \d+\.(\d+\.\d+\.\d+)", r" 999.\1", lines[bad], count=1)
    broken = "".join(lines)
    other = sim_polls(5, n=1)[0][0]
    for states_hint in (None, broken.count("   id: ")):
        whole = Tracker(select=lambda st: True).update(broken, up)
        fresh = Tracker(select=lambda st: True)  # empty: records read as they arrive
        at_once = fresh.update(snapshot.record_chunks(blocks(broken, 7000)), up,
                               states_hint=states_hint)
        known = Tracker(select=lambda st: True)  # not empty: records read at the end, joined
        known.update(other, up - 10)
        joined = known.update(snapshot.record_chunks(blocks(broken, 7000)), up,
                              states_hint=states_hint)
        assert [e.line for e in whole.errors] == [bad + 1]
        assert [e.line for e in at_once.errors] == [bad + 1]
        assert [e.line for e in joined.errors] == [bad + 1]
        assert whole.new == at_once.new == joined.new == len(fresh) - 0


def test_changes_are_kept_only_for_whoever_takes_them() -> None:
    texts = golden_polls()
    t = Tracker(select=lambda st: True)
    t.update(*texts[0])
    assert len(t.touched) == 0  # nobody asked: no set growing without end
    tails, keys = t.take_changes()
    assert tails == set(t.entries) and keys == set()  # the first call: everything
    u = t.update(*texts[1])
    tails, _keys = t.take_changes()
    assert len(tails) == 2 * u.changed + u.gone and t.take_changes() == (set(), set())
