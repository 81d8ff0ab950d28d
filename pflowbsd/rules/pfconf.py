"""pf.conf front end: statements, macros, includes, anchors, options → Ruleset.

The tokens are pfctl's yylex()'s (pflowbsd.rules.lexer).  A statement ends at
a newline outside `{ }` lists, or where an `anchor ... {` opens a block of
statements; each is dispatched on its first word, as parse.y's grammar does:
macro definitions, `include`, `set` options, `load anchor`, tables and queues
(checked, not kept), and rules.  A rule statement is put back together as text
(macros expanded, comments gone), read by the shared rule grammar, checked
(pflowbsd.rules.check), and expanded and numbered in pfctl's order
(pflowbsd.rules.expand).  Files are read through the `read_file` callable the
caller passes in; without it, `include` is an error and `load anchor` a
warning.
"""
from collections.abc import Callable, Iterator, Mapping, Sequence

import pyparsing as pp

from pflowbsd.rules import expand as ruleexpand
from pflowbsd.rules.check import check_queue, check_spec, check_table
from pflowbsd.rules.grammar import STATE_OPT_LIST, TIMEOUT_NAMES
from pflowbsd.rules.hosts import pf_number
from pflowbsd.rules.ifa import IfTable
from pflowbsd.rules.lexer import Lexer, ReadFile, Token, join, line_at
from pflowbsd.rules.model import Ruleset, RuleSyntaxError, anchor_path
from pflowbsd.rules.optimize import automatic_tables
from pflowbsd.rules.shapes import parse_rule_cached

RULE_WORDS = {"pass", "block", "match", "anchor", "nat", "rdr", "binat",
              "no", "scrub", "antispoof"}
# Statements that carry no rule: tables, queues, ether rules, ...
SKIPPED_WORDS = {"altq", "ether", "nat-anchor",
                 "rdr-anchor", "binat-anchor", "dummynet"}
# After these an anchor's `{` opens a list, not a block of rules.
LIST_OPENERS = ("from", "to", "on", "proto", "port", "user", "group",
                "icmp-type", "os", "icmp6-type", "nat-to", "rdr-to",
                "route-to", "reply-to", "dup-to")


class Reader:
    """Statement-level parse of pf.conf into the Ruleset being built."""

    def __init__(self, name: str, read_file: ReadFile | None,
                 defines: Mapping[str, str] | None,
                 interfaces: ruleexpand.Interfaces | None = None) -> None:
        self.name, self.read_file = name, read_file
        self.interfaces = interfaces
        self.macros = dict(defines or {})
        self.persist = set(self.macros)
        self.rs = Ruleset(source="pf.conf")
        self.numbers = ruleexpand.Numbering(self.rs)
        self.inline = 0
        self.queues: set[str] = set()
        self.queued: list[tuple[tuple[str, ...], Token]] = []
        self.block_policy = "drop"  # `set block-policy`: what a plain `block` does

    def run(self, text: str, name: str) -> None:
        stream = Lexer(text, name, self.macros).tokens()
        self.statements(stream, "", top=True, name=name)

    def statements(self, stream: Iterator[Token], anchor: str, top: bool,
                   name: str) -> None:
        while True:
            toks, opens_block, closed = self.statement(stream)
            if toks is None:
                if not top:
                    raise RuleSyntaxError(name, "EOF", "missing '}'")
                return
            if closed:
                if top:
                    raise RuleSyntaxError(toks[0].file, toks[0].line,
                                          "syntax error")
                return
            if toks:
                self.dispatch(toks, opens_block, stream, anchor)

    def statement(self, stream: Iterator[Token]
                  ) -> tuple[list[Token] | None, bool, bool]:
        """Tokens up to the end of one statement: (tokens, block, '}')."""
        toks: list[Token] = []
        depth = 0
        for tok in stream:
            if tok.kind == "nl":
                if depth == 0 and toks:
                    return toks, False, False
                continue
            if tok.kind == "punct" and tok.text == "}" and depth == 0:
                if toks:
                    raise RuleSyntaxError(tok.file, tok.line, "syntax error")
                return [tok], False, True
            if tok.kind == "punct" and tok.text == "{":
                if toks and toks[0].text == "anchor" and depth == 0 \
                        and self.block_follows(toks):
                    return toks, True, False
                depth += 1
            elif tok.kind == "punct" and tok.text == "}":
                depth -= 1
            toks.append(tok)
        if depth:
            raise RuleSyntaxError(toks[-1].file, toks[-1].line,
                                  "syntax error")
        return (toks or None), False, False

    @staticmethod
    def block_follows(toks: Sequence[Token]) -> bool:
        """An anchor's `{` opens a block unless it opens a list."""
        last = toks[-1]
        return not (last.kind == "punct" and last.text in "=!,{<>")\
            and last.text not in LIST_OPENERS

    def dispatch(self, toks: list[Token], opens_block: bool,
                 stream: Iterator[Token], anchor: str) -> None:
        first = toks[0]
        if len(toks) > 1 and toks[1].text == "=" and first.kind == "word":
            self.define(toks)
            return
        word = first.text if first.kind == "word" else ""
        if word == "include":
            self.include(toks)
        elif word == "set":
            self.option(toks)
        elif word == "load":
            self.load_anchor(toks, anchor)
        elif word == "table":
            check_table(toks, self.read_file)
        elif word == "queue":
            self.queues.add(check_queue(toks))
        elif word in SKIPPED_WORDS:
            pass
        elif word not in RULE_WORDS:
            raise RuleSyntaxError(first.file, first.line, "syntax error")
        elif word == "antispoof":
            self.antispoof(toks, stream, anchor)
        else:
            self.rule(toks, opens_block, stream, anchor)

    def antispoof(self, toks: list[Token], stream: Iterator[Token],
                  anchor: str) -> None:
        """The block rules antispoof stands for, each read as a rule."""
        first = toks[0]
        if self.interfaces is None:
            self.numbers.skip(anchor, first, "antispoof needs the "
                              "interface addresses: give --ifconfig")
            return
        unknown, texts = antispoof_rules(toks, self.interfaces)
        for name in unknown:
            self.rs.warnings.append(
                f"{first.file}:{first.line}: antispoof for {name}: no such "
                "interface on this host, no rules (as pfctl)")
        for text in texts:
            rule_toks = [t for t in Lexer(text, first.file, {}).tokens()
                         if t.kind != "nl"]
            for t in rule_toks:
                t.line = first.line
            self.rule(rule_toks, False, stream, anchor)

    def rule(self, toks: list[Token], opens_block: bool,
             stream: Iterator[Token], anchor: str) -> None:
        """A rule statement: parsed, checked, expanded and numbered; an
        anchor's block is read as the anchor's ruleset."""
        first = toks[0]
        text, starts = join(toks)
        try:
            spec = parse_rule_cached(text + (" {" if opens_block else ""))
        except pp.ParseBaseException as exc:
            tok = line_at(toks, starts, exc.loc)
            if tok.kind == "word" and tok.text in ruleexpand.UNMODELLED:
                self.numbers.skip(anchor, first, f"'{tok.text}' not modelled")
                if opens_block:
                    self.statements(stream, f"?{first.line}", False,
                                    first.file)
                return
            raise RuleSyntaxError(tok.file, tok.line, exc.msg if isinstance(
                exc, pp.ParseFatalException) else "syntax error") from None
        check_spec(spec, toks[-1])
        if spec["action"] == "block" and not spec.get("block_policy") \
                and self.block_policy != "drop":
            spec = {**spec, "block_policy": self.block_policy}  # the cached spec stays
        if spec.get("queue"):
            self.queued.append((spec["queue"], toks[-1]))
        rules = ruleexpand.expand(spec, self.rs, anchor, first, text,
                                  self.interfaces, toks[-1])
        if spec["action"] != "anchor":
            for rule in rules:
                self.numbers.add(rule)
        else:
            self.inline += opens_block      # pf->bn counts every `{`
            child = anchor_path(anchor, spec.get("anchor_name"), self.inline)
            for rule in rules:
                rule.call = child
            # the body is read once: pfctl prints it after the first
            # expanded anchor rule, every one of which calls it
            self.numbers.add(rules[0])
            if opens_block:
                self.statements(stream, child, False, first.file)
            for rule in rules[1:]:
                self.numbers.add(rule)
        if opens_block and spec["action"] != "anchor":
            raise RuleSyntaxError(first.file, first.line, "syntax error")

    def check_queues(self) -> None:
        """Queue names rules assign must be defined, once queues are used."""
        for names, tok in self.queued if self.queues else ():
            for name in names:
                if name not in self.queues:
                    raise RuleSyntaxError(tok.file, tok.line,
                                          f"queue {name} is not defined")

    def define(self, toks: Sequence[Token]) -> None:
        name = toks[0].text
        value = " ".join(t.text for t in toks[2:])
        if name not in self.persist:
            self.macros[name] = value

    def include(self, toks: Sequence[Token]) -> None:
        if len(toks) != 2 or self.read_file is None:
            raise RuleSyntaxError(toks[0].file, toks[0].line,
                                  "syntax error" if len(toks) != 2 else
                                  f"cannot read {toks[1].text}")
        path = toks[1].text
        text = self.read_file(path)
        self.statements(Lexer(text, path, self.macros).tokens(), "",
                        top=True, name=path)

    def load_anchor(self, toks: Sequence[Token], parent: str) -> None:
        words = [t.text for t in toks]
        if len(words) != 5 or words[1] != "anchor" or words[3] != "from":
            raise RuleSyntaxError(toks[0].file, toks[0].line, "syntax error")
        if self.read_file is None:
            self.rs.warnings.append(f"{toks[0].file}:{toks[0].line}: "
                                    f"load anchor {words[2]} not read")
            return
        text = self.read_file(words[4])
        stream = Lexer(text, words[4], self.macros).tokens()
        path = anchor_path(parent, words[2], 0)
        self.rs.loaded.append(path)
        self.statements(stream, path, top=True, name=words[4])

    def option(self, toks: Sequence[Token]) -> None:
        """`set ...`: the options that matter offline kept, the others
        checked as far as parse.y would, or passed over."""
        words = [t.text for t in toks[1:]]
        tok = toks[0]
        try:
            handler = OPTIONS.get(words[0]) if words else None
            if handler is not None:
                handler(self, toks[1:])
        except (ValueError, IndexError, pp.ParseBaseException):
            raise RuleSyntaxError(tok.file, tok.line, "syntax error") from None

    def set_timeout(self, toks: Sequence[Token]) -> None:
        for name, value in option_pairs(toks[1:]):
            if name not in TIMEOUT_NAMES:
                raise ValueError(name)
            self.rs.timeouts[name] = value

    def set_limit(self, toks: Sequence[Token]) -> None:
        """Limits do not change rule numbers: only their syntax is checked."""
        option_pairs(toks[1:])

    def set_hostid(self, toks: Sequence[Token]) -> None:
        if option_number(toks[1:]) == 0:
            raise RuleSyntaxError(toks[-1].file, toks[-1].line,
                                  "hostid must be non-zero")

    def set_block_policy(self, toks: Sequence[Token]) -> None:
        """parse.y's blockpolicy: `drop` or `return`, taken by the block rules after
        it that name no policy of their own."""
        if len(toks) != 2 or toks[1].text not in ("drop", "return"):
            raise ValueError("block-policy drop | return")
        self.block_policy = toks[1].text

    def set_optimization(self, toks: Sequence[Token]) -> None:
        """The numbers are those of `-o none` whatever is asked for: only a
        value is needed."""
        if len(toks) < 2:
            raise ValueError("optimization without a value")

    def set_state_defaults(self, toks: Sequence[Token]) -> None:
        text, _ = join(toks[1:])
        opts = STATE_OPT_LIST.parse_string(text, parse_all=True)[0]
        for opt in opts:
            if opt.key == "timeout":
                timeouts = self.rs.state_defaults.get("timeouts")
                if not isinstance(timeouts, dict):
                    timeouts = self.rs.state_defaults["timeouts"] = {}
                timeouts[opt.value[0]] = opt.value[1]
            else:
                self.rs.state_defaults[opt.key] = opt.value


def antispoof_rules(toks: Sequence[Token], interfaces: IfTable
                    ) -> tuple[list[str], list[str]]:
    """parse.y's antispoof: per interface, `block drop in on ! IF from
    NETWORKS`, and unless IF is a loopback `block drop in from ADDRESSES`
    (link-local networks left out; `(IF)` stays dynamic), as rule texts;
    and the names that are no interface here (they give no rule)."""
    words = [t.text if t.kind != "qstr" else f'"{t.text}"' for t in toks]
    try:
        at = words.index("for")
    except ValueError:
        raise RuleSyntaxError(toks[0].file, toks[0].line,
                              "syntax error") from None
    head = " ".join(w for w in words[1:at])
    rest = words[at + 1:]
    names: list[str] = []
    if rest[:1] == ["{"]:
        end = rest.index("}") if "}" in rest else len(rest)
        names = [w for w in rest[1:end] if w != ","]
        rest = rest[end + 1:]
    elif rest[:1] == ["("] and rest[2:3] == [")"]:
        names, rest = [f"({rest[1]})"], rest[3:]
    elif rest:
        names, rest = [rest[0]], rest[1:]
    af = rest[0] if rest[:1] in (["inet"], ["inet6"]) else ""
    tail = " ".join(rest[1:] if af else rest)
    out, unknown = [], []
    for name in names:
        bare = name.strip("()")
        if not interfaces.exists(bare):
            unknown.append(bare)
        if name.startswith("("):
            nets, addrs = [f"({bare}:network)"], [f"({bare})"]
        else:
            nets = [h.value for h in interfaces.lookup(bare, "network")]
            addrs = [h.value for h in interfaces.lookup(bare)]
        if nets:
            out.append(f"block drop in {head} on ! {bare} {af} from "
                       f"{{ {' '.join(nets)} }} to any {tail}")
        if not interfaces.loopback(bare) and addrs:
            out.append(f"block drop in {head} {af} from "
                       f"{{ {' '.join(addrs)} }} to any {tail}")
    return unknown, out


def option_number(toks: Sequence[Token]) -> int:
    """A lone NUMBER token (decimal or 0x hex, as yylex reads them)."""
    if len(toks) != 1 or toks[0].kind != "word":
        raise ValueError("expected a number")
    return pf_number(toks[0].text)


def option_pairs(toks: Sequence[Token]) -> list[tuple[str, int]]:
    """`name value` or `{ name value [,] ... }`: parse.y's timeout_spec and
    limit_spec; a comma outside braces is a syntax error."""
    words = [t for t in toks if t.text != ","]
    if toks and toks[0].text == "{":
        if toks[-1].text != "}" or len(words) < 4:
            raise ValueError("unbalanced list")
        words = words[1:-1]
    elif len(toks) != 2:
        raise ValueError("one pair without braces")
    if len(words) % 2:
        raise ValueError("name without value")
    return [(n.text, option_number([v])) for n, v in zip(words[::2],
                                                          words[1::2])]


OPTIONS: dict[str, Callable[[Reader, Sequence[Token]], None]] = {
    "hostid": Reader.set_hostid,
    "timeout": Reader.set_timeout,
    "limit": Reader.set_limit,
    "optimization": Reader.set_optimization,
    "block-policy": Reader.set_block_policy,
    "state-defaults": Reader.set_state_defaults,
}


def parse_pfconf(text: str, name: str = "pf.conf",
                 read_file: ReadFile | None = None,
                 defines: Mapping[str, str] | None = None,
                 interfaces: IfTable | Mapping[str, Sequence[tuple[str, int]]]
                 | None = None, optimize: bool = False) -> Ruleset:
    """Parse a pf.conf into a Ruleset numbered as `pfctl -o none` would
    (optimize: after the optimizer's table pass, pflowbsd.rules.optimize).

    interfaces is the host's interface table (or a map of a name to its
    (address, prefixlen) list), for rules that name an interface, a group
    or `self` as a host and for antispoof; without it those stay names and
    antispoof is skipped with a warning.
    """
    if interfaces is not None and not isinstance(interfaces, IfTable):
        interfaces = IfTable.from_addresses(interfaces)
    reader = Reader(name, read_file, defines, interfaces)
    reader.run(text, name)
    reader.check_queues()
    if optimize:
        reader.rs.rules = automatic_tables(reader.rs.rules)
    ruleexpand.expand_nr_macros(reader.rs)
    return reader.rs
