"""pf rules: the Rule model, the `pfctl -sr -vv` listing reader, Ruleset lookup.

A state names the rule that created it as `rule N` or `anchor M, rule N`
(pf_print_state.c); N is the rule's index in its own ruleset, which only
the loaded ruleset knows for sure.  So `parse_listing` reads the `@N` numbers
pfctl prints with -vv; a pf.conf (pflowbsd.pfconf) gives the numbers pfctl
would give with the optimizer off, and says so in Ruleset.source.  Both go
through the one grammar in pflowbsd.rulegrammar.  No I/O here.
"""
import re
from dataclasses import dataclass, field

import pyparsing as pp

from pflowbsd.rules.grammar import ANY, Endpoint, parse_rule_text

# Rulesets other than the filter one number their rules separately
# (FreeBSD prints the scrub ruleset first, with its own @0...).
FILTER_ACTIONS = frozenset(("pass", "block", "match", "anchor"))


class RuleSyntaxError(Exception):
    """A rule pf would reject, or one we cannot read, at file:line."""

    def __init__(self, file, line, message):
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
    proto: tuple | None = None
    src: Endpoint = Endpoint(ANY, None)
    dst: Endpoint = Endpoint(ANY, None)
    keep_state: str | None = None      # keep/modulate/synproxy/no; None=implicit
    state_opts: dict = field(default_factory=dict)
    pflow: bool = False
    timeouts: dict = field(default_factory=dict)
    label: str | None = None
    tag: str | None = None
    line: int | None = None
    text: str = ""
    opts: dict = field(default_factory=dict)   # everything else, by name
    call: str | None = None            # anchor rules: the path they call

    @property
    def ruleset(self):
        """Which numbering sequence the rule belongs to."""
        return "filter" if self.action in FILTER_ACTIONS else self.action

    def effective_state(self):
        """The state a rule really keeps: pf passes keep state by default."""
        if self.action != "pass":
            return self.keep_state if self.keep_state != "no" else None
        return self.keep_state or "keep" if self.keep_state != "no" else "no"

    def key(self):
        """The fields two readings of one rule must agree on."""
        return (self.anchor, self.action, self.direction, self.quick,
                self.ifname, self.af, self.proto, self.src, self.dst,
                self.effective_state(), tuple(sorted(self.state_opts.items())),
                self.pflow, tuple(sorted(self.timeouts.items())),
                self.label, self.tag, self.call)


@dataclass
class Ruleset:
    rules: list = field(default_factory=list)
    source: str = "pfctl"
    timeouts: dict = field(default_factory=dict)
    limit_states: int | None = None
    optimization: str | None = None
    state_defaults: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    def __post_init__(self):
        self._index = None
        self._callers = None

    def _build_index(self):
        """Built once per ruleset: lookups run for every new state of a poll."""
        self._index, self._callers = {}, {}
        for r in self.rules:
            if r.nr is not None and r.ruleset == "filter":
                self._index.setdefault((r.anchor, r.nr), r)
            if r.action == "anchor" and r.nr is not None and r.call is not None:
                self._callers.setdefault(r.nr, []).append(r)
        # `anchor M` is the number of the anchor rule that called the ruleset; nested
        # anchors make it ambiguous, so the main ruleset's callers come first.
        for callers in self._callers.values():
            callers.sort(key=lambda r: r.anchor.count("/") + bool(r.anchor))

    def lookup(self, anchor, nr):
        """The rule a state's `anchor M, rule N` / `rule N` refers to."""
        if nr is None:
            return None
        if self._index is None:
            self._build_index()
        if anchor is None:
            return self._index.get(("", nr))
        for caller in self._callers.get(anchor, ()):
            found = self._index.get((caller.call, nr))
            if found is not None:
                return found
            if caller.call.endswith("*"):
                prefix = caller.call[:-1]
                hits = [r for (a, n), r in self._index.items()
                        if n == nr and a.startswith(prefix)]
                if len(hits) == 1:
                    return hits[0]
        return None


def endpoint_of(side):
    """An Endpoint from a (hosts, ports) pair holding one element each."""
    if side is None:
        return Endpoint(ANY, None)
    hosts, ports = side
    host = hosts[0] if hosts else ANY
    return Endpoint(host, ports[0] if ports else None)


PLAIN = {"label", "tag", "direction", "af"}


def rule_from_spec(spec, anchor="", nr=None, line=None, text=""):
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
    skip = PLAIN | {"action", "quick", "ifaces", "protos", "from", "to",
                    "keep_state", "state_opts", "timeouts", "all", "repeated"}
    rule.opts = {k: v for k, v in spec.items() if k not in skip}
    return rule


# --- the listing: `pfctl [-a '*'] -sr -vv` -----------------------------------

RULE_LINE = re.compile(r"^@(\d+)(?:\((\d+)\))? (.*)$")
# -vv prints live counts: <table:N>, (ifname:N); drop them.
LIVE_TABLE = re.compile(r"<([^<>:\s]+):(?:\d+|\*)>")
LIVE_DYN = re.compile(r"\(([^()\s]+):(?:\d+|\*)\)")


def anchor_path(parent, name, unnamed):
    if name is None:
        return (parent + "/" if parent else "") + f"_{unnamed}"
    if name.startswith("/"):
        return name[1:]
    return (parent + "/" if parent else "") + name


PRINTED_ACTIONS = ("pass", "block", "match", "anchor", "nat", "no", "rdr",
                   "binat", "scrub")


def parse_listing(text, name="pfctl -sr", numbered=True):
    """Read `pfctl [-a '*'] -sr -vv` output into a Ruleset (source 'pfctl').

    numbered=False reads `pfctl -nvf` output instead: rules without @N,
    among other lines (macros, options, tables) that are passed over.
    """
    rs = Ruleset(source="pfctl")
    stack = [""]
    unnamed = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("["):
            continue
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
            spec = parse_rule_text(body)
        except pp.ParseBaseException as exc:
            rs.warnings.append(f"{name}:{lineno}: skipped, not understood "
                               f"near {body[exc.loc:exc.loc + 20]!r}")
            if body.rstrip().endswith("{"):
                stack.append(f"?{lineno}")
            continue
        nr = int(m.group(1)) if numbered else None
        rule = rule_from_spec(spec, stack[-1], nr, lineno,
                              m.group(3))
        if rule.action == "anchor":
            if spec.get("anchor_name") is None:
                unnamed += 1
            rule.call = anchor_path(stack[-1], spec.get("anchor_name"),
                                    unnamed)
            if spec.get("block_open"):
                stack.append(rule.call)
        rs.rules.append(rule)
    if len(stack) != 1:
        raise RuleSyntaxError(name, lineno, "missing '}'")
    return rs


LISTING_MARK = re.compile(r"^@\d+(\(\d+\))? ", re.M)


def load_ruleset(text, name, read_file=None, defines=None):
    """A listing if the text has @N lines, else a pf.conf."""
    if LISTING_MARK.search(text):
        return parse_listing(text, name)
    from pflowbsd.rules.pfconf import parse_pfconf
    return parse_pfconf(text, name, read_file=read_file, defines=defines)
