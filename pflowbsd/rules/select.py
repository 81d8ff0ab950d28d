"""Which states are exported, and why.

pflow(4) exports a state when the kernel set PFSTATE_PFLOW on it, which it
copies from the creating pass rule's PFRULE_PFLOW (`keep state (pflow)`,
or `set state-defaults pflow` on a pass rule with no state clause).  The
`select` lines of our configuration widen that: by label pattern, rule
number, interface, or everything; several lines OR together.  Each answer
carries a short reason, so `pflowbsd rules` (pflowbsd.rules.show) can show it.
"""
import fnmatch
import shlex


def rule_reason(rule):
    if rule is None:
        return None
    if rule.action == "pass" and rule.pflow:
        return "rule has pflow"
    return None


class Selector:
    """The `select ...` configuration: a list of (kind, args) tests."""

    def __init__(self, tests=()):
        self.tests = list(tests)

    @classmethod
    def from_config(cls, lines):
        tests = []
        for line in lines:
            words = shlex.split(line)
            if words and words[0] in ("select", "export"):
                words = words[1:]
            if not words:
                raise ValueError(f"empty select: {line!r}")
            kind, args = words[0], words[1:]
            if kind == "all" and not args:
                tests.append(("all", None))
            elif kind == "pflow" and not args:
                continue
            elif kind == "label" and len(args) == 1:
                tests.append(("label", args[0]))
            elif kind == "interface" and len(args) == 1:
                tests.append(("interface", args[0]))
            elif kind == "rule" and len(args) == 1 and args[0].isdigit():
                tests.append(("rule", ("", int(args[0]))))
            elif kind == "rule" and len(args) == 2 and args[1].isdigit():
                tests.append(("rule", (args[0].strip("/"), int(args[1]))))
            else:
                raise ValueError(f"cannot read select: {line!r}")
        return cls(tests)

    def decide_rule(self, rule, ifname=None):
        why = rule_reason(rule)
        if why:
            return True, why
        for kind, arg in self.tests:
            hit = SELECT_TESTS[kind](arg, rule, ifname)
            if hit:
                return True, hit
        return False, "no pflow, not selected"

    def decide(self, state, rule):
        if getattr(state, "pflow", False):
            return True, "state has pflow"
        ifname = getattr(state, "ifname", None)
        if ifname == "all":
            ifname = getattr(state, "orig_ifname", None) or ifname
        ok, why = self.decide_rule(rule, ifname)
        if rule is None and not ok:
            return False, "rule unknown, no pflow"
        return ok, why


def _all(arg, rule, ifname):
    return "select all"


def _label(pattern, rule, ifname):
    if rule is not None and rule.label is not None \
            and fnmatch.fnmatchcase(rule.label, pattern):
        return f"label matches {pattern}"
    return None


def _interface(name, rule, ifname):
    if ifname == name or (rule is not None and rule.ifname == name):
        return f"interface {name}"
    return None


def _rule(anchor_nr, rule, ifname):
    anchor, nr = anchor_nr
    if rule is not None and rule.nr == nr and rule.anchor == anchor:
        return f"rule {anchor + '/' if anchor else ''}{nr} selected"
    return None


SELECT_TESTS = {"all": _all, "label": _label, "interface": _interface,
                "rule": _rule}

