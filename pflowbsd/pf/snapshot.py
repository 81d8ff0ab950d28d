"""How a `pfctl -ss -vv` snapshot is laid out, counted at C speed for the tracker.

The tracker does not parse a table it has seen before: it finds each record's tail
(grammar.TRACK_TAIL) with one findall and checks with a few str.count() calls that the
tails account for every state line.  These are those counts, and the way back from a
tail to the whole record when the record must be parsed after all.
"""

from __future__ import annotations

from pflowbsd.pf.grammar import TRACK_KEY, TRACK_TAIL

__all__ = ["PARTIAL_SHARE", "TRACK_KEY", "TRACK_TAIL", "heads", "partial_reason", "record_at",
           "state_lines"]


def heads(text: str) -> int:
    """Lines that do not start with a space: state lines, and garbage (C-speed counts)."""
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    return lines - text.count("\n ") - (1 if text.startswith(" ") else 0)


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
    if not text.strip():
        return None if not entries else f"empty output, current entries {entries}"
    n = text.count("   id: ")
    if n == 0:
        return "no parseable state"
    if entries is not None and n < entries * PARTIAL_SHARE:
        return f"{n} states of {entries} current entries"
    return None
