"""How a `pfctl -ss -vv` snapshot is laid out, counted at C speed for the tracker.

The tracker does not parse a table it has seen before: it finds each record's tail
(grammar.TRACK_TAIL) with one scan and checks with the text's layout counts that the
tails account for every state line.  These are those counts, and the way back from a
tail to the whole record when the record must be parsed after all.

When many records must be parsed (a first poll, a busy interval), finding each one
costs more than reading them all: fresh_records() runs the fast scanner over the whole
text in chunks, pairs its records with the tails in text order, and hands out the
fresh ones' groups, unbuilt, a chunk at a time (so that only one chunk's groups are
alive at once).  From a chunk whose records are not exactly its tails' and every line
on, it hands out spans instead, so the record-by-record path names what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

from pflowbsd.pf import fastscan
from pflowbsd.pf.fastscan import findall, pairs
from pflowbsd.pf.grammar import TRACK_KEY, TRACK_TAIL, FastRecord

__all__ = [
    "PARTIAL_SHARE",
    "TRACK_KEY",
    "TRACK_TAIL",
    "fresh_records",
    "layout",
    "one_record",
    "partial_reason",
    "record_at",
    "record_chunks",
    "sight",
    "span_of",
    "spans",
    "state_lines",
]


def layout(text: str) -> tuple[int, int]:
    """(lines, heads) of a text: its newlines, and its lines that do not start with a
    space (state lines, and garbage), counted at C speed."""
    return fastscan.layout(text)


def sight(text: str, known: dict[str, Any], unseen: dict[str, Any],
          seen: set[str], hint: fastscan.Hint | None = None) -> fastscan.Sighting:
    """A chunk's tails, each taken out of `unseen` or counted a repeat or fresh (with its
    offset and the newlines before it), and layout(): fastscan.sight_regex's (`hint`:
    the last poll's tails, whose str a tail equal to one is)."""
    return fastscan.sight(text, known, unseen, seen, hint)


def state_lines(text: str) -> int:
    """State lines only: each holds the 7 spaces print_state() puts before the state
    pair ("    " then "   %s:%s"), and no other line pfctl prints does."""
    return text.count("       ")


def record_at(text: str, at: int) -> tuple[int, int]:
    """The span of the record whose counters line holds offset `at`."""
    start = text.rfind("\n", 0, at) + 1  # the age line
    while start > 0 and text.startswith(" ", start):
        start = text.rfind("\n", 0, start - 1) + 1
    end = text.find("\n", at)
    end = len(text) if end < 0 else end + 1  # past the id line
    end = text.find("\n", end) + 1 or len(text)
    while text.startswith(" ", end):  # FreeBSD origif:, pfSense gateway:
        end = text.find("\n", end) + 1 or len(text)
    return start, end


# A poll whose table holds fewer than this share of `pfctl -si -v`'s `current entries`
# (read just before `-ss`, in the same poll) is partial.  Between the two calls pf only
# purges what timed out and what ended: far less than half of a table in the second
# or so they take (a whole flush shows at the next poll as `current entries 0`), so
# churn never trips it, while a table cut to 30 % (or to anything under half) always does.
PARTIAL_SHARE = 0.5


def partial_reason(text: str, entries: int | None) -> str | None:
    """Why a `-ss -vv` text taken with `current entries` (None: not known for this
    poll) is no whole table, or None.  Empty output is a flush only when pf says
    `current entries 0` (with no count: as pfctl printed it, an empty table)."""
    return partial_reason_counts(not text.strip(), text.count("   id: "), entries)


def partial_reason_counts(blank: bool, records: int, entries: int | None) -> str | None:
    """partial_reason() from what a reader counted: whether the output was blank, and
    how many records (id lines) it held."""
    if blank:
        return None if not entries else f"empty output, current entries {entries}"
    if records == 0:
        return "no parseable state"
    if entries is not None and records < entries * PARTIAL_SHARE:
        return f"{records} states of {entries} current entries"
    return None


# Where a chunk of fresh_records() may end: before a state line.
_RECORD_START = re.compile(r"\n(?! )")
_CHUNK = 1 << 14


def fresh_records(text: str, tails: Sequence[str], fresh: Collection[str]
                  ) -> Iterator[list[tuple[str, FastRecord]] | list[tuple[str, int, int]]]:
    """Chunk by chunk, (tail, its grammar.FastRecord) of each record whose tail is in
    `fresh`, in text order.  From a chunk whose records are not exactly its tails' (one
    each) or do not cover its every line on: (tail, start, end) spans of the remaining
    fresh records instead, for the record-by-record path to read and judge."""
    pos, n, i = 0, len(text), 0
    count = text.count
    order = tails if isinstance(tails, list) else list(tails)
    # every tail fresh (a first poll): no set to ask
    only: set[str] | None = (None if len(fresh) >= len(order)
                             else fresh if isinstance(fresh, set) else set(fresh))
    while pos < n:
        m = _RECORD_START.search(text, pos + _CHUNK)
        end = m.end() if m else n
        recs = findall("vv", text, pos, end)
        paired = pairs(order, i, recs, only)  # the records are the tails', in order
        if paired is not None and paired[1] == count("\n", pos, end):
            yield paired[0]
            i += len(recs)
            pos = end
            continue
        yield spans(text, [t for t in tails[i:] if t in fresh], pos)
        return


def one_record(text: str, start: int, end: int) -> FastRecord | None:
    """The fast scanner's groups of the one record text[start:end], or None unless it
    takes exactly those lines (the record is then the strict grammar's to read)."""
    recs = findall("vv", text, start, end)
    if len(recs) != 1:
        return None
    r = recs[0]
    if text[start] == " " or 3 + bool(r[18]) + bool(r[33]) != text.count("\n", start, end):
        return None
    return r


def span_of(text: str, tail: str) -> tuple[int, int]:
    """The span of the record whose tail this is (the first, as spans() finds it)."""
    return spans(text, (tail,))[0][1:]


def spans(text: str, order: Sequence[str], pos: int = 0,
          offsets: Sequence[int] | None = None) -> list[tuple[str, int, int]]:
    """(tail, start, end) of each tail's record, the tails in text order from pos (or
    at `offsets`, where sight() found them)."""
    if offsets is not None:
        return [(t, *record_at(text, at)) for t, at in zip(order, offsets, strict=True)]
    out = []
    for t in order:  # with what TRACK_TAIL matched before it: the same text elsewhere is no tail
        pos = text.find(" pkts, " + t, pos) + 7
        out.append((t, *record_at(text, pos)))
        pos += len(t)  # a tail twice is found twice
    return out


def record_chunks(data: Iterable[bytes]) -> Iterator[str]:
    """pfctl's output as it arrives (blocks of bytes, cut anywhere) -> text chunks that
    each end just before a state line, so that no record is split (the last one holds
    whatever is left, cut or not).  Decoded as pfctl's whole output would be
    (errors="replace"): a cut after a newline never splits a UTF-8 sequence."""
    rest = b""
    for block in data:
        buf = rest + block if rest else block
        i = buf.rfind(b"\n", 0, len(buf) - 1)
        while i >= 0 and buf[i + 1] == 0x20:  # a continuation line: cut before its record
            i = buf.rfind(b"\n", 0, i)
        if i < 0:
            rest = buf
            continue
        yield buf[:i + 1].decode(errors="replace")
        rest = buf[i + 1:]
    if rest:
        yield rest.decode(errors="replace")
