"""pf/record.py's C builder (_fastbuild) makes exactly the States the Python one makes.

record._build_py() is the reference: build_into() with the extension must give the same
States, slot for slot and type for type, with the same Host shared by both keys where a
side was not translated, and raise the same error where the reference raises; every test
builds the same FastRecords both ways.  The records: every golden table's (the 200k
one's in tests/system/test_big_table.py), and
hypothesis's mutations of them field by field (routing domains, ports and counters at
and past their limits, digits that are not ASCII, words no cache holds, absent groups as
"" and as None, a route on the id line).  Without the extension the comparisons skip, or
fail under PFLOWBSD_REQUIRE_PEERS=1 (CI builds it).  The same for two of its other
functions: pack_entry() against flows.pack_entry_py(), change() against the update
Sightings._counters() makes (and its keys: one Last for each); admit() has
test_fastbuild_admit.py.
"""

from __future__ import annotations

import functools
import gc
import gzip
import operator
import os
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pflowbsd import flows
from pflowbsd.pf import fastscan, record
from pflowbsd.pf import grammar as g
from pflowbsd.pf.counters import read_change
from pflowbsd.pf.grammar import FastRecord
from pflowbsd.pf.record import State
from pflowbsd.pf.timeouts import DEFAULTS, Policy
from tests.support import ROOT

GOLDEN = ROOT / "tests" / "fixtures" / "golden"
TABLES = sorted(p.name for p in GOLDEN.glob("*.txt.gz"))
BIG = "openbsd-big-vv.txt.gz"  # tests/system/test_big_table.py
SMALL = [t for t in TABLES if t != BIG]
F = {name: i for i, name in enumerate(g.FAST_FIELDS)}


def builder() -> None:
    """Skip unless the extension imported (fail under PFLOWBSD_REQUIRE_PEERS=1)."""
    if record._fastbuild is None:
        message = "pflowbsd.pf._fastbuild did not build (pip install -e . with a C compiler)"
        if os.environ.get("PFLOWBSD_PURE") == "1":
            pytest.skip("PFLOWBSD_PURE=1")
        if os.environ.get("PFLOWBSD_REQUIRE_PEERS") == "1":
            pytest.fail(message + " (PFLOWBSD_REQUIRE_PEERS=1)")
        pytest.skip(message)


@functools.cache
def records(name: str) -> list[FastRecord]:
    text = gzip.open(GOLDEN / name).read().decode("utf-8", "surrogateescape")
    kind = "vv" if "   id: " in text else "v" if "   age " in text else "ss"
    return fastscan.findall_regex(kind, text)


def outcome(build: object, recs: list[FastRecord], base: int = 3) -> tuple[list[State], object]:
    """The States made, and the line after them or the error raised (type and message:
    the mutations go past what the regex lets through, where the reference may raise
    TypeError or IndexError; the C builder must hand those records to it)."""
    out: list[State] = []
    try:
        end = build(recs, 1, base, out)  # type: ignore[operator]
    except Exception as e:  # whatever the reference raises
        return out, (type(e), str(e))
    return out, end


SLOTS = operator.attrgetter(*State.__slots__)


def shape(states: list[State]) -> list[tuple[object, ...]]:
    """Per State: its slots, their types, which keys share a Host, the Host type."""
    return [(v, tuple(map(type, v)), s.wire_src is s.stack_src, s.wire_dst is s.stack_dst,
             type(s.wire_src)) for s in states for v in (SLOTS(s),)]  # fmt: skip


def assert_same(recs: list[FastRecord], base: int = 3) -> list[State]:
    gc.disable()  # 200k States each way: the collector would be most of the time
    try:
        c_states, c_end = outcome(record.build_into, recs, base)
        py_states, py_end = outcome(record._build_py, recs, base)
        c_shape, py_shape = shape(c_states), shape(py_states)
    finally:
        gc.enable()
    assert c_end == py_end
    assert len(c_states) == len(py_states)
    if c_shape != py_shape:  # name the first slot that differs
        i = next(i for i, (a, b) in enumerate(zip(c_shape, py_shape)) if a != b)
        for slot in State.__slots__:
            va, vb = getattr(c_states[i], slot), getattr(py_states[i], slot)
            assert va == vb and type(va) is type(vb), (i, slot, va, vb)
        assert c_shape[i] == py_shape[i], i
    assert all(type(s.wire_src) is record.Host for s in c_states)
    return c_states


@pytest.mark.parametrize("name", SMALL)
def test_golden_tables(name):
    builder()
    recs = records(name)
    assert len(assert_same(recs)) == len(recs) > 0


def test_the_c_path_is_taken(monkeypatch):
    """All but the records it cannot take whole (here: none, once the words are learnt)
    are built in C: a builder that never ran would pass the comparisons too."""
    builder()
    recs = records("openbsd-random-vv.txt.gz")
    record.build_into(recs, 1, 3, [])  # learn the words
    calls = []
    real = record._build_py

    def counting(todo: list[FastRecord], line: int, base: int, out: list[State]) -> int:
        calls.append(len(todo))
        return real(todo, line, base, out)

    monkeypatch.setattr(record, "_build_py", counting)
    out: list[State] = []
    record.build_into(recs, 1, 3, out)
    assert len(out) == len(recs) and calls == []
    routed = [r for r in recs if r[F["idx"]]]
    if routed:  # an id line with a route: the Python builder's
        record.build_into(routed[:3], 1, 3, [])
        assert calls == [1] * len(routed[:3])


# ---- hypothesis: records mutated field by field -----------------------------------------

@functools.cache
def pool() -> list[FastRecord]:
    recs: list[FastRecord] = []
    for name in SMALL:
        found = records(name)
        recs += random.Random(name).sample(found, min(30, len(found)))
    return recs


HOSTS = ("La", "LXa", "Ra", "RXa")
PORTS = ("Lp4", "Lp6", "LXp4", "LXp6", "Rp4", "Rp6", "RXp4", "RXp6")
COUNTERS = ("p0", "p1", "b0", "b1")
VALUES = ["", None, "0", "7", "65535", "65536", "0065535", "18446744073709551615",
          "18446744073709551616", "99999999999999999999999", "\u0661\u0662", "12a", " 1",
          "(0) 10.0.0.1", "(12) 2001:db8::1", "(x) 10.0.0.1", "(3)10.0.0.1", "(", "()",
          "10.0.0.1", "2001:db8::2", "fe80::1", "<", "em0", "all", "\u00e9m0", "udp", "tcp",
          "frobnicate", "300", "ESTABLISHED:ESTABLISHED", "SINGLE:NO_TRAFFIC", "FOO:BAR",
          "0:0", "00", "99", "123456789012", "1234567890123", "00:00", "59:59", "61:00",
          ", pflow", ", rule 3, pflow", ", sloppy", " route-to 10.0.0.9@em1", " rtable 2",
          "0123456789abcdef", "1a2b3c4d", "[1 + 2]  [3 + 4]", "1.2.3.4", 5]


@st.composite
def mutated(draw: st.DrawFn, these: list[FastRecord] | None = None) -> list[FastRecord]:
    recs = these or draw(st.lists(st.sampled_from(pool()), min_size=1, max_size=4))
    out = []
    for rec in recs:
        fields = list(rec)
        for _ in range(draw(st.integers(0, 3))):
            where = draw(st.sampled_from(
                (*HOSTS, *PORTS, *COUNTERS, "ifname", "proto", "state", "age_h", "age_ms",
                 "exp_h", "exp_ms", "anchor", "rule", "opts", "id", "creatorid", "idx",
                 "origif", "gw1", "gw2", "arrow", "seq")))
            value = draw(st.sampled_from(VALUES) | st.text(max_size=4))
            if where in HOSTS and isinstance(value, str) and draw(st.booleans()):
                value = f"({draw(st.integers(0, 99999))}) {fields[F[where]] or '10.1.2.3'}"
            fields[F[where]] = value
        out.append(tuple(fields))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.sampled_from((0, 1, 3)))
def test_mutated_records(recs, base):
    builder()
    assert_same(recs, base)


def test_refcounts_do_not_leak():
    builder()
    recs = records("openbsd-random-vv.txt.gz")[:200]
    record.build_into(recs, 1, 3, [])
    probe = recs[0][F["La"]]
    before = sys.getrefcount(probe), sys.getrefcount(None)
    for _ in range(20):
        out: list[State] = []
        record.build_into(recs, 1, 3, out)
        del out
    assert sys.getrefcount(probe) == before[0]
    assert abs(sys.getrefcount(None) - before[1]) < 50


def test_setup_refuses_another_state():
    builder()

    class Other:
        __slots__ = ("ifname",)

    with pytest.raises(TypeError):
        record._fastbuild.setup(Other, record.Host, {}, {}, {}, {}, {}, {})
    with pytest.raises(TypeError):
        record._fastbuild.setup(State, dict, {}, {}, {}, {}, {}, {})


def test_pflowbsd_pure_uses_the_python_builder():
    code = "from pflowbsd.pf import record; print(record._fastbuild is None)"
    def run(pure: str) -> str:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, env={**os.environ, "PFLOWBSD_PURE": pure},
                              cwd=ROOT).stdout.strip()
    assert run("1") == "True"
    builder()
    assert run("") == "False"


# ---- flows.pack_entry: the C packer against pack_entry_py --------------------------------

def packed(pack: object, s: State, first: object, last: object, ifidx: tuple[object, object]
           ) -> object:
    try:
        return pack(s, first, last, ifidx)  # type: ignore[operator]
    except Exception as e:  # whatever the reference raises
        return type(e), str(e)


def same_entries(name: str, step: int = 1) -> None:
    """Every step-th State of a golden table packs to the same bytes in C and in Python,
    under random First, Last and interface indexes."""
    out: list[State] = []
    record.build_into(records(name), 1, 3, out)
    rng = random.Random(name)
    for s in out[::step]:
        first, last = rng.randrange(-5, 1 << 40), rng.randrange(0, 1 << 40)
        ifidx = (rng.randrange(0, 70000), rng.randrange(-3, 9))
        c = record._fastbuild.pack_entry(s, first, last, *ifidx)
        assert c is not None and c == flows.pack_entry_py(s, first, last, ifidx)
    assert flows.pack_entry(out[0], 1, 2) == flows.pack_entry_py(out[0], 1, 2)
    for pack in (flows.pack_entry, flows.pack_entry_py):  # times past 32 bits: clamped
        far = pack(out[0], -(1 << 40), 1 << 40)
        assert flows.entry_times(far) == (-flows.TIME_MAX, flows.TIME_MAX)


@pytest.mark.parametrize("name", SMALL)
def test_pack_entry_golden(name):
    builder()
    same_entries(name)


def test_pack_entry_is_taken_only_for_the_layout_it_packs():
    """flows uses the C packer while the layout it was written for is flows.ENTRY's."""
    builder()
    want = (flows.ENTRY.format, flows.NATTED, flows.INET6, flows.OUTBOUND)
    assert want == record._fastbuild.ENTRY_LAYOUT
    assert flows.pack_c is record._fastbuild.pack_entry


STATE_VALUES = {
    "direction": ["in", "out", "sideways", None],
    "af": ["inet", "inet6", "inet7", 4],
    "stack_af": ["inet", "inet6", "inet7"],
    "proto": [0, 6, 255, 256, -1, "6", True],
    "packets": [(0, 0), (1, 2), ((1 << 64) - 1, 0), (1 << 64, 0), (-1, 0), (1,), [1, 2]],
    "bytes": [(0, 0), (5, (1 << 64) - 1), (0, 1 << 64), (1.5, 2)],
}
HOST_VALUES = ["10.0.0.1", "10.0.0.256", "2001:db8::1", "::ffff:1.2.3.4", "1.2.3", "",
               "10.0.0.1\x00", "\u00e910.0.0.1", "fe80::1%em0", "1.2.3.4"]


@st.composite
def mutated_state(draw: st.DrawFn) -> tuple[State, object, object, tuple[object, object]]:
    out: list[State] = []
    record.build_into([draw(st.sampled_from(pool()))], 1, 3, out)
    if not out:  # a record the builder refuses: none to pack
        return State(), 0, 0, (0, 0)
    s = out[0]
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from((*STATE_VALUES, "wire_src", "wire_dst", "stack_src",
                                     "stack_dst", "share")))
        if what == "share":  # one Host for both keys, or an equal copy of it
            s.stack_src = s.wire_src if draw(st.booleans()) else record.Host(*s.wire_src)
        elif what in STATE_VALUES:
            setattr(s, what, draw(st.sampled_from(STATE_VALUES[what])))
        else:
            h = getattr(s, what)
            setattr(s, what, record.Host(draw(st.sampled_from(HOST_VALUES) | st.just(h.addr)),
                                         draw(st.sampled_from((0, 80, 65535, 65536, -1)) |
                                              st.just(h.port)), h.rdomain))
    first = draw(st.sampled_from((0, -1, 1 << 63, (1 << 63) - 1, 1.0, 1700000000)))
    last = draw(st.sampled_from((0, 5, 1 << 64)))
    ifidx = draw(st.sampled_from(((0, 0), (3, 0), (-1, 70000), (1 << 70, 2), (0.5, 0))))
    return s, first, last, ifidx


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_state())
def test_pack_entry_mutated(case):
    builder()
    s, first, last, ifidx = case
    assert packed(flows.pack_entry, s, first, last, ifidx) == \
        packed(flows.pack_entry_py, s, first, last, ifidx)


# ---- change(): the C update of a known state against the Python one ---------------------

def changed(rec: FastRecord) -> object:
    """read_change(rec), None also where a mutation past what the regex lets through
    makes it raise (the full parse's to judge)."""
    try:
        return read_change(rec)
    except (ValueError, TypeError, IndexError):
        return None


def last_of(rec: FastRecord) -> int | None:
    """sightings' Last of a changed record (no kept rule), or None where read_change
    hands the record to the full parse."""
    ch = changed(rec)
    if ch is None:
        return None
    return int(Policy(dict(DEFAULTS)).last_packet(ch[0], 1000.0, 5000)[0])


def known_entry(rec: FastRecord) -> bytes | None:
    """The entry a tracker would hold for rec's state first seen with no traffic."""
    out: list[State] = []
    try:
        record.build_into([rec], 1, 3, out)  # (also learns rec's words)
        if not out:
            return None
        out[0].packets, out[0].bytes = (0, 0), (0, 0)
        return flows.pack_entry_py(out[0], 7, 8)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def python_change(rec: FastRecord, entry: bytes, last: int) -> bytes | None:
    """Sightings._counters' checks and update, with Last given: the reference."""
    ch = changed(rec)
    if ch is None:
        return None
    st_, sa, sp, da, dp = ch
    c = (*st_.packets, *st_.bytes)
    if any(a < b for a, b in zip(c, flows.entry_counters(entry), strict=True)) \
            or not flows.key_is(entry, sa, sp, da, dp):
        return None
    try:
        return flows.with_update(entry, last, c)  # type: ignore[arg-type]
    except Exception:  # struct.error past 64 bits
        return None


SMALL_COUNTS = ["0", "1", "2", "9"]
EXPIRY = ["00:00", "00:09", "00:25"]
STATE_WORDS = ["ESTABLISHED:ESTABLISHED", "SYN_SENT:CLOSED", "FIN_WAIT_2:FIN_WAIT_2",
               "SINGLE:NO_TRAFFIC", "MULTIPLE:MULTIPLE", "SINGLE:MULTIPLE", "0:0",
               "NO_TRAFFIC:SINGLE", "TIME_WAIT:TIME_WAIT", "CLOSED:SYN_SENT"]


@st.composite
def near_records(draw: st.DrawFn) -> list[FastRecord]:
    """Records that differ only where Last may, among few values each: counters near a
    first packet, the state words, `expires in`, protocol, rule, the side the state
    pair is read from (af-to)."""
    out = []
    for rec in draw(st.lists(st.sampled_from(pool()), min_size=2, max_size=30)):
        f = list(rec)
        for name in ("p0", "p1"):
            f[F[name]] = draw(st.sampled_from(SMALL_COUNTS))
        f[F["state"]] = draw(st.sampled_from(STATE_WORDS))
        f[F["exp_h"]], f[F["exp_ms"]] = "00", draw(st.sampled_from(EXPIRY))
        f[F["proto"]] = draw(st.sampled_from(("tcp", "udp", "icmp", f[F["proto"]])))
        f[F["anchor"]], f[F["rule"]] = "", draw(st.sampled_from(("", "1", f[F["rule"]])))
        if draw(st.booleans()) and ":" not in f[F["La"]]:  # af-to: inet out, inet6 in
            f[F["LXa"]], f[F["LXp4"]], f[F["LXp6"]] = "64:ff9b::a00:1", "", f[F["Lp4"]]
            f[F["RXa"]], f[F["RXp4"]], f[F["RXp6"]] = "64:ff9b::a00:2", "", f[F["Rp4"]]
        out.append(tuple(f))
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_records())
def test_change_keys_decide_last(recs):
    """Two records under the key change() keeps a Last by have the same Last."""
    builder()
    seen: dict[tuple[object, ...], int] = {}
    for rec in recs:
        entry = known_entry(rec)
        last = last_of(rec)
        if entry is None or last is None:
            continue
        key = record._fastbuild.change(rec, entry, {})
        if type(key) is tuple:
            assert seen.setdefault(key, last) == last, (key, rec)


def test_change_keys_part_what_timeouts_tell_apart():
    """The cases a random draw seldom pairs: one UDP record, plain and af-to (the
    state pair read the other way round), at and past a first packet: each key
    change() keeps a Last by holds one Last."""
    builder()
    plain = next(r for r in pool() if ":" not in r[F["La"]] and not r[F["arrow"]])
    lasts: dict[tuple[object, ...], int] = {}
    for afto in (False, True):
        for p0, p1 in (("1", "0"), ("2", "0"), ("1", "1"), ("0", "1")):
            f = list(plain)
            f[F["p0"]], f[F["p1"]], f[F["state"]] = p0, p1, "SINGLE:NO_TRAFFIC"
            f[F["proto"]], f[F["anchor"]], f[F["rule"]] = "udp", "", "1"
            f[F["exp_h"]], f[F["exp_ms"]] = "00", "00:09"
            if afto:
                f[F["LXa"]], f[F["LXp4"]], f[F["LXp6"]] = "64:ff9b::a00:1", "", f[F["Lp4"]]
                f[F["RXa"]], f[F["RXp4"]], f[F["RXp6"]] = "64:ff9b::a00:2", "", f[F["Rp4"]]
            rec = tuple(f)
            entry, last = known_entry(rec), last_of(rec)
            assert entry is not None and last is not None
            key = record._fastbuild.change(rec, entry, {})
            assert type(key) is tuple
            assert lasts.setdefault(key, last) == last, (afto, p0, p1)
    assert len(set(lasts.values())) == 2  # udp.first and udp.single


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.integers(-5, 1 << 40))
def test_change_mutated(data, last):
    """change() gives Python's bytes wherever Python's update takes the record, and
    hands back the rest (None), on records mutated field by field against the entry of
    the record before the mutation: the same connection, another one, or no record
    pfctl prints.  Last is kept under change()'s key only for a record read_change()
    reads, as the tracker keeps it; the words are learnt first, as the full parse would."""
    builder()
    before = data.draw(st.sampled_from(pool()))
    [rec] = data.draw(mutated([before]))
    entry = known_entry(before)
    if entry is None:
        return
    known_entry(rec)  # learn its words
    key = record._fastbuild.change(rec, entry, {})
    want = python_change(rec, entry, last)
    if key is None:
        return  # the Python path's to decide
    assert type(key) is tuple
    if changed(rec) is None:  # no Last is ever kept under a key of its own
        return
    got = record._fastbuild.change(rec, entry, {key: last})
    assert got == want or (got is None and want is not None and not rec[F["La"]].isascii())


def test_change_refcounts_do_not_leak():
    builder()
    rec = next(r for r in pool() if known_entry(r) is not None and changed(r) is not None)
    entry = known_entry(rec)
    assert entry is not None
    key = record._fastbuild.change(rec, entry, {})
    assert type(key) is tuple
    lasts = {key: 5}
    probe = rec[F["state"]]
    before = sys.getrefcount(probe), sys.getrefcount(entry)
    for _ in range(100):
        record._fastbuild.change(rec, entry, {})  # the key, made and dropped
        assert type(record._fastbuild.change(rec, entry, lasts)) is bytes
    assert (sys.getrefcount(probe), sys.getrefcount(entry)) == before


def test_key_is_takes_any_text_as_not_the_key():
    """flows.key_is(), the Python update's check that a record is the entry's connection,
    on addresses no pf prints: False, never an error (a NUL made inet_pton() raise
    ValueError, past the OSError it caught)."""
    e = flows.ENTRY.pack(0, 6, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0) + bytes((10, 0, 0, 1, 1, 2, 3, 4))
    assert flows.key_is(e, "10.0.0.1", 1, "1.2.3.4", 2)
    for src in ("10.0.0.1\x00", "10.0.0.256", "", "fe80::1", "\u00e910.0.0.1"):
        assert not flows.key_is(e, src, 1, "1.2.3.4", 2), src
