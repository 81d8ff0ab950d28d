"""pf rules as the kernel numbers them: Rule, Ruleset and its lookup, and the
reader of `pfctl [-a '*'] -sr -vv` listings.

A state names the rule that created it as `rule N` or `anchor M, rule N`
(pf_print_state.c); N is the rule's index in its own ruleset, which only the
loaded ruleset knows for sure.  So `parse_listing` reads the `@N` numbers pfctl
prints with -vv, one rule a line through the shared grammar
(pflowbsd.rules.grammar).  A pf.conf (pflowbsd.rules.pfconf) builds the same
Rules with the numbers pfctl would give with the optimizer off, and says so in
Ruleset.source; pflowbsd.rules.load tells the two texts apart.  No I/O here.
"""
import re
from dataclasses import dataclass, field

import pyparsing as pp

from pflowbsd.rules.grammar import Spec
from pflowbsd.rules.hosts import ANY, Endpoint, Host, Port
from pflowbsd.rules.shapes import parse_rule_cached

# Rulesets other than the filter one number their rules separately
# (FreeBSD prints the scrub ruleset first, with its own @0...).
FILTER_ACTIONS = frozenset(("pass", "block", "match", "anchor"))

# A state option's value: a number, a word, or True for a flag (`pflow`).
StateOpt = int | str | bool


class RuleSyntaxError(Exception):
    """A rule pf would reject, or one we cannot read, at file:line."""

    def __init__(self, file: str, line: int | str, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


@dataclass
class Rule:
    anchor: str = ""
    nr: int | None = None
    action: str = "pass"
    direction: str | None = None
    quick: bool = False
    ifname: str | None = None          # "!em0" when negated
    af: str | None = None
    proto: tuple[str, ...] | None = None
    src: Endpoint = Endpoint(ANY, None)
    dst: Endpoint = Endpoint(ANY, None)
    keep_state: str | None = None      # keep/modulate/synproxy/no; None=implicit
    state_opts: dict[str, StateOpt] = field(default_factory=dict)
    pflow: bool = False
    timeouts: dict[str, int] = field(default_factory=dict)
    label: str | None = None
    tag: str | None = None
    line: int | None = None
    text: str = ""
    call: str | None = None            # anchor rules: the path they call
    printed: str | None = None         # as pfctl -nv prints it, if known
    # pf.conf: the expanded rule's spec, every word it was written with
    # (the optimizer compares rules on it)
    spec: Spec | None = field(default=None, repr=False, compare=False)

    @property
    def ruleset(self) -> str:
        """Which numbering sequence the rule belongs to."""
        return "filter" if self.action in FILTER_ACTIONS else self.action

    def effective_state(self) -> str | None:
        """The state a rule really keeps: pf passes keep state by default."""
        if self.action != "pass":
            return self.keep_state if self.keep_state != "no" else None
        return self.keep_state or "keep" if self.keep_state != "no" else "no"

    def key(self) -> tuple[object, ...]:
        """The fields two readings of one rule must agree on."""
        return (self.anchor, self.action, self.direction, self.quick,
                self.ifname, self.af, self.proto, self.src, self.dst,
                self.effective_state(), tuple(sorted(self.state_opts.items())),
                self.pflow, tuple(sorted(self.timeouts.items())),
                self.label, self.tag, self.call)


@dataclass
class Ruleset:
    rules: list[Rule] = field(default_factory=list)
    source: str = "pfctl"
    timeouts: dict[str, int] = field(default_factory=dict)
    # `set state-defaults`: state options, and their timeouts under "timeouts"
    state_defaults: dict[str, StateOpt | dict[str, int]] = field(
        default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # anchors filled by `load anchor`, called or not (pfctl -nv prints them)
    loaded: list[str] = field(default_factory=list)
    # pf.conf: per anchor, the file:line after which numbers are unknown
    stopped: dict[str, str] = field(default_factory=dict)
    # Built on the first lookup: (anchor, nr) -> rule, and for each anchor
    # rule number the anchor paths its rules call.
    _index: dict[tuple[str, int], Rule] | None = field(
        default=None, init=False, repr=False, compare=False)
    _calls: dict[int, list[str]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def _build_index(self) -> dict[tuple[str, int], Rule]:
        """Built once per ruleset: lookups run for every new state of a poll."""
        index: dict[tuple[str, int], Rule] = {}
        callers: dict[int, list[Rule]] = {}
        for r in self.rules:
            if r.nr is not None and r.ruleset == "filter":
                index.setdefault((r.anchor, r.nr), r)
            if r.action == "anchor" and r.nr is not None and r.call is not None:
                callers.setdefault(r.nr, []).append(r)
        # `anchor M` is the number of the anchor rule that called the ruleset
        # (pf_print_state.c prints st->anchor.ptr->nr): every ruleset some
        # anchor rule numbered M calls, at any depth, is a candidate.
        self._calls = {nr: list(dict.fromkeys(r.call for r in rules
                                              if r.call is not None))
                       for nr, rules in callers.items()}
        self._index = index
        return index

    def resolve(self, anchor: int | None, nr: int | None
                ) -> tuple[Rule | None, str]:
        """The rule a state's `anchor M, rule N` / `rule N` refers to, and
        why not when there is none: the pair (M, N) is decided only when one
        rule fits both numbers; several that fit are reported, not guessed."""
        if nr is None:
            return None, "no rule number"
        index = self._index if self._index is not None else self._build_index()
        if anchor is None:
            rule = index.get(("", nr))
            return rule, "" if rule else f"no rule {nr}"
        hits: list[Rule] = []
        for call in self._calls.get(anchor, ()):
            found = index.get((call, nr))
            if found is not None:
                hits.append(found)
            elif call.endswith("*"):
                prefix = call[:-1]
                hits += [r for (a, n), r in index.items()
                         if n == nr and a.startswith(prefix)]
        hits = list({id(h): h for h in hits}.values())
        if len(hits) == 1:
            return hits[0], ""
        if not hits:
            return None, f"no rule {nr} in anchor {anchor}"
        paths = ", ".join(sorted({h.anchor for h in hits}))
        return None, f"anchor {anchor}, rule {nr} is ambiguous ({paths})"

    def lookup(self, anchor: int | None, nr: int | None) -> Rule | None:
        """The rule a state's `anchor M, rule N` / `rule N` refers to, or
        None when no rule, or more than one, fits (see resolve)."""
        return self.resolve(anchor, nr)[0]


def endpoint_of(side: tuple[list[Host] | None, list[Port] | None] | None
                ) -> Endpoint:
    """An Endpoint from a (hosts, ports) pair holding one element each."""
    if side is None:
        return Endpoint(ANY, None)
    hosts, ports = side
    host = hosts[0] if hosts else ANY
    return Endpoint(host, ports[0] if ports else None)


def rule_from_spec(spec: Spec, anchor: str = "", nr: int | None = None,
                   line: int | None = None, text: str = "") -> Rule:
    """A Rule from a spec whose lists hold one element (pfctl's print)."""
    ifaces = spec.get("ifaces")
    ifname = None
    if ifaces:
        neg, name = ifaces[0]
        ifname = ("!" if neg else "") + name
    protos = spec.get("protos")
    rule = Rule(anchor=anchor, nr=nr, action=spec["action"],
                direction=spec.get("direction"), quick=spec.get("quick", False),
                ifname=ifname, af=spec.get("af"),
                proto=tuple(protos) if protos else None,
                src=endpoint_of(spec.get("from")),
                dst=endpoint_of(spec.get("to")),
                keep_state=spec.get("keep_state"),
                state_opts=dict(spec.get("state_opts", {})),
                timeouts=dict(spec.get("timeouts", {})),
                label=spec.get("label"), tag=spec.get("tag"),
                line=line, text=text)
    rule.pflow = bool(rule.state_opts.get("pflow"))
    return rule


def anchor_path(parent: str, name: str | None, unnamed: int) -> str:
    """The path of the anchor `name` called from `parent` (parse.y: a leading
    `/` is from the root; an unnamed `anchor { }` is `_N`, N counting every
    inline `{ }` anchor so far, named ones too: pf->bn)."""
    if name is None:
        return (parent + "/" if parent else "") + f"_{unnamed}"
    if name.startswith("/"):
        return name[1:]
    return (parent + "/" if parent else "") + name


# --- the listing: `pfctl [-a '*'] -sr -vv` -----------------------------------

RULE_LINE = re.compile(r"^@(\d+)(?:\((\d+)\))? (.*)$")
# -vv prints live counts: <table:N>, (ifname:N); drop them.
LIVE_TABLE = re.compile(r"<([^<>:\s]+):(?:\d+|\*)>")
LIVE_DYN = re.compile(r"\(([^()\s]+):(?:\d+|\*)\)")
PRINTED_ACTIONS = ("pass", "block", "match", "anchor", "nat", "no", "rdr",
                   "binat", "scrub")


def parse_listing(text: str, name: str = "pfctl -sr",
                  numbered: bool = True) -> Ruleset:
    """Read `pfctl [-a '*'] -sr -vv` output into a Ruleset (source 'pfctl').

    numbered=False reads `pfctl -nvf` output instead: rules without @N,
    among other lines (macros, options, tables) that are passed over.
    """
    rs = Ruleset(source="pfctl")
    stack = [""]
    unnamed = 0         # parse.y's pf->bn: every inline `{ }` anchor
    pending = False     # a named anchor's `{`: inline if its body has rules
    lineno = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("["):
            continue
        if pending:
            unnamed += line != "}"
            pending = False
        if line == "}":
            if len(stack) == 1:
                raise RuleSyntaxError(name, lineno, "unbalanced '}'")
            stack.pop()
            continue
        m = RULE_LINE.match(line)
        if not numbered:
            if line.split(" ", 1)[0] not in PRINTED_ACTIONS:
                continue
            m = RULE_LINE.match("@0 " + line)
        if m is None:
            if line.startswith(("No ALTQ", "ALTQ related")):
                continue
            raise RuleSyntaxError(name, lineno, "expected @N rule")
        body = m.group(3)
        if numbered:
            body = LIVE_DYN.sub(r"(\1)", LIVE_TABLE.sub(r"<\1>", body))
        try:
            spec = parse_rule_cached(body)
        except pp.ParseBaseException as exc:
            rs.warnings.append(f"{name}:{lineno}: skipped, not understood "
                               f"near {body[exc.loc:exc.loc + 20]!r}")
            if body.rstrip().endswith("{"):
                stack.append(f"?{lineno}")
            continue
        nr = int(m.group(1)) if numbered else None
        rule = rule_from_spec(spec, stack[-1], nr, lineno, m.group(3))
        if rule.action == "anchor":
            if spec.get("anchor_name") is None:
                unnamed += 1
            elif spec.get("block_open"):
                pending = True
            rule.call = anchor_path(stack[-1], spec.get("anchor_name"),
                                    unnamed)
            if spec.get("block_open"):
                stack.append(rule.call)
        rs.rules.append(rule)
    if len(stack) != 1:
        raise RuleSyntaxError(name, lineno, "missing '}'")
    return rs
