"""Parse `pfctl -ss [-v [-v]]` text into states, exactly and fast.

Strategy: three paths, all over pf/grammar.py's regexes. The fast path takes a
text that ends in a newline (the usual case) through the table's
grammar.FAST_RECORD (its verbosity told by whether an age or id line occurs)
with findall(), in chunks of ~16 KB cut before a state line, and accepts it
when its records' line counts add up to the text's (they are whole lines, so
they then cover it). Otherwise (a truncated text, a line the fast regex did not
take, a word pfctl would not print) the checked path runs the same regex with
finditer() and hands whatever lies between or inside its matches to the strict
path: grammar.RECORD, which knows every format. A record is accepted only when
it is complete for the table's verbosity (-v tables need the age line and, for
tcp, the window line; -vv tables need the id line) and no stray continuation
line follows it. Anything else is reported once per record (a state line and
its continuation lines) as a ParseError, never raised, and parsing goes on at
the next state line. States are built by pf/record.py, which shares repeated
words through pf/tokens.py's memo caches; the garbage collector is off while a
table is built (only acyclic objects are made).

scan() is the tracker's path for a -vv table: key, state line, counters text
and span of every record, no State objects; parse_record() then parses one
record of it in full.

Input is str: decode pfctl's bytes with errors='replace' (or
'surrogateescape'; unparseable lines are then echoed with backslash escapes).
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable
from typing import NamedTuple, TextIO

from pflowbsd.pf import grammar as g
from pflowbsd.pf.fastscan import findall
from pflowbsd.pf.record import Host, State, build_into, build_strict, check_addresses, summary

__all__ = [
    "Host",
    "ParseError",
    "Scan",
    "State",
    "Table",
    "checked_states",
    "cmd_states",
    "parse_record",
    "parse_states",
    "printable",
    "scan",
    "summary",
]


class ParseError(NamedTuple):
    line: int
    text: str
    reason: str


_CONT_KINDS = (("   [", "tcp window line"), ("   age ", "age/counters line"),
               ("   id: ", "id line"), ("   origif: ", "origif line"))


class Table:
    """parse_states(): the states, one ParseError per record it could not take (lost
    counts them), and whether the text ended inside a record."""
    __slots__ = ("errors", "lost", "states", "truncated")

    def __init__(self, states: list[State], errors: list[ParseError] | None = None,
                 lost: int = 0, truncated: bool = False) -> None:
        self.states = states
        self.errors = errors if errors is not None else []
        self.lost = lost
        self.truncated = truncated

    def __repr__(self) -> str:
        return (f"<Table {len(self.states)} states, {len(self.errors)} errors,"
                f" lost={self.lost} truncated={self.truncated}>")


# scan(): ((creatorid, id), state line, "P0:P1 pkts, B0:B1 bytes", start, end) per record.
ScanRecord = tuple[tuple[str, str], str, str, int, int]


class Scan:
    """scan(): a ScanRecord per -vv record, and ParseErrors as in Table."""
    __slots__ = ("errors", "records", "truncated")

    def __init__(self, records: list[ScanRecord], errors: list[ParseError],
                 truncated: bool) -> None:
        self.records = records
        self.errors = errors
        self.truncated = truncated


def _line_at(text: str, pos: int) -> str:
    end = text.find("\n", pos)
    return text[pos:end if end >= 0 else len(text)]


def _skip_continuations(text: str, pos: int) -> int:
    """Offset of the next state line at or after pos (or len(text))."""
    while text.startswith("   ", pos):
        nl = text.find("\n", pos)
        if nl < 0:
            return len(text)
        pos = nl + 1
    return pos


# Why a line that opens a gap is not a record, when it can be told (None: it cannot).
HeadReason = Callable[[int], str | None]


class _Errors:
    """Collects the ParseErrors of one table; knows how to explain a gap."""

    def __init__(self, text: str, cut: bool) -> None:
        self.text, self.cut = text, cut
        self.errors: list[ParseError] = []
        self.lost = 0
        self.truncated = cut

    def gap(self, pos: int, end: int, line: int, head_reason: HeadReason) -> int:
        """Report text[pos:end] once per record; return the line number at end."""
        text = self.text
        while pos < end:
            nxt = _skip_continuations(text, pos if text.startswith("   ", pos)
                                      else text.find("\n", pos) + 1 or end)
            nxt = min(nxt, end)
            head = _line_at(text, pos)
            if text.startswith("   ", pos):
                reason = "continuation line outside a record"
            else:
                reason = head_reason(pos) or "not a pfctl state line"
            self.add_record(line, head, reason, nxt)
            line += text.count("\n", pos, nxt)
            pos = nxt
        return line

    def add(self, line: int, text: str, reason: str) -> None:
        self.errors.append(ParseError(line, text, reason))
        self.lost += 1

    def add_record(self, line: int, text: str, reason: str, end: int) -> None:
        """add() for a record whose lines end at offset end: a "truncated record" when
        that is the end of a cut text, or of any text where a line is missing."""
        if end >= len(self.text) and (self.cut or reason.startswith("missing")):
            self.truncated = True
            reason = "truncated record: " + reason
        self.add(line, text, reason)


def parse_states(text: str) -> Table:
    """Every state of a `pfctl -ss [-v [-v]]` text, and what could not be read."""
    was_enabled = gc.isenabled()
    gc.disable()    # only acyclic objects are made; collections only cost time
    try:
        return _parse_states(text)
    finally:
        if was_enabled:
            gc.enable()


# Per verbosity: the fast regex and the lines every record has besides its
# tcp and origif ones.
_FAST = {"ss": (g.FAST_RECORD["ss"], 1), "v": (g.FAST_RECORD["v"], 2),
         "vv": (g.FAST_RECORD["vv"], 3)}
# Where a chunk of the fast path may end: before a state line.
_RECORD_START = re.compile(r"\n(?! )")
_CHUNK = 1 << 14


def _parse_states(text: str) -> Table:
    vv = "   id: " in text
    v = "   age " in text
    cut = bool(text) and not text.endswith("\n")
    if cut:
        text += "\n"
    kind = "vv" if vv else "v" if v else "ss"
    rx, base = _FAST[kind]
    if not cut:
        try:
            states = _parse_clean(text, kind, base)
        except ValueError:
            states = None
        if states is not None:
            return Table(states)
    return _parse_checked(text, cut, v, vv, rx, base)


def _parse_clean(text: str, kind: str, base: int) -> list[State] | None:
    """The whole table as the fast regex reads it (findall(): no match
    objects), or None unless its records cover the text: records are whole
    lines, so they do iff their line counts add up to the text's. Line numbers
    assume so, and hold when it does. In chunks of ~75 records: findall()'s
    tuples stay in the CPU cache until built (a third faster than 1 MB)."""
    states: list[State] = []
    line = 1
    pos, n = 0, len(text)
    while pos < n:
        m = _RECORD_START.search(text, pos + _CHUNK)
        end = m.end() if m else n
        line = build_into(findall(kind, text, pos, end), line, base, states)
        pos = end
    return states if line - 1 == text.count("\n") else None


def _parse_checked(text: str, cut: bool, v: bool, vv: bool, rx: re.Pattern[str],
                   base: int) -> Table:
    """Fast regex where it matches and the strict grammar (with errors) between."""
    errs = _Errors(text, cut)
    states: list[State] = []
    startswith = text.startswith
    pos = 0
    line = 1
    for m in rx.finditer(text):
        s = m.start()
        if s != pos:
            line = _parse_slow(text, pos, s, line, errs, states, v, vv)
        e = m.end()
        if startswith("   ", e):
            pos = _skip_continuations(text, e)
            line = _parse_slow(text, s, pos, line, errs, states, v, vv)
            continue
        try:
            # groups() is typed as a tuple of any length; rx's groups are FAST_FIELDS
            line = build_into((m.groups(),), line, base, states)  # type: ignore[arg-type]
        except ValueError:
            line = _parse_slow(text, s, e, line, errs, states, v, vv)
        pos = e
    if pos != len(text):
        _parse_slow(text, pos, len(text), line, errs, states, v, vv)
    return Table(states, errs.errors, errs.lost, errs.truncated)


def _parse_slow(text: str, pos: int, end: int, line: int, errs: _Errors, states: list[State],
                v: bool, vv: bool) -> int:
    """The strict grammar over text[pos:end]; returns the line number at end."""
    count = text.count
    for m in g.RECORD.finditer(text, pos, end):
        s = m.start()
        if s != pos:
            line = errs.gap(pos, s, line, _no_head_reason)
        e = m.end()
        nl = count("\n", s, e)
        if ((v and m["age"] is None) or (vv and m["id"] is None)
                or (v and m["sseq"] is None and m["proto"] == "tcp")
                or text.startswith("   ", e)):
            pos = _broken(errs, text, m, s, e, line, v, vv)
            line += count("\n", s, pos)
            continue
        try:
            states.append(build_strict(m, line))
        except ValueError as exc:
            errs.add(line, _line_at(text, s), str(exc))
        pos = e
        line += nl
    if pos != end:
        line = errs.gap(pos, end, line, _no_head_reason)
    return line


def _no_head_reason(pos: int) -> str | None:
    return None


def _broken(errs: _Errors, text: str, m: re.Match[str], s: int, e: int, line: int,
            v: bool, vv: bool) -> int:
    """Report an incomplete record once; return the offset after its lines."""
    end = _skip_continuations(text, e)
    if text.startswith("   ", e):
        bad = _line_at(text, e)
        kind = next((k for p, k in _CONT_KINDS if bad.startswith(p)),
                    "unexpected continuation line")
        reason = f"malformed {kind}" if kind[0] != "u" else kind
        where, shown = line + text.count("\n", s, e), bad
    else:
        if v and m["sseq"] is None and m["proto"] == "tcp":
            what = "tcp window line"
        elif v and m["age"] is None:
            what = "age/counters line"
        else:
            what = "id line"
        reason = f"missing {what}"
        where, shown = line, _line_at(text, s)
    errs.add_record(where, shown, reason, end)
    return end


def scan(text: str) -> Scan:
    """Key, state line, counters text and span of every -vv record."""
    cut = bool(text) and not text.endswith("\n")
    if cut:
        text += "\n"
    was_enabled = gc.isenabled()
    gc.disable()    # 400k acyclic tuples: collections would only cost time
    try:
        records: list[ScanRecord] = [((m[4], m[3]), m[1], m[2], m.start(), m.end())
                   for m in g.SCAN_RECORD.finditer(text)]
    finally:
        if was_enabled:
            gc.enable()
    if sum(r[4] - r[3] for r in records) == len(text):
        return Scan(records, [], cut)
    errs = _Errors(text, cut)
    pos, line = 0, 1

    def head_reason(p: int) -> str | None:
        if g.STATE_LINE_RE.match(text, p):
            return "missing id line"
        return None
    for r in records:
        if r[3] != pos:
            line = errs.gap(pos, r[3], line, head_reason)
        line += text.count("\n", r[3], r[4])
        pos = r[4]
    if pos != len(text):
        errs.gap(pos, len(text), line, head_reason)
    return Scan(records, errs.errors, errs.truncated)


def parse_record(text: str, start: int, end: int, line: int = 0) -> State:
    """Full parse of text[start:end], one record as found by scan()."""
    m = _VV_RECORD.match(text, start, end)
    if m is not None and m.end() == end:
        out: list[State] = []
        try:
            build_into((m.groups(),), line, 3, out)  # type: ignore[arg-type]
            return check_addresses(out[0])
        except ValueError:
            pass
    m = g.RECORD.match(text, start, end)
    if m is None or m.end() != end:
        raise ValueError(f"not one pfctl state record: {text[start:end][:200]!r}")
    return check_addresses(build_strict(m, line))


_VV_RECORD = g.FAST_RECORD["vv"]


def _line_offset(text: str, line: int) -> int:
    pos = 0
    for _ in range(line - 1):
        pos = text.find("\n", pos) + 1
    return pos


def _printable(s: str) -> str:
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def checked_states(text: str) -> Table:
    """parse_states, with each state's addresses checked in its own family (the bulk
    parser leaves that to the tracker): a state that fails is moved to the errors."""
    table = parse_states(text)
    good = []
    for st in table.states:
        try:
            check_addresses(st)
        except ValueError as bad:
            table.errors.append(ParseError(st.line, _line_at(text, _line_offset(text, st.line)),
                                           str(bad)))
            continue
        good.append(st)
    table.states[:] = good
    return table


def printable(s: str) -> str:
    return _printable(s)


def cmd_states(text: str, as_json: bool, out: TextIO, err: TextIO) -> int:
    """`pflowbsd states`: a summary line (or a JSON object) per state to out, one line
    per ParseError to err; 1 when there were errors."""
    table = checked_states(text)
    for st in table.states:
        if as_json:
            out.write(json.dumps(st.to_json(), separators=(",", ":")) + "\n")
        else:
            out.write(_printable(summary(st)) + "\n")
    for e in table.errors:
        err.write(f"pflowbsd: line {e.line}: {e.reason}: {_printable(e.text)}\n")
    return 1 if table.errors else 0
