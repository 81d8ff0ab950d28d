"""The fast path's scanner: grammar.FAST_RECORD's findall(), one FastRecord per record.

Strategy.  Every bulk reader of a state table (parse_states, the tracker's first
sighting) goes through findall() here, so an accelerated scanner can stand in for the
regex in one place.  This is the pure-Python one: the regex itself.
"""

from __future__ import annotations

from pflowbsd.pf import grammar as g
from pflowbsd.pf.grammar import FastRecord

_RX = g.FAST_RECORD


def findall(kind: str, text: str, pos: int = 0, end: int | None = None) -> list[FastRecord]:
    """FAST_RECORD[kind].findall(text, pos, end): kind "ss", "v" or "vv"."""
    return _RX[kind].findall(text, pos, len(text) if end is None else end)
