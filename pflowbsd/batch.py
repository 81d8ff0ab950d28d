"""Batches: a poll's fresh records built into States, and each failure's ParseError.

Strategy.  The Tracker's reading half (sightings.py) hands built() a Todo, the records
of a poll's new (or changed, to be read in full) tails: (tail, FastRecord, start, end),
the FastRecord None and start -1 where the bulk scanner did not take or place it.  The
records the fast scanner took are built in one batch (record.build_into, in C where
the builder is: states_of()); a batch that fails, or one with a record the scanner did
not take, is read record by record through the strict grammar (one_by_one()), so that
each bad record gets its own ParseError, with its line in the snapshot
(line_numbers()).  Pure: text in, States and errors out.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from operator import itemgetter

from pflowbsd.pf import snapshot
from pflowbsd.pf import states as pfstates
from pflowbsd.pf.grammar import FastRecord
from pflowbsd.pf.record import State, build_into

# (tail, its record or None, start or -1, end or -1) of each record to build
Todo = list[tuple[str, FastRecord | None, int, int]]
Errors = list[pfstates.ParseError]
_TAIL, _START = itemgetter(0), itemgetter(2)


def built(text: str, todo: Todo, errors: Errors, line_of: Callable[[int], int]
          ) -> Iterator[tuple[str, State | None, int]]:
    """(tail, State, start or -1) per record, its addresses left to pack_entry() (or
    check_addresses()) to check; State None for a record that failed (its ParseError
    is in errors).  Records the fast scanner took are built in one batch; the others,
    or a batch that fails, record by record."""
    states = states_of(todo)
    if states is not None:  # an iterator in C, not a generator's rounds
        return zip(map(_TAIL, todo), states, map(_START, todo))
    return one_by_one(text, todo, errors, line_of)


def states_of(todo: Todo) -> list[State] | None:
    """The States of todo's records built in one batch; None if one is not the fast
    scanner's or the batch fails."""
    fast = [r for _t, r, _s, _e in todo if r is not None]
    states: list[State] = []
    if len(fast) == len(todo):
        try:
            build_into(fast, 0, 3, states)
        except (ValueError, KeyError):
            return None
    return states if len(states) == len(todo) else None


def one_by_one(text: str, todo: Todo, errors: Errors, line_of: Callable[[int], int]
               ) -> Iterator[tuple[str, State | None, int]]:
    """built()'s records one by one, the parser's own error for each that fails."""
    for t, _r, start, end in todo:
        if start < 0:
            start, end = snapshot.span_of(text, t)
        try:
            yield t, pfstates.parse_record(text, start, end), start
        except ValueError as e:
            bad(text, t, start, e, errors, line_of)
            yield t, None, start


def bad(text: str, t: str, start: int, e: ValueError, errors: Errors,
        line_of: Callable[[int], int]) -> None:
    """The ParseError of a record that could not be read (start -1: not known)."""
    if start < 0:
        start = snapshot.span_of(text, t)[0]
    nl = text.find("\n", start)
    errors.append(pfstates.ParseError(line_of(start), text[start:nl if nl >= 0 else None], str(e)))


def line_numbers(text: str, line: int, lines: tuple[list[int], list[int]] | None
                 ) -> Callable[[int], int]:
    """offset -> line number in the snapshot, for an error's message: counted from
    `line` at the text's start, or (records joined one after another) the line of the
    record the offset lies in, from (their starts, their lines)."""
    if lines is None:
        return lambda at: line + text.count("\n", 0, at)
    starts, numbers = lines
    return lambda at: numbers[max(0, bisect.bisect_right(starts, at) - 1)]
