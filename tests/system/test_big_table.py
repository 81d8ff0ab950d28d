"""The 200,000-state golden table, whole: the scanners, the builders and the parser.

These are the unit modules' checks (tests/unit/test_fastscan.py, test_fastbuild.py,
test_states.py) run on the one table big enough to take seconds; they live here so the
unit tests stay well inside their 30 s, and they import those modules' helpers rather
than repeat them.  One decode of the table serves every test in the file.
"""

from __future__ import annotations

import functools
import gzip
import random

from pflowbsd.pf.states import parse_states, scan
from tests.support import FIXTURES
from tests.unit.test_fastbuild import assert_same, builder, records, same_entries
from tests.unit.test_fastscan import same, same_steady, ss_of

BIG = "openbsd-big-vv.txt.gz"


@functools.cache
def text() -> str:
    return gzip.open(FIXTURES / "golden" / BIG).read().decode("utf-8", "surrogateescape")


def test_scanners_whole_and_in_slices() -> None:
    """C scanner == regex on the table whole as -vv (how it is read) and in random slices."""
    t = text()
    assert same(t, kinds=(2,)) == 200_000
    assert same_steady(t) == 200_000
    rng = random.Random(16)
    for _ in range(6):
        a = rng.randrange(len(t))
        same(t, a, a + rng.randrange(200_000))
        same_steady(t[a:a + rng.randrange(200_000)])
    ss = ss_of(t[:2_000_000])
    same(ss, kinds=(0,))
    same(ss, 5000, len(ss) - 3, kinds=(0,))


def test_builders_make_the_same_states() -> None:
    builder()
    recs = records(BIG)
    assert len(assert_same(recs)) == len(recs) == 200_000


def test_pack_entry_c_and_python_agree() -> None:
    builder()
    same_entries(BIG, step=5)


def test_scan_finds_every_record_once() -> None:
    sc = scan(text())
    assert len(sc.records) == 200_000 and not sc.errors
    assert len({r[0] for r in sc.records}) == 200_000


def test_parses_in_chunks_with_line_numbers() -> None:
    t = text()
    table = parse_states(t)
    assert len(table.states) == 200_000 and not table.errors
    starts = [i + 1 for i, line in enumerate(t.splitlines()) if not line.startswith("   ")]
    assert [s.line for s in table.states] == starts
    assert sum(s.nlines for s in table.states) == t.count("\n")
