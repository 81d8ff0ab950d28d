"""_fastbuild.admit(): a new state's entry in C, as Sightings._admit() packs it.

The reference is the Python path a first poll takes without it: First = now - age, Last
from Policy.last_packet(), flows.pack_entry_py().  admit() reads the class's timeouts
from Policy.known_classes() under timeouts.class_key(), asking the caller (the key it
returns) to learn() a class it has not met: its key must be class_key()'s, and every
state it packs must pack to the reference's bytes, on the golden tables and on states
mutated where Last and First may move (counters near a first packet, state words,
`expires in`, age, protocol, the side the pair is read from, table sizes that scale
the timeouts adaptively, polls as floats and ints, values past 2^53).
"""

from __future__ import annotations

import random
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pflowbsd import flows
from pflowbsd.pf import record, timeouts
from pflowbsd.pf.record import State
from pflowbsd.pf.timeouts import DEFAULTS, Policy
from tests.support.leaks import grown
from tests.unit.test_fastbuild import SMALL, builder, near_records, records

ADAPTIVE = dict(DEFAULTS) | {"adaptive.start": 6000, "adaptive.end": 12000}


def reference(st: State, now: int, poll: float, policy: Policy, nstates: int) -> object:
    """What Sightings._admit() packs without the C admit(), or the error it raises."""
    try:
        last = int(policy.last_packet(st, poll, nstates)[0])
        return flows.pack_entry_py(st, now - (st.age_s or 0), last, (0, 0))
    except Exception as e:
        return type(e)


def admitted(st: State, now: int, poll: float, policy: Policy, nstates: int) -> object:
    """admit(), learning the class it asks for (whose key must be class_key()'s) once."""
    known = policy.known_classes(nstates)
    out = record._fastbuild.admit(st, now, poll, known)
    if type(out) is tuple:
        assert out == timeouts.class_key(st)
        assert out not in known
        policy.learn(st, nstates)
        out = record._fastbuild.admit(st, now, poll, known)
        assert type(out) is not tuple
    return out


def states_of(recs: list[tuple[object, ...]]) -> list[State]:
    out: list[State] = []
    for rec in recs:  # one by one: a record the builder refuses is left out
        try:
            record.build_into([rec], 1, 3, out)  # type: ignore[list-item]
        except (ValueError, KeyError):
            pass
    return out


@pytest.mark.parametrize("name", SMALL)
def test_admit_golden(name):
    """Every state of a golden table packs in C, to the reference's bytes, under the
    default timeouts and scaled ones."""
    builder()
    out: list[State] = []
    record.build_into(records(name), 1, 3, out)
    rng = random.Random(name)
    for policy, nstates in ((Policy(dict(DEFAULTS)), 100), (Policy(ADAPTIVE), 9000)):
        for s in out:
            poll = rng.choice((1000.0, 86400.5, 1e7 + 0.25, 3000))
            now = int(poll)
            got = admitted(s, now, poll, policy, nstates)
            assert got is not None and got == reference(s, now, poll, policy, nstates), s


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_records(), st.sampled_from((0.0, 5.0, 1000.0, 86400.75, 1e9 + 0.5, 7, 1 << 60)),
       st.sampled_from((100, 6000, 9000, 12000, 20000)), st.data())
def test_admit_near_records(recs, poll, nstates, data):
    """States that differ where Last may (counters near a first packet, state words,
    `expires in`, rule, af-to) and how old they are: C packs the reference's bytes, or
    leaves the state to the Python path (None); one class per key across them."""
    builder()
    policy = Policy(ADAPTIVE)
    for s in states_of(recs):
        what = data.draw(st.sampled_from(("age", "expires", "none", "past", "poll")))
        if what == "age":
            s.age_s = data.draw(st.sampled_from((None, 0, 1, 86400, (1 << 53) + 1, -1, 1 - (1 << 63))))
        elif what == "expires":
            s.expires_in_s = data.draw(st.sampled_from((None, 0, 9, 25, 30, 86400, 1 << 60)))
        elif what == "past":  # `expires in` past every timeout: read as 0
            s.expires_in_s = 10 ** 6
        now = int(poll) if what != "poll" else -int(poll)
        got = admitted(s, now, poll, policy, nstates)
        want = reference(s, now, poll, policy, nstates)
        assert got is None or got == want, (s, poll, nstates)
        if type(want) is bytes and abs(poll) < 1e15 and abs(now) < 1 << 53 \
                and abs(s.age_s or 0) < 1 << 53 and (s.expires_in_s or 0) < 1 << 53:
            assert got == want  # the common case: not left to Python


def test_admit_refuses_what_it_does_not_know():
    """Not a State, an argument of another type, a known class of another shape: None
    (the Python path decides), never an error or another entry."""
    builder()
    s = states_of([records(SMALL[0])[0]])[0]
    policy = Policy(dict(DEFAULTS))
    known = policy.known_classes(10)
    assert type(record._fastbuild.admit(s, 1, 2.0, known)) is tuple
    policy.learn(s, 10)
    assert type(record._fastbuild.admit(s, 1, 2.0, known)) is bytes
    for args in ((object(), 1, 2.0, known), (s, 1.0, 2.0, known), (s, 1, "2", known),
                 (s, 1, 2.0, list(known)), (s, True, 2.0, known), (s, 1, float("nan"), known)):
        assert record._fastbuild.admit(*args) is None, args
    key = timeouts.class_key(s)
    for bad in ((1,), (1, 2.0), ("1", 2), [1, 2], (-1, 5), (1 << 60, 1)):
        assert record._fastbuild.admit(s, 1, 2.0, {key: bad}) is None, bad
    with pytest.raises(TypeError):
        record._fastbuild.admit(s, 1, 2.0)


def test_admit_refcounts_do_not_leak():
    builder()
    s = states_of([records(SMALL[0])[0]])[0]
    policy = Policy(dict(DEFAULTS))
    known = policy.known_classes(10)
    policy.learn(s, 10)
    probe = s.state_text
    before = sys.getrefcount(probe), sys.getrefcount(s)
    for _ in range(100):
        record._fastbuild.admit(s, 1, 2.0, {})  # the key, made and dropped
        assert type(record._fastbuild.admit(s, 1, 2.0, known)) is bytes
    assert (sys.getrefcount(probe), sys.getrefcount(s)) == before


def test_admit_is_taken_only_with_the_packer():
    builder()
    assert flows.admit_c is record._fastbuild.admit


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_records())
def test_one_class_per_class_key(recs):
    """States with one class_key() run on one timeout class: the key holds all that
    the class functions read (what known_classes() and admit() rely on)."""
    seen: dict[tuple[object, ...], object] = {}
    for s in states_of(recs):
        klass = timeouts.timeout_class(s)
        assert seen.setdefault(timeouts.class_key(s), klass) == klass, s


def learnt(n: int) -> tuple[list[State], list[str], dict[tuple[object, ...], tuple[int, int] | None]]:
    """n States of a golden table, a tail for each, and known_classes() with their
    classes learnt."""
    states = states_of(records(SMALL[0]))[:n]
    policy = Policy(dict(DEFAULTS))
    known = policy.known_classes(100)
    for s in states:
        policy.learn(s, 100)
    return states, [f"t{i}" for i in range(len(states))], known


def test_admit_all_admits_what_admit_admits_and_stops_where_python_must_look():
    """admit_all(): admit()'s entries under their tails, in order; it stops at a state
    select() refuses or raises on, one admit() does not pack (a class to learn), and
    goes on from the index it is given."""
    builder()
    states, tails, known = learnt(40)
    refused, boom = states[7], states[9]

    def select(s: State) -> bool:
        if s is boom:
            raise ValueError("select says no")
        return s is not refused

    entries: dict[str, object] = {}
    added: list[str] = []
    loop = record._fastbuild.admit_all
    assert loop(tails, states, 0, entries, select, 1000, 1000.0, known, added) == 7
    assert loop(tails, states, 8, entries, select, 1000, 1000.0, known, added) == 9
    assert loop(tails, states, 10, entries, select, 1000, 1000.0, known, added) == len(states)
    want = [t for i, t in enumerate(tails) if i not in (7, 9)]
    assert added == want and list(entries) == want
    for i, t in enumerate(tails):
        if t in entries:
            assert entries[t] == record._fastbuild.admit(states[i], 1000, 1000.0, known)
    # another exception from select() is raised, as the Python step lets it through

    def broken(s: State) -> bool:
        raise RuntimeError("select is broken")

    with pytest.raises(RuntimeError, match="broken"):
        loop(tails, states, 0, {}, broken, 1000, 1000.0, known, [])
    # a class not learnt: left to Python at once
    assert loop(tails, states, 0, {}, select, 1000, 1000.0, {}, []) == 0
    assert loop(tails, states, len(states), {}, select, 1000, 1000.0, known, []) == len(states)
    for bad in ((tails[:3], states, 0), (tuple(tails), states, 0), (tails, states, -1)):
        with pytest.raises((TypeError, ValueError)):
            loop(*bad, {}, select, 1000, 1000.0, known, [])
    with pytest.raises(TypeError):
        loop(tails, states, 0, {}, select, 1000, 1000.0, known)


def test_admit_all_is_taken_only_with_the_packer():
    builder()
    assert flows.admit_all_c is record._fastbuild.admit_all


def test_admit_all_refcounts_do_not_leak():
    builder()
    states, tails, known = learnt(5)
    take = lambda s: True
    before = [sys.getrefcount(x) for x in (*states, *tails, take)]

    def rounds(n: int) -> None:
        for _ in range(n):
            assert record._fastbuild.admit_all(tails, states, 0, {}, take, 1, 2.0, known,
                                               []) == len(states)
            record._fastbuild.admit_all(tails, states, 0, {}, lambda s: False, 1, 2.0, known, [])
    kept = grown(rounds)  # an entry left behind each round would be ~1 MB
    assert [sys.getrefcount(x) for x in (*states, *tails, take)] == before and kept < 50_000
