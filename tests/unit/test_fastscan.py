"""pf/fastscan.py: the C scanner (_fastscan) gives exactly what the regex gives.

The regex (grammar.FAST_RECORD[kind].findall) is the reference: every test runs both on
the same text and compares the lists, tuple for tuple and string for string: the golden
tables (whole and sliced at random pos/end; the 200k one in tests/system/test_big_table.py), the oddities the parser tests feed
parse_states (their string constants, harvested from tests/unit), hand-made shapes aimed
at the regex's alternatives, and hypothesis's mutations of real records.  The steady
poll's scans, tails (grammar.TRACK_TAIL.findall) and layout (two str.count), are held to
their pure versions in the same ways, and findall's shared strs to equality under a
cache that must evict.  Without the extension the comparisons skip, or fail under
PFLOWBSD_REQUIRE_PEERS=1 (CI builds it).
"""

from __future__ import annotations

import ast
import functools
import gzip
import os
import random
import re
import subprocess
import sys
from itertools import accumulate
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pflowbsd.pf import fastscan
from pflowbsd.pf import grammar as g
from tests.support import ROOT

try:
    from pflowbsd.pf import _fastscan
except ImportError:  # not built: no compiler, or CC=false
    _fastscan = None

KINDS = ("ss", "v", "vv")
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
TABLES = sorted(p.name for p in GOLDEN.glob("*.txt.gz"))
BIG = "openbsd-big-vv.txt.gz"
RECORD = re.compile(r"^\S.*\n(?:   .*\n)*", re.M)


def scanner() -> ModuleType:
    """The extension, or skip (fail under PFLOWBSD_REQUIRE_PEERS=1, as CI sets it)."""
    if _fastscan is None:
        message = "pflowbsd.pf._fastscan did not build (pip install -e . with a C compiler)"
        if os.environ.get("PFLOWBSD_REQUIRE_PEERS") == "1":
            pytest.fail(message + " (PFLOWBSD_REQUIRE_PEERS=1)")
        pytest.skip(message)
    return _fastscan


def same(text: str, pos: int = 0, end: int | None = None, kinds: tuple[int, ...] = (0, 1, 2)) -> int:
    """Assert C == regex on text[pos:end] for the kinds; the number of records found."""
    c = scanner()
    stop = len(text) if end is None else end
    found = 0
    for k in kinds:
        want = g.FAST_RECORD[KINDS[k]].findall(text, pos, stop)
        got = c.findall(k, text, pos, stop)
        if got != want:  # the first record that differs, not a 200,000-line diff
            diff = next((i, w, o) for i, (w, o) in enumerate(zip(want + [None], got + [None]))
                        if w != o)
            pytest.fail(f"kind {KINDS[k]} pos={pos} end={stop}: record {diff[0]}:\n"
                        f"  regex {diff[1]!r}\n  C     {diff[2]!r}")
        assert all(type(s) is str for rec in got for s in rec)
        found += len(got)
    return found


def same_steady(text: str) -> int:
    """Assert C == pure for tails and layout on text; the number of tails found."""
    c = scanner()
    want, got = fastscan.tails_regex(text), c.tails(text)
    if got != want:
        diff = next((i, w, o) for i, (w, o) in enumerate(zip(want + [None], got + [None]))
                    if w != o)
        pytest.fail(f"tails: match {diff[0]}:\n  regex {diff[1]!r}\n  C     {diff[2]!r}")
    assert all(type(s) is str for s in got)
    assert c.layout(text) == fastscan.layout_regex(text), repr(text[:200])
    known = {t: None for t in want[::2]}  # every other tail known: the rest are fresh
    # of those, every other one not seen yet this poll, and a state the text lacks
    unseen = {t: 1 for t in want[::4]} | {"1:2 bytes\n   id: 00 creatorid: 00": 2}
    same_sight(text, known, unseen, set(want[1:6:2]))  # a few fresh ones seen already
    same_sight(text, {}, {}, set())  # a first poll: every tail fresh, or a repeat
    return len(got)


def same_sight(text: str, known: dict[str, object], unseen: dict[str, object],
               seen: set[str]) -> None:
    """Assert C == pure for sight(): what it returns, and what it leaves in unseen and
    seen (each side given its own copies)."""
    u_c, u_py, s_c, s_py = dict(unseen), dict(unseen), set(seen), set(seen)
    got, want = scanner().sight(text, known, u_c, s_c), fastscan.sight_regex(text, known, u_py, s_py)
    assert got == want, repr(text[:200])
    assert u_c == u_py and list(u_c) == list(u_py) and s_c == s_py
    tails, fresh, offsets, lines, repeats, nlines, heads = want
    assert (nlines, heads) == fastscan.layout_regex(text)
    assert len(tails) == len(fresh) + repeats + len(unseen) - len(u_py)
    ends = [0, *offsets]  # the newlines before each fresh tail, counted piece by piece
    assert list(accumulate(text.count("\n", a, b) for a, b in zip(ends, offsets))) == lines


@functools.cache
def golden(name: str) -> str:
    return gzip.open(GOLDEN / name).read().decode("utf-8", "surrogateescape")


def ss_of(text: str) -> str:
    """The -ss table of a -v/-vv one: its state lines."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(" "))


# ---- the golden tables -----------------------------------------------------------------

@pytest.mark.parametrize("name", [t for t in TABLES if t != BIG])
def test_golden_tables_whole_and_sliced(name):
    text = golden(name)
    assert same(text, kinds=(1, 2)) > 0 and same(ss_of(text), kinds=(0,)) > 0
    assert same_steady(text) == (len(RECORD.findall(text)) if "-vv" in name else 0)
    same_steady(ss_of(text))
    rng = random.Random(name)
    for _ in range(20):
        a, b = sorted(rng.randrange(-5, len(text) + 5) for _ in range(2))
        same(text, a, b)
        same_steady(text[max(a, 0):b])


# ---- the parser tests' oddities ----------------------------------------------------------

def harvested() -> list[str]:
    """Every string constant in tests/unit that holds a state line or a continuation line."""
    found = set()
    for path in sorted((ROOT / "tests" / "unit").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and re.search(r" (->|<-) |   (age|id:|\[)", node.value)):
                found.add(node.value)
    return sorted(found)


REC = ("all tcp 10.0.0.5:1234 -> 10.0.0.6:80       ESTABLISHED:ESTABLISHED\n"
       "   [1 + 2]  [3 + 4]\n"
       "   age 00:01:00, expires in 23:59:00, 10:8 pkts, 1200:4800 bytes, rule 0\n"
       "   id: 0000000000000001 creatorid: 1a2b3c4d\n")


def test_parser_tests_string_constants():
    texts = harvested()
    assert len(texts) > 20
    for text in texts:
        for t in (text, text + "\n", REC + text, text + REC, text.replace("{n:02d}", "07")):
            same(t)


# Each line aims at one alternative of the regexes (grammar.py _FAST_*).
ODD_HEADS = [
    "all tcp 10.0.0.5:1234 -> 10.0.0.6:80       ESTABLISHED:ESTABLISHED",
    "all tcp 10.0.0.5:1234 <- 10.0.0.6:80        ESTABLISHED:ESTABLISHED",    # 8 spaces
    "all tcp 10.0.0.5:1234 <- 10.0.0.6:80      ESTABLISHED:ESTABLISHED",      # 6
    "all tcp 10.0.0.5 -> 10.0.0.6       0:0",
    "all tcp 10.0.0.5:x -> 10.0.0.6       0:0",
    "all tcp 10.0.0.5[80] -> 10.0.0.6       0:0",                              # inet with [port]
    "all tcp 10.0.0.5.7 -> 10.0.0.6       0:0",
    "all tcp 10.0.0 -> 10.0.0.6       0:0",
    "all tcp ::1[80] -> ::[0]       0:0",
    "all tcp fe80::1:2.3.4.5[80] -> a:b       0:0",
    "all tcp fe80::1:2.3.4.5:80 -> a:b:       0:0",
    "all tcp ab:cd -> a::b[]       0:0",
    "all tcp (3) 10.0.0.5:1 ((4) 192.0.2.1:5) {gw one} -> (3) 2001:db8::1[80] {x}       S",
    "all tcp (3)10.0.0.5:1 -> 1.2.3.4       S",
    "all tcp () 10.0.0.5:1 -> 1.2.3.4       S",
    "all tcp 10.0.0.5:1 (192.0.2.1:5 -> 1.2.3.4       S",
    "all tcp 10.0.0.5:1 (192.0.2.1:5) {} -> 1.2.3.4       S",
    "all tcp 10.0.0.5:1 {a}b} -> 1.2.3.4       S",
    "all tcp 10.0.0.5:1 -> 1.2.3.4 (5.6.7.8:9) {gw}       <BAD STATE LEVELS 1:2>",
    "all tcp 10.0.0.5:1 -> 10.0.0.6:2 -> 10.0.0.7:3       S",                  # old three-host
    "all tcp 10.0.0.5:1 -> 1.2.3.4        ",
    "all tcp 10.0.0.5:1 -> 1.2.3.4       ",
    "all tcp 10.0.0.5:1 -< 1.2.3.4       S",
    " all tcp 10.0.0.5:1 -> 1.2.3.4       S",
    "all  tcp 10.0.0.5:1 -> 1.2.3.4       S",
    "\u00e9m0 t\u0107p 10.0.0.5:1 -> 1.2.3.4       \U0001f600:\udcff",
    "all tcp \uff11.2.3.4 -> 1.2.3.4       S",                                # fullwidth 1
]
ODD_SEQ = [
    "", "   [1 + 2]  [3 + 4]\n", "   [1 + 2](+5) wscale 7  [3 + 4](+6) wscale 8\n",
    "   [1 + 2] wscale 7(+5)  [3 + 4]\n", "   [1 + 2]  [3 + 4] wscale\n", "   [1 + 2] [3 + 4]\n",
    "   [1 + 2]  [3 + 4]x\n", "   [ + 2]  [3 + 4]\n", "   [1 + 2](+)  [3 + 4]\n",
]
ODD_TAIL = [
    "", ", rule 0", ", anchor 5, rule 6", ", anchor 5", ", anchor 5x", ", anchor 5, rule 6x",
    ", anchor 5, rule 6, pflow", ", rule 6, anchor 5", ", rule 6x", ", rule", ", anchor ",
    ",rule 6", ", ", ",", " ", ", anchor 5,", ", anchor 5, pflow, rule 3", "x",
    ", rule 99999999999999999999999999, log (all), set-tos 0xb8",
]
ODD_ID = [
    "   id: 00000000000000ab creatorid: 1a2b3c4d\n",
    "   id: 00000000000000ab creatorid: 1a2b3c4d gateway: 0.0.0.0\n   origif: le0\n",
    "   id: 00000000000000ab creatorid: 1a2b3c4d\n   origif: le0 x\n",
    "   id: 00000000000000ab creatorid: 1a2b3c4d\n   origif: \n",
    "   id: 00000000000000ab creatorid: 1a2b3c4d\n   gateway: 1.2.3.4\n",
    "   id: 00000000000000AB creatorid: 1a2b3c4d\n",
    "   id: 00000000000000a creatorid: 1a2b3c4d\n",
    "   id: 00000000000000ab creatorid: 1a2b3c4\n",
    "   id: 00000000000000ab creatorid: 1a2b3c4de\n",
    "   id: 00000000000000ab  creatorid: 1a2b3c4d\n",
]


def test_hand_made_shapes():
    age = "   age 00:01:00, expires in 23:59:00, 10:8 pkts, 1200:4800 bytes"
    found = 0
    for head in ODD_HEADS:
        for seq in ODD_SEQ:
            for tail in ODD_TAIL:
                text = head + "\n" + seq + age + tail + "\n" + ODD_ID[0]
                found += same(text)
    for tail in ODD_TAIL:
        for id_ in ODD_ID:
            found += same(ODD_HEADS[0] + "\n" + age + tail + "\n" + id_ + ODD_HEADS[0] + "\n")
    for age_ in ("   age 0:00:00, expires in 0:00:00, 0:0 pkts, 0:0 bytes",
                 "   age :00:00, expires in 0:00:00, 0:0 pkts, 0:0 bytes",
                 "   age 00:0:00, expires in 0:00:00, 0:0 pkts, 0:0 bytes",
                 "   age 1234567:00:00, expires in 0:00:00, 0:0 pkts, 0:0 bytes",
                 "   age 00:00:00, expires in 00:00:00, 0: pkts, 0:0 bytes",
                 "   age 00:00:00, expires in 00:00:00, 0:0 pkts, 0:0 byte"):
        found += same(ODD_HEADS[0] + "\n" + age_ + "\n" + ODD_ID[0])
    assert found > 1000  # the shapes the regex takes are many: the test is not vacuous


def test_scanning_positions():
    """^ matches at 0 or after a newline, never at pos itself otherwise; end cuts the text."""
    text = REC * 3
    for pos in range(0, len(REC) + 3):
        for end in (len(text), len(text) - 1, 2 * len(REC), 2 * len(REC) - 1, pos, pos - 1, 0):
            same(text, pos, end)
    for pos, end in ((-10, 10**6), (10**6, 10**6), (len(text), len(text)), (-3, -1)):
        same(text, pos, end)
    same("")
    same("\n\n\n")
    c = scanner()
    assert len(c.findall(2, text, len(REC), len(text))) == 2
    # pos=1 is not a line start of "x" + text: its first record is skipped, as sre does
    assert c.findall(2, "x" + text, 1, len(text) + 1) == c.findall(2, text, len(REC), len(text))


def test_non_ascii_kinds():
    """1-, 2- and 4-byte strs (PyUnicode kinds), surrogateescape'd bytes included."""
    for extra in ("\u00e9", "\u0107", "\U0001f600", "\udcff", "\x00"):
        text = REC.replace("all", "a" + extra) + REC + REC.replace("rule 0", "rule 0, " + extra)
        assert same(text) == 9  # the odd code point is text to [^ \n] and [^\n]
        same(text.replace("1200", "12" + extra))
        same(text.replace("10.0.0.6", "10.0." + extra + ".6"))


def test_bad_arguments_are_errors_not_crashes():
    c = scanner()
    with pytest.raises(ValueError):
        c.findall(3, REC, 0, len(REC))
    with pytest.raises(TypeError):
        c.findall(0, REC.encode(), 0, len(REC))
    with pytest.raises(TypeError):
        c.findall(0, REC, 0)


def test_refcounts_do_not_leak():
    c = scanner()
    text = REC * 50
    c.findall(2, text, 0, len(text))
    ref = g.FAST_RECORD["vv"].findall(text)
    before = sys.getrefcount(text), sys.getrefcount("")
    for _ in range(20):
        recs = c.findall(2, text, 0, len(text))
        ifname, state = recs[0][0], recs[0][g.FAST_FIELDS.index("state")]
        # a shared str: the records' references and ours, none kept by the call's cache
        assert sys.getrefcount(state) == 50 + 2 and sys.getrefcount(ifname) == 50 + 2
        # one reference each (the list's, the tuple's), as the regex's: nothing held twice
        assert sys.getrefcount(recs) == sys.getrefcount(ref)
        assert sys.getrefcount(recs[1]) == sys.getrefcount(ref[1])
        assert sys.getrefcount(recs[1][3]) == sys.getrefcount(ref[1][3])
        del recs
        assert sys.getrefcount(state) == 2
        tails, want = c.tails(text), fastscan.tails_regex(text)
        assert len(tails) == 50 and sys.getrefcount(tails[1]) == sys.getrefcount(want[1])
        del tails, want
        tails = c.tails(text)
        t0, r0 = tails[0], ref[0]
        held = sys.getrefcount(t0), sys.getrefcount(r0)
        paired = c.pairs(tails, 0, ref, None)
        assert paired[1] == text.count("\n") and (sys.getrefcount(t0), sys.getrefcount(r0)) == (held[0] + 1, held[1] + 1)
        assert c.pairs(tails, 1, ref, None) is None and c.pairs(tails[:-1], 0, ref, {t0}) is None
        del paired
        assert (sys.getrefcount(t0), sys.getrefcount(r0)) == held
        del tails, t0, r0
    assert (sys.getrefcount(text), sys.getrefcount("")) == before
    if hasattr(sys, "gettotalrefcount"):  # a debug build counts every reference
        total = sys.gettotalrefcount()
        for _ in range(5):
            c.findall(2, text, 0, len(text))
        assert sys.gettotalrefcount() - total < 50


# ---- the steady poll's scans: tails and layout ----------------------------------------

TAIL = ("   age 00:01:00, expires in 23:59:00, 10:8 pkts, 1200:4800 bytes, rule 0\n"
        "   id: 0000000000000001 creatorid: 1a2b3c4d\n")
ODD_TAILS = [
    TAIL, TAIL.replace(", rule 0", ""), TAIL.replace("1200:", ":"), TAIL.replace(":4800", ":"),
    TAIL.replace("10:8 pkts", "10:8  pkts"), TAIL.replace(" bytes", " byte"),
    TAIL.replace(" pkts, ", " pkts,"), TAIL.replace("0001 ", "001 "), TAIL.replace("1a2b3c4d", "1A2B3C4D"),
    TAIL.replace("1a2b3c4d", "1a2b3c4"), TAIL.replace("1a2b3c4d", "1a2b3c4d9"),
    TAIL.replace("id: ", "id:  "), TAIL.replace("\n   id", "\n  id"), TAIL.replace("\n   id", "   id"),
    TAIL.replace(", rule 0", ", rule 0 pkts, 1:2 bytes"),            # a second " pkts, " in the line
    TAIL.replace("10:8 pkts", "1 pkts, 10:8 pkts"),                   # a failed look, then a match
    TAIL.replace("10:8 pkts, ", "10:8 pkts, pkts, "), TAIL.replace(" pkts, ", " pkts, \u00e9"),
    TAIL.replace("rule 0", "rule 0, \U0001f600"), TAIL.replace("rule 0", "rule 0\udcff"),
    TAIL[:-1], TAIL[:-2], TAIL.replace("1200", "12\uff100"),               # fullwidth digit
]


def test_tails_and_layout_shapes():
    found = 0
    for tail in ODD_TAILS:
        for text in (tail, ODD_HEADS[0] + "\n" + tail, tail * 3, " pkts, " + tail.split(" pkts, ")[-1],
                     "pkts, 1:2 bytes\n   id: 0000000000000001 creatorid: 1a2b3c4d", tail.lstrip(" ")):
            found += same_steady(text)
            found += same_steady(text.rstrip("\n"))
    assert found > 60
    for text in ("", "\n", " ", " \n", "\n ", "a", "a\nb", " a\n b\n", "\n\n \n", "x\n \n  \n"):
        same_steady(text)
    assert scanner().layout("") == (0, 1) and scanner().layout(" a\nb\n c") == (2, 1)


def test_tails_and_layout_non_ascii_kinds():
    for extra in ("\u00e9", "\u0107", "\U0001f600", "\udcff", "\x00"):
        text = REC.replace("all", "a" + extra) + REC.replace("rule 0", "rule 0, " + extra)
        assert same_steady(text) == 2
        assert same_steady(extra + "\n " + text + " " + extra) == 2
        same_steady(text.replace("1200", "12" + extra))


def test_sight_counts_repeats_and_takes_the_seen_out_of_unseen():
    """A table twice over: each tail the second time is a repeat (fresh the first time,
    or taken out of unseen); the fresh lines are the tails' own."""
    text = golden("openbsd-small-vv.txt.gz")
    tails = fastscan.tails_regex(text)
    assert len(set(tails)) == len(tails) > 4
    for known in ({}, {t: None for t in tails[:3]}):
        unseen, seen = dict(known), set()
        same_sight(text + text, known, unseen, seen)
        got = fastscan.sight_regex(text + text, known, unseen, seen)
        assert got[4] == len(tails) and got[1] == tails[len(known):] and unseen == {}
        assert seen == set(tails[len(known):])
        assert [text.splitlines()[n].startswith("   age ") for n in got[3]] == [True] * len(got[3])


# ---- sight()'s hint: the last poll's tails, their str taken again --------------------------

def same_hinted(texts: list[str], prev: list[str], known: dict[str, object]) -> list[str]:
    """Assert C == pure for sight() over chunks with one hint ([prev, 0]) carried along:
    the same results, the same tails taken as prev's own str, the same place in prev
    afterwards; the tails."""
    c = scanner()
    ids = {id(t) for t in prev}
    hint_c, hint_py = [prev, 0], [prev, 0]
    u_c, u_py, s_c, s_py = dict(known), dict(known), set(), set()
    out: list[str] = []
    for text in texts:
        got = c.sight(text, known, u_c, s_c, hint_c)
        want = fastscan.sight_regex(text, known, u_py, s_py, hint_py)
        assert got == want and hint_c[1] == hint_py[1]
        assert [id(t) in ids for t in got[0]] == [id(t) in ids for t in want[0]]
        out += want[0]
    assert u_c == u_py and s_c == s_py and hint_c[0] is prev
    return out


def table_records() -> list[str]:
    return RECORD.findall(golden("openbsd-random-vv.txt.gz"))


def moved(rec: str, k: int) -> str:
    """The record with other byte counters: its tail changed (the tail starts there)."""
    return re.sub(r"(\d+):(\d+) bytes", lambda m: f"{int(m[1]) + k}:{m[2]} bytes", rec, count=1)


def renamed(rec: str) -> str:
    """The record of another state: its id's first digit changed."""
    return re.sub(r"id: ([0-9a-f])", lambda m: "id: " + ("1" if m[1] == "0" else "0"), rec, count=1)


def test_sight_hint_quiet_poll_takes_every_tail_again():
    """Nothing changed: every tail is the last poll's str, and the hint ends past them."""
    recs = table_records()
    prev = fastscan.tails_regex("".join(recs))
    known = {t: None for t in prev}
    hint = [prev, 0]
    got = scanner().sight("".join(recs), known, dict(known), set(), hint)
    assert all(a is b for a, b in zip(got[0], prev, strict=True)) and hint[1] == len(prev)
    assert same_hinted(["".join(recs)], prev, known) == prev


@pytest.mark.parametrize("edit", ["gone1", "gone2", "gone_run", "changed", "new", "moved_block",
                                  "reversed", "all_new", "prev_longer", "some_out_of_order"])
def test_sight_hint_follows_a_changing_table(edit: str):
    """States gone (one, two in a row, a run past what is looked ahead), changed, new
    among the rest, a block printed elsewhere, every state reordered: the same results
    in C and in Python, the hint only choosing which equal str a tail is."""
    recs = table_records()
    prev = fastscan.tails_regex("".join(recs))
    known = {t: None for t in prev}
    b = list(recs)
    if edit == "gone1":
        del b[5], b[20], b[40]
    elif edit == "gone2":
        del b[5:7], b[30:32]
    elif edit == "gone_run":
        del b[10:10 + 100]
    elif edit == "changed":
        b = [moved(r, 1) if i % 3 == 0 else r for i, r in enumerate(b)]
    elif edit == "new":
        for i in range(0, len(b), 7):
            b.insert(i, renamed(b[i]))
    elif edit == "moved_block":
        b = b[200:300] + b[:200] + b[300:]
    elif edit == "reversed":
        b.reverse()
    elif edit == "some_out_of_order":  # 100 misses among many more where expected
        b = b[:800] + b[-100:][::-1] + b[800:-100]
    elif edit == "all_new":
        b = [moved(r, 7) for r in b]
    else:
        b = b[: len(b) // 2]
    text = "".join(b)
    tails = same_hinted([text], prev, known)
    # in chunks, the hint carried from one to the next
    cut = [m.start() for m in re.finditer(r"^\S", text, re.M)][::37] + [len(text)]
    chunks = [text[a:z] for a, z in zip([0] + cut[1:-1], cut[1:])]
    assert "".join(chunks) == text
    assert same_hinted(chunks, prev, known) == tails


def test_sight_hint_gives_up_on_a_table_in_another_order():
    """Shuffled: past RESYNC misses, more than the hits, the chunk goes on without the
    hint (no more RESYNC comparisons a tail); in order again, the next chunk takes it."""
    recs = table_records()
    prev = fastscan.tails_regex("".join(recs))
    known = {t: None for t in prev}
    shuffled = list(recs)
    random.Random(7).shuffle(shuffled)
    ids = {id(t) for t in prev}
    hint = [prev, 0]
    got = scanner().sight("".join(shuffled), known, dict(known), set(), hint)[0]
    assert sum(id(t) in ids for t in got) < 40
    assert same_hinted(["".join(shuffled), "".join(recs)], prev, known)
    hint = [prev, 0]
    scanner().sight("".join(shuffled), known, dict(known), set(), hint)
    hint[1] = 0
    got = scanner().sight("".join(recs), known, dict(known), set(), hint)[0]
    assert all(id(t) in ids for t in got)


def test_sight_hint_takes_most_tails_again_where_states_keep_their_order():
    """A poll like the benches' (a few gone, changed, new): nearly all tails are taken
    as the last poll's str, so the tracker's dict finds them by identity."""
    recs = table_records()
    prev = fastscan.tails_regex("".join(recs))
    known = {t: None for t in prev}
    b = [moved(r, 1) if i % 50 == 0 else r for i, r in enumerate(recs) if i % 45 != 1]
    hint = [prev, 0]
    got = scanner().sight("".join(b), known, dict(known), set(), hint)[0]
    ids = {id(t) for t in prev}
    same = sum(1 for t in got if id(t) in ids)
    unchanged = sum(1 for i, _ in enumerate(recs) if i % 45 != 1 and i % 50 != 0)
    # all but those just after a changed state followed by a gone one (found again, by
    # their value, and the hint moved on to them)
    assert unchanged - 10 <= same <= unchanged and hint[1] >= len(prev) - 2


def test_sight_hint_takes_only_an_equal_str():
    """A last-poll str that differs only in its last character, or of another kind whose
    bytes begin as the tail's do, is not the tail."""
    # records whose tails are of even length: each a whole number of UCS-2 characters
    recs = [r for r in table_records() if len(fastscan.tails_regex(r)[0]) % 2 == 0][:50]
    text = "".join(recs)
    tails = fastscan.tails_regex(text)
    last = [t[:-1] + ("0" if t[-1] != "0" else "1") for t in tails]
    wide = ["".join(chr(ord(t[i]) | ord(t[i + 1]) << 8) for i in range(0, len(t) - 1, 2))
            .ljust(len(t), "x") for t in tails]  # UCS-2: the tail's bytes, in half the characters
    assert all(len(w) == len(t) and w != t for w, t in zip(wide, tails))
    for prev in (last, wide):
        known = {t: None for t in tails}
        got = same_hinted([text], prev, known)
        assert got == tails and not {id(t) for t in got} & {id(p) for p in prev}


def test_sight_hint_bad_arguments():
    c = scanner()
    for bad in ((), [[]], [[], 0, 1], ([], 0), [(), 0], [[], "0"], [[], 1.0]):
        with pytest.raises(TypeError):
            c.sight(REC, {}, {}, set(), bad)
    for junk in ([1, b"x", None], [REC] * 3):  # not tails: no harm
        hint = [junk, -5]
        assert c.sight(REC, {}, {}, set(), hint) == fastscan.sight_regex(REC, {}, {}, set())
        assert hint[1] >= 0


def test_tails_and_layout_bad_arguments():
    c = scanner()
    for f in (c.tails, c.layout):
        with pytest.raises(TypeError):
            f(REC.encode())
        with pytest.raises(TypeError):
            f()
        with pytest.raises(TypeError):
            f(REC, REC)
    for bad in ((REC, {}, {}, {}), (REC, set(), {}, set()), (REC, {}, set(), set()),
                (REC.encode(), {}, {}, set()), (REC, {}, {})):
        with pytest.raises(TypeError):
            c.sight(*bad)



@st.composite
def garbled(draw: st.DrawFn) -> str:
    """Real records, whole or cut, among garbage lines, lines starting with spaces, and
    non-ASCII text; a final newline or not."""
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(("record", "garbage", "indented", "tail")))
        if kind == "record":
            lines += draw(st.sampled_from(pool())).splitlines()
        elif kind == "garbage":
            lines.append(draw(st.text(max_size=30)).replace("\n", ""))
        elif kind == "indented":
            lines.append(" " * draw(st.integers(1, 4)) + draw(st.sampled_from(PIECES + [""])).strip("\n"))
        else:
            lines += draw(st.sampled_from(ODD_TAILS)).splitlines()
    text = "\n".join(lines) + draw(st.sampled_from(("\n", "", " ", "\n ")))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(PIECES) | st.text(max_size=3)) + text[at:]
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbled())
def test_garbled_tails_and_layout(text):
    same_steady(text)


# ---- findall's shared strings --------------------------------------------------------------

def test_shared_strings_are_equal_and_shared():
    """Within one call, a repeated value of a shared field is one str; the cache evicts
    (more distinct values than slots, and long values that differ only in the middle)
    and still every string equals the regex's."""
    c = scanner()
    recs = c.findall(2, REC * 40, 0, 40 * len(REC))
    for field in ("ifname", "proto", "state", "age_ms", "exp_ms", "rule", "creatorid"):
        i = g.FAST_FIELDS.index(field)
        assert len({id(r[i]) for r in recs}) == 1, field
    rules = "".join(REC.replace("rule 0", f"rule {n}").replace("em0", f"em{n % 97}") for n in range(5000))
    assert same(rules, kinds=(2,)) == 5000
    states = "".join(REC.replace("ESTABLISHED:ESTABLISHED", f"ESTABLIS{n:04d}HED:ESTABLISHED")
                     .replace("age 00:01:00", f"age 00:{n % 60:02d}:{n % 59:02d}")
                     for n in range(3000)) * 2
    assert same(states, kinds=(1, 2)) == 12000
    wide = states.replace("ESTABLIS", "ESTABL\u0130S")  # 2-byte kind: the key is bytes, not characters
    assert same(wide[:len(wide) // 3], kinds=(2,)) > 1000
    # 4-byte kind, 64 slots: "11" and eighteen "1"s (8 and 72 bytes) have the same key
    # words and slot; the size and the bytes tell them apart
    astral = REC.replace("all", "\U0001f600")
    assert same(astral.replace("rule 0", "rule 11") + astral.replace("rule 0", "rule " + "1" * 18)) == 6


# ---- hypothesis: mutations of real records -------------------------------------------------

@functools.cache
def pool() -> list[str]:
    """Records of every table but the big one, in both verbosities, and their state lines."""
    recs: list[str] = []
    for name in TABLES:
        if name != BIG:
            found = RECORD.findall(golden(name))
            recs += random.Random(name).sample(found, min(40, len(found)))
    return recs + [r.split("\n", 1)[0] + "\n" for r in recs[::4]]


PIECES = [" ", "\n", ":", ".", "[", "]", "(", ")", "{", "}", ",", ", ", "-", ">", "<", "+",
          "0", "9", "a", "f", "g", "\u00e9", "\udcff", "\U0001f600", "\u0100",
          ", anchor 12", ", rule 7", ", pflow", " wscale 3", "(+5)", "   origif: em0\n",
          "   gateway: 1.2.3.4\n", "       ", "99999999999999999999999", "   ", "\n   "]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, int, int]:
    text = "".join(draw(st.lists(st.sampled_from(pool()), min_size=0, max_size=4)))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(("insert", "delete", "replace", "truncate", "cut_line")))
        piece = draw(st.sampled_from(PIECES) | st.text(max_size=3))
        if op == "insert":
            text = text[:at] + piece + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 12)):]
        elif op == "replace":
            text = text[:at] + piece + text[at + len(piece):]
        elif op == "truncate":
            text = text[:at]
        else:  # a line cut short: drop the rest of the line, keep its newline
            nl = text.find("\n", at)
            text = text[:at] + (text[nl:] if nl >= 0 else "")
    pos = draw(st.integers(-2, len(text) + 2) | st.just(0))
    end = draw(st.integers(-2, len(text) + 2) | st.just(len(text)))
    return text, pos, end


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_records(case):
    text, pos, end = case
    same(text, pos, end)
    same(text)


# ---- pairs(): the bulk reader's check of records against tails ----------------------------

def same_pairs(tails: list[str], i: int, recs: list, fresh: set[str] | None):
    """Assert C == pure for pairs(); what they return."""
    got, want = scanner().pairs(tails, i, recs, fresh), fastscan.pairs_py(tails, i, recs, fresh)
    assert got == want, (i, len(recs), None if fresh is None else len(fresh))
    if got is not None:
        assert all(a is b for x, y in zip(got[0], want[0]) for a, b in zip(x, y))
    return want


@pytest.mark.parametrize("name", [t for t in TABLES if "-vv" in t and t != BIG])
def test_pairs_golden(name):
    """A table's records are its tails', in order: every one paired, the lines they
    take the table's; off by one, past the end or with an id changed, no pairing."""
    text = golden(name)
    tails, recs = fastscan.tails_regex(text), g.FAST_RECORD["vv"].findall(text)
    assert len(tails) == len(recs) > 0
    whole = same_pairs(tails, 0, recs, None)
    assert whole is not None and whole[1] == text.count("\n")
    assert [t for t, _ in whole[0]] == tails and [r for _, r in whole[0]] == recs
    some = set(tails[::3])
    part = same_pairs(tails, 0, recs, some)
    assert part is not None and [t for t, _ in part[0]] == tails[::3] and part[1] == whole[1]
    assert same_pairs(tails, 0, recs, set())[0] == []  # type: ignore[index]
    half = len(recs) // 2
    assert same_pairs(tails, half, recs[half:], None) is not None
    assert same_pairs(tails, 0, [], None) == ([], 0)
    if len(recs) > 1:  # a record off its tail, and the tails running out
        assert same_pairs(tails, 1, recs[:-1], None) is None
        assert same_pairs(tails[1:], 0, recs[:-1], None) is None
    assert same_pairs(tails[:-1], 0, recs, None) is None
    assert same_pairs(tails, -1, recs, None) is None
    for at, field in ((len(recs) - 1, 30), (len(recs) // 2, 31), (0, 31)):
        bad = list(recs)
        r = list(bad[at])
        r[field] = r[field][:-1] + ("0" if r[field][-1] != "0" else "1")
        bad[at] = tuple(r)
        assert same_pairs(tails, 0, bad, None) is None
        r[field] = ""  # no id at all: no pairing, not a match of the empty string
        bad[at] = tuple(r)
        assert same_pairs(tails, 0, bad, set(tails)) is None


def test_pairs_counts_the_optional_lines():
    """A record's lines are 3, one more with tcp sequence windows and one with origif."""
    text = REC.replace("rule 0", "rule 9")
    recs = g.FAST_RECORD["vv"].findall(text)
    tails = fastscan.tails_regex(text)
    base = same_pairs(tails, 0, recs, None)
    assert base is not None and base[1] == text.count("\n")
    r = list(recs[0])
    for seq, origif, lines in (("", "", 3), ("x", "", 4), ("", "em0", 4), ("x", "em0", 5)):
        r[18], r[33] = seq, origif
        assert same_pairs(tails, 0, [tuple(r)], None) == ([(tails[0], tuple(r))], lines)


def test_pairs_bad_arguments():
    c = scanner()
    with pytest.raises(TypeError):
        c.pairs(("a",), 0, [], None)
    with pytest.raises(TypeError):
        c.pairs([], 0, [], ["not a set"])
    with pytest.raises(TypeError):
        c.pairs([], 0, [], {}, 1)
    assert c.pairs(["x" * 40], 0, [("x",)], None) is None  # not a findall() record
    assert c.pairs([1], 0, [tuple([""] * len(g.FAST_FIELDS))], None) is None
    short = [""] * len(g.FAST_FIELDS)  # a tail too short to end with an id and creatorid
    short[30], short[31] = "00", "ab"
    assert same_pairs(["00ab"], 0, [tuple(short)], None) is None
    assert same_pairs(["00" + "x" * 32 + "ab"], 0, [tuple(short)], None) is not None


# ---- fastscan's choice -------------------------------------------------------------------

def accelerated(env: dict[str, str]) -> str:
    code = ("from pflowbsd.pf import fastscan as f;"
            "print(f.ACCELERATED, f.findall.__name__, f.tails.__name__, f.layout.__name__)")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, **env}, cwd=ROOT).stdout.strip()


def test_pflowbsd_pure_forces_the_regex():
    assert accelerated({"PFLOWBSD_PURE": "1"}) == "False findall_regex tails_regex layout_regex"
    scanner()
    assert accelerated({"PFLOWBSD_PURE": ""}) == "True findall_c tails_c layout_c"


def test_both_entry_points_agree():
    """fastscan's _c and _regex functions agree, and the plain names are the chosen ones
    (under PFLOWBSD_PURE=1 fastscan has no C to call: the names alone)."""
    assert fastscan.findall is (fastscan.findall_c if fastscan.ACCELERATED else fastscan.findall_regex)
    assert fastscan.tails is (fastscan.tails_c if fastscan.ACCELERATED else fastscan.tails_regex)
    assert fastscan.layout is (fastscan.layout_c if fastscan.ACCELERATED else fastscan.layout_regex)
    assert fastscan.sight is (fastscan.sight_c if fastscan.ACCELERATED else fastscan.sight_regex)
    assert fastscan.pairs is (fastscan.pairs_c if fastscan.ACCELERATED else fastscan.pairs_py)
    scanner()
    if not fastscan.ACCELERATED:
        assert os.environ.get("PFLOWBSD_PURE") == "1"
        return
    text = golden("openbsd-small-vv.txt.gz")
    for kind in KINDS:
        assert fastscan.findall_c(kind, text) == fastscan.findall_regex(kind, text)
        assert fastscan.findall_c(kind, text, 100, 5000) == fastscan.findall_regex(kind, text, 100, 5000)
    assert fastscan.tails_c(text) == fastscan.tails_regex(text) != []
    assert fastscan.layout_c(text) == fastscan.layout_regex(text)
