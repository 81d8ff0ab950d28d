"""The fast path's scanners: grammar.FAST_RECORD's findall(), one FastRecord per record,
and the steady poll's tails (grammar.TRACK_TAIL.findall) and layout (line counts).

Strategy.  Every bulk reader of a state table (parse_states, the tracker's first
sighting) goes through findall() here, and the tracker's poll of a table it has seen
before through tails() and layout(), so an accelerated scanner can stand in for the
regex in one place.  Two implementations give identical results (tests/unit/
test_fastscan.py checks them against each other on the golden tables and under
hypothesis): the C extension `_fastscan` (built by setup.py when a compiler is there),
and the regex and str.count, which run when the extension did not build or when the
environment sets PFLOWBSD_PURE=1.  On the 200,000-state golden table, against the floor
of bench/common.py (`python3 bench/parse.py`): findall 4.8 x with the regex, 1.9 x in C
(it shares the strs of repeated fields and keeps its tuples from the collector; the
rest is making the tuples and the strings the regex makes too); tails 0.9 x and 0.3 x;
layout 0.8 x and 0.1 x; the cold parse_states 10.4 x and 4.5 x (with record.py's C
builder).  sight() is the tracker's pass over a chunk (tails, their sorting against the
entries, layout) in one, pairs() the bulk reader's check of its records against those
tails.  ACCELERATED says which one runs.
"""

from __future__ import annotations

import os
from typing import Any, cast

from pflowbsd.pf import grammar as g
from pflowbsd.pf.grammar import FastRecord

_RX = g.FAST_RECORD
_KIND = {"ss": 0, "v": 1, "vv": 2}  # _fastscan's numbering of FAST_RECORD's keys


def findall_regex(kind: str, text: str, pos: int = 0, end: int | None = None) -> list[FastRecord]:
    """FAST_RECORD[kind].findall(text, pos, end): kind "ss", "v" or "vv"."""
    return _RX[kind].findall(text, pos, len(text) if end is None else end)


try:
    if os.environ.get("PFLOWBSD_PURE") == "1":
        raise ImportError("PFLOWBSD_PURE=1")
    from pflowbsd.pf import _fastscan
except ImportError:
    _fastscan = None  # type: ignore[assignment]


def findall_c(kind: str, text: str, pos: int = 0, end: int | None = None) -> list[FastRecord]:
    """The same list from _fastscan (which must have imported: see ACCELERATED)."""
    return cast(list[FastRecord],
                _fastscan.findall(_KIND[kind], text, pos, len(text) if end is None else end))


ACCELERATED: bool = _fastscan is not None
findall = findall_c if ACCELERATED else findall_regex


# The tracker's scans of a table it has seen before (pf/snapshot.py): its tails, and
# its line and head counts.
def tails_regex(text: str) -> list[str]:
    """grammar.TRACK_TAIL.findall(text)."""
    return g.TRACK_TAIL.findall(text)


def layout_regex(text: str) -> tuple[int, int]:
    """(lines, heads): text.count("\\n"), and the lines that do not start with a space
    (a last line without its newline counts)."""
    lines = text.count("\n")
    heads = lines + (0 if text.endswith("\n") else 1) - text.count("\n ") \
        - (1 if text.startswith(" ") else 0)
    return lines, heads


def tails_c(text: str) -> list[str]:
    """The same list from _fastscan (see ACCELERATED)."""
    return _fastscan.tails(text)


def layout_c(text: str) -> tuple[int, int]:
    """The same counts from _fastscan, in one pass (see ACCELERATED)."""
    return _fastscan.layout(text)


# What sight() returns: every tail, the fresh ones, their offsets and the newlines
# before each, the repeats, and layout()'s (lines, heads).
Sighting = tuple[list[str], list[str], list[int], list[int], int, int, int]


# How far on in a hint's tails a known tail found out of its place is looked for.
RESYNC = 64
# sight()'s hint: [the last poll's tails in text order, where in them to look next].
Hint = list[Any]


def sight_regex(text: str, known: dict[str, Any], unseen: dict[str, Any],
                seen: set[str], hint: Hint | None = None) -> Sighting:
    """The tracker's look at one chunk.  Each tail (TRACK_TAIL.findall(text), in order)
    is taken out of `unseen` (the states not yet seen this poll) if it is there; else it
    is a repeat (counted) if it is in `seen` or a key of `known`; else it is fresh: added
    to `seen`, with where it starts in text and how many newlines come before that.
    Then layout(text)'s counts.

    With a hint, a tail equal to the one expected next in the last poll's (or the one
    after it: that one changed or went) is that str, the tracker's key: in C the dict
    then finds it by identity, its hash known, with no new str to make (most of a quiet
    poll's cost).  A known tail out of its place moves the expectation to where it is,
    within RESYNC on; once that misses more than RESYNC times and more often than tails
    are where expected (a table printed in another order), the chunk's rest goes
    without.  The hint changes which equal str a tail is, nothing else."""
    tails: list[str] = []
    fresh: list[str] = []
    offsets: list[int] = []
    lines: list[int] = []
    repeats = counted = nl = 0
    prev: list[str] = hint[0] if hint is not None else []
    cur = max(0, hint[1]) if hint is not None else 0  # where in prev to look next
    hits = misses = 0
    for m in g.TRACK_TAIL.finditer(text):
        t = m[1]
        reused = False
        # the hint pays while resync misses at most RESYNC times or no more than it hits
        hinting = misses <= RESYNC or misses <= hits
        for j in range(cur, min(cur + 2, len(prev)) if hinting else cur):
            if prev[j] == t:
                t, cur, reused = prev[j], j + 1, True
                hits += 1
                break
        tails.append(t)
        if unseen and t in unseen:
            del unseen[t]
            if not reused and hinting:  # out of its place
                found = next((j + 1 for j in range(cur, min(cur + RESYNC, len(prev)))
                              if prev[j] == t), None)
                cur, misses = (found, misses) if found is not None else (cur, misses + 1)
        elif t in seen or t in known:
            repeats += 1
        else:
            seen.add(t)
            at = m.start(1)
            nl += text.count("\n", counted, at)
            counted = at
            fresh.append(t)
            offsets.append(at)
            lines.append(nl)
    if hint is not None:
        hint[1] = cur
    return (tails, fresh, offsets, lines, repeats, *layout_regex(text))


def sight_c(text: str, known: dict[str, Any], unseen: dict[str, Any],
            seen: set[str], hint: Hint | None = None) -> Sighting:
    """The same from _fastscan, in one pass."""
    return _fastscan.sight(text, known, unseen, seen, hint)


# What pairs() returns: (tail, record) of the fresh, and the lines the records take.
Pairing = tuple[list[tuple[str, FastRecord]], int]


def pairs_py(tails: list[str], i: int, records: list[FastRecord],
             fresh: set[str] | None) -> Pairing | None:
    """The bulk reader's pairing (pf/snapshot.py fresh_records) of a run of findall()'s
    records with the tails sighted from tails[i]: each tail must end with its record's
    id and creatorid.  (tail, record) of each tail in `fresh` (None: every one), and
    the lines the records take (3 each, and their tcp and origif lines); None if a
    pair does not hold or the tails run out."""
    if i < 0 or i + len(records) > len(tails):
        return None
    out = []
    lines = 0
    for t, r in zip(tails[i:i + len(records)], records, strict=False):
        if not (r[30] and r[31] and len(t) >= g.TRACK_KEY and t.endswith(r[31])
                and t.startswith(r[30], len(t) - g.TRACK_KEY)):
            return None
        lines += 3 + bool(r[18]) + bool(r[33])  # FAST_FIELDS "seq", "origif"
        if fresh is None or t in fresh:
            out.append((t, r))
    return out, lines


def pairs_c(tails: list[str], i: int, records: list[FastRecord],
            fresh: set[str] | None) -> Pairing | None:
    """The same from _fastscan, in one C loop."""
    return cast("Pairing | None", _fastscan.pairs(tails, i, records, fresh))


tails = tails_c if ACCELERATED else tails_regex
sight = sight_c if ACCELERATED else sight_regex
layout = layout_c if ACCELERATED else layout_regex
pairs = pairs_c if ACCELERATED else pairs_py
