"""Which states are exported, and why: the `select` tests and the Selector.

pflow(4) exports a state when the kernel set PFSTATE_PFLOW on it, which it
copies from the creating pass rule's PFRULE_PFLOW (`keep state (pflow)`,
or `set state-defaults pflow` on a pass rule with no state clause).  The
`select` words of our configuration widen that: by label pattern, rule
number, interface, or everything; several tests OR together.  `read_select`
reads those words once, where the configuration is read (pflowbsd.config),
into SelectTest tuples; the Selector asks them.  Each answer carries a short
reason, so `pflowbsd rules` can show it.  This module imports nothing heavy
(no pyparsing): the configuration imports it.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:   # for annotations only: the rule grammar is not loaded here
    from pflowbsd.rules.model import Rule

# The test kinds and how many words follow each (`rule` may take an anchor
# before its number).
SELECT_ARGS = {"all": 0, "label": 1, "interface": 1, "rule": 1}


class SelectTest(NamedTuple):
    """One `select` test: ("all", None), ("label", PATTERN),
    ("interface", NAME) or ("rule", (ANCHOR, NR)), ANCHOR "" for the main
    ruleset."""
    kind: str
    arg: str | tuple[str, int] | None = None


class SelectError(ValueError):
    """`select` words that name no test."""


def read_select(words: Sequence[str], i: int = 0) -> tuple[SelectTest, int]:
    """`all | label PAT | interface IF | rule [ANCHOR] N` at words[i:]:
    the test, and the index of the word after it."""
    if i >= len(words) or words[i] not in SELECT_ARGS:
        raise SelectError("select: want all, label PATTERN, interface IF or "
                          "rule [ANCHOR] N")
    kind = words[i]
    n = SELECT_ARGS[kind]
    if kind == "rule" and i + 1 < len(words) and not words[i + 1].isdigit():
        n = 2
    args = words[i + 1:i + 1 + n]
    if len(args) < n or (kind == "rule" and not args[-1].isdigit()):
        raise SelectError(f"select {kind}: missing or bad argument")
    end = i + 1 + n
    if kind == "all":
        return SelectTest("all"), end
    if kind == "rule":
        anchor = args[0].strip("/") if n == 2 else ""
        try:
            return SelectTest("rule", (anchor, int(args[-1]))), end
        except ValueError:      # a digit int() does not read, such as ²
            raise SelectError(f"select {kind}: missing or bad argument") \
                from None
    return SelectTest(kind, args[0]), end


def hit(test: SelectTest, rule: Rule | None, ifname: str | None) -> str | None:
    """Why the test selects the rule (or the state on ifname), or None."""
    match test:
        case SelectTest("all", _):
            return "select all"
        case SelectTest("label", str(pattern)):
            if rule is not None and rule.label is not None \
                    and fnmatch.fnmatchcase(rule.label, pattern):
                return f"label matches {pattern}"
        case SelectTest("interface", str(name)):
            if ifname == name or (rule is not None and rule.ifname == name):
                return f"interface {name}"
        case SelectTest("rule", (str(anchor), int(nr))):
            if rule is not None and rule.nr == nr and rule.anchor == anchor:
                return f"rule {anchor + '/' if anchor else ''}{nr} selected"
    return None


class Selector:
    """The `select ...` configuration: SelectTests, any of which selects."""

    def __init__(self, tests: Iterable[SelectTest] = ()) -> None:
        self.tests = list(tests)

    @classmethod
    def from_config(cls, tests: Iterable[SelectTest],
                    export_all: bool = False) -> Selector:
        """The configuration's select tests; `export all` adds the test all."""
        return cls([*tests, *([SelectTest("all")] if export_all else [])])

    def decide_rule(self, rule: Rule | None,
                    ifname: str | None = None) -> tuple[bool, str]:
        if rule is not None and rule.action == "pass" and rule.pflow:
            return True, "rule has pflow"
        for test in self.tests:
            why = hit(test, rule, ifname)
            if why:
                return True, why
        return False, "no pflow, not selected"

    def decide(self, state: object, rule: Rule | None) -> tuple[bool, str]:
        """A state (any object: its pflow, ifname and orig_ifname are read if
        it has them) and the rule that created it, if known."""
        if getattr(state, "pflow", False):
            return True, "state has pflow"
        ifname = getattr(state, "ifname", None)
        if ifname == "all":
            ifname = getattr(state, "orig_ifname", None) or ifname
        ok, why = self.decide_rule(rule, ifname)
        if rule is None and not ok:
            return False, "rule unknown, no pflow"
        return ok, why
