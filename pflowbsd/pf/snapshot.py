"""How a `pfctl -ss -vv` snapshot is laid out, counted at C speed for the tracker.

The tracker does not parse a table it has seen before: it finds each record's tail
(grammar.TRACK_TAIL) with one findall and checks with a few str.count() calls that the
tails account for every state line.  These are those counts, and the way back from a
tail to the whole record when the record must be parsed after all.
"""

from __future__ import annotations

from pflowbsd.pf.grammar import TRACK_KEY, TRACK_TAIL

__all__ = ["TRACK_KEY", "TRACK_TAIL", "heads", "record_at", "state_lines"]


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
