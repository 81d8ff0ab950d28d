"""pf.conf front end: lexing, includes, macros, statements → Ruleset.

The lexer follows pfctl's yylex() (parse.y): `#` comments, backslash
continuations, `$macro` expanded outside quotes by re-reading its value,
newline ends a statement except inside `{ }` lists.  Each statement is put
back together as text (macros expanded, comments gone) with a map from
offsets to source lines, and handed to the shared rule grammar.  Expanding
the lists and numbering the rules, in pfctl's order, is pflowbsd.ruleexpand.
Files are read through the `read_file` callable the caller passes in.
"""
import pyparsing as pp

from pflowbsd.rules import expand as ruleexpand
from pflowbsd.rules.check import check_queue, check_spec, check_table
from pflowbsd.rules.grammar import STATE_OPT_LIST, TIMEOUT_NAMES, parse_rule_text
from pflowbsd.rules.model import Ruleset, RuleSyntaxError

SPECIALS = "(){}<>!=,/"
STRING_MAX = 8192       # yylex()'s buffer: longer strings are an error
TWO_CHAR = ("<>", "><", "!=", "<=", ">=", "->")
RULE_WORDS = {"pass", "block", "match", "anchor", "nat", "rdr", "binat",
              "no", "scrub", "antispoof"}
# Statements that carry no rule: tables, queues, ether rules, ...
SKIPPED_WORDS = {"altq", "ether", "nat-anchor",
                 "rdr-anchor", "binat-anchor", "dummynet"}


class Token:
    __slots__ = ("file", "kind", "line", "space", "text")

    def __init__(self, kind, text, line, space, file):
        self.kind, self.text, self.line = kind, text, line
        self.space, self.file = space, file

    def __repr__(self):
        return f"{self.kind}:{self.text!r}@{self.line}"


class Lexer:
    """Tokens of one file; macros are looked up when `$name` is read."""

    def __init__(self, text, name, macros):
        self.text, self.name, self.macros = text, name, macros
        self.pos, self.line = 0, 1

    def error(self, message, line=None):
        raise RuleSyntaxError(self.name, line or self.line, message)

    def tokens(self):
        text, n = self.text, len(self.text)
        space = True
        while self.pos < n:
            c = text[self.pos]
            if c == "\\" and text.startswith("\n", self.pos + 1):
                self.pos += 2
                self.line += 1
                space = True
                continue
            if c in " \t\r":
                self.pos += 1
                space = True
                continue
            if c == "#":
                # lgetc() joins backslash-newline first: it continues comments
                while self.pos < n and text[self.pos] != "\n":
                    if text.startswith("\\\n", self.pos):
                        self.pos += 1
                        self.line += 1
                    self.pos += 1
                continue
            if c == "\n":
                yield Token("nl", "\n", self.line, True, self.name)
                self.pos += 1
                self.line += 1
                space = True
                continue
            if c == "$":
                start = self.pos = self.pos + 1
                while self.pos < n and (text[self.pos].isalnum()
                                        or text[self.pos] == "_"):
                    self.pos += 1
                word = text[start:self.pos]
                if word not in self.macros:
                    self.error(f"macro '{word}' not defined")
                sub = Lexer(self.macros[word], self.name, {})
                first = True
                for tok in sub.tokens():
                    if tok.kind == "nl":
                        continue
                    tok.line, tok.space = self.line, (space if first
                                                      else tok.space)
                    first = False
                    yield tok
                space = False
                continue
            if c in "\"'":
                line, end = self.line, text.find(c, self.pos + 1)
                if end < 0:
                    self.error("unterminated string")
                body = text[self.pos + 1:end]
                if len(body) >= STRING_MAX:
                    self.error("string too long")
                self.line += body.count("\n")
                self.pos = end + 1
                yield Token("qstr", body.replace("\n", ""), line, space,
                            self.name)
                space = False
                continue
            two = text[self.pos:self.pos + 2]
            if two in TWO_CHAR:
                yield Token("punct", two, self.line, space, self.name)
                self.pos += 2
            elif c in SPECIALS:
                yield Token("punct", c, self.line, space, self.name)
                self.pos += 1
            else:
                start = self.pos
                while self.pos < n and not (text[self.pos].isspace()
                                            or text[self.pos] in SPECIALS
                                            or text[self.pos] in "#\"'"):
                    if text.startswith("->", self.pos):
                        break
                    self.pos += 1
                yield Token("word", text[start:self.pos], self.line, space,
                            self.name)
            space = False


def token_text(tok):
    if tok.kind == "qstr":
        return '"' + tok.text.replace('"', '\\"') + '"'
    return tok.text


def join(tokens):
    """Statement text for the grammar, plus the token at each offset."""
    parts, starts = [], []
    pos = 0
    for i, tok in enumerate(tokens):
        if i and tok.space:
            parts.append(" ")
            pos += 1
        starts.append(pos)
        t = token_text(tok)
        parts.append(t)
        pos += len(t)
    return "".join(parts), starts


def line_at(tokens, starts, loc):
    for tok, start in zip(reversed(tokens), reversed(starts)):
        if start <= loc:
            return tok
    return tokens[0]


class Reader:
    """Statement-level parse of pf.conf into the Ruleset being built."""

    def __init__(self, name, read_file, defines, interfaces=None):
        self.name, self.read_file = name, read_file
        self.interfaces = interfaces
        self.macros = dict(defines or {})
        self.persist = set(self.macros)
        self.rs = Ruleset(source="pf.conf")
        self.numbers = ruleexpand.Numbering(self.rs)
        self.unnamed = 0
        self.queues, self.queued = set(), []

    def run(self, text, name, anchor=""):
        stream = Lexer(text, name, self.macros).tokens()
        self.statements(stream, anchor, top=True, name=name)

    def statements(self, stream, anchor, top, name):
        while True:
            toks, opens_block, closed = self.statement(stream)
            if closed:
                if top:
                    raise RuleSyntaxError(toks[0].file, toks[0].line,
                                          "syntax error")
                return
            if toks is None:
                if not top:
                    raise RuleSyntaxError(name, "EOF", "missing '}'")
                return
            if toks:
                self.dispatch(toks, opens_block, stream, anchor)

    def statement(self, stream):
        """Tokens up to the end of one statement: (tokens, block, '}')."""
        toks, depth = [], 0
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
    def block_follows(toks):
        """An anchor's `{` opens a block unless it opens a list."""
        last = toks[-1]
        return not (last.kind == "punct" and last.text in "=!,{<>")\
            and last.text not in ("from", "to", "on", "proto", "port",
                                  "user", "group", "icmp-type", "os",
                                  "icmp6-type", "nat-to", "rdr-to",
                                  "route-to", "reply-to", "dup-to")

    def dispatch(self, toks, opens_block, stream, anchor):
        first = toks[0]
        if len(toks) > 1 and toks[1].text == "=" and first.kind == "word":
            return self.define(toks)
        word = first.text if first.kind == "word" else ""
        if word == "include":
            return self.include(toks)
        if word == "set":
            return self.option(toks)
        if word == "load":
            return self.load_anchor(toks, anchor)
        if word == "table":
            return check_table(toks, self.read_file)
        if word == "queue":
            return self.queues.add(check_queue(toks))
        if word in SKIPPED_WORDS:
            return None
        if word not in RULE_WORDS:
            raise RuleSyntaxError(first.file, first.line, "syntax error")
        if word == "antispoof":
            # expands to the interface's own networks: unknowable offline
            self.numbers.skip(anchor, first, "antispoof needs the "
                              "interface addresses")
            return None
        text, starts = join(toks)
        try:
            spec = parse_rule_text(text + (" {" if opens_block else ""))
        except pp.ParseBaseException as exc:
            tok = line_at(toks, starts, exc.loc)
            if tok.kind == "word" and tok.text in ruleexpand.UNMODELLED:
                self.numbers.skip(anchor, first, f"'{tok.text}' not modelled")
                if opens_block:
                    self.statements(stream, f"?{first.line}", False,
                                    first.file)
                return None
            raise RuleSyntaxError(tok.file, tok.line, exc.msg if isinstance(
                exc, pp.ParseFatalException) else "syntax error")
        check_spec(spec, toks[-1])
        if spec.get("queue"):
            self.queued.append((spec["queue"], toks[-1]))
        rules = ruleexpand.expand(spec, self.rs, anchor, first, text,
                                  self.interfaces, toks[-1])
        for rule in rules:
            self.numbers.add(rule)
        if spec["action"] == "anchor":
            if spec.get("anchor_name") is None:
                self.unnamed += 1
            from pflowbsd.rules.model import anchor_path
            child = anchor_path(anchor, spec.get("anchor_name"), self.unnamed)
            for rule in rules:
                rule.call = child
            if opens_block:
                self.statements(stream, child, False, first.file)
        elif opens_block:
            raise RuleSyntaxError(first.file, first.line, "syntax error")
        return None

    def check_queues(self):
        """Queue names rules assign must be defined, once queues are used."""
        for names, tok in self.queued if self.queues else ():
            for name in names:
                if name not in self.queues:
                    raise RuleSyntaxError(tok.file, tok.line,
                                          f"queue {name} is not defined")

    def define(self, toks):
        name = toks[0].text
        value = " ".join(t.text for t in toks[2:])
        if name not in self.persist:
            self.macros[name] = value

    def include(self, toks):
        if len(toks) != 2 or self.read_file is None:
            raise RuleSyntaxError(toks[0].file, toks[0].line,
                                  "syntax error" if len(toks) != 2 else
                                  f"cannot read {toks[1].text}")
        path = toks[1].text
        text = self.read_file(path)
        self.statements(Lexer(text, path, self.macros).tokens(), "",
                        top=True, name=path)

    def load_anchor(self, toks, parent):
        words = [t.text for t in toks]
        if len(words) != 5 or words[1] != "anchor" or words[3] != "from":
            raise RuleSyntaxError(toks[0].file, toks[0].line, "syntax error")
        if self.read_file is None:
            self.rs.warnings.append(f"{toks[0].file}:{toks[0].line}: "
                                    f"load anchor {words[2]} not read")
            return
        text = self.read_file(words[4])
        stream = Lexer(text, words[4], self.macros).tokens()
        from pflowbsd.rules.model import anchor_path
        self.statements(stream, anchor_path(parent, words[2], 0), top=True,
                        name=words[4])

    def option(self, toks):
        words = [t.text for t in toks[1:]]
        tok = toks[0]
        try:
            handler = OPTIONS.get(words[0]) if words else None
            if handler is not None:
                handler(self, toks[1:])
        except (ValueError, IndexError, pp.ParseBaseException):
            raise RuleSyntaxError(tok.file, tok.line, "syntax error")

    def set_timeout(self, toks):
        for name, value in option_pairs(toks[1:]):
            if name not in TIMEOUT_NAMES:
                raise ValueError(name)
            self.rs.timeouts[name] = value

    def set_limit(self, toks):
        for name, value in option_pairs(toks[1:]):
            if name == "states":
                self.rs.limit_states = value

    def set_hostid(self, toks):
        if option_number(toks[1:]) == 0:
            raise RuleSyntaxError(toks[-1].file, toks[-1].line,
                                  "hostid must be non-zero")

    def set_optimization(self, toks):
        self.rs.optimization = toks[1].text

    def set_state_defaults(self, toks):
        text, _ = join(toks[1:])
        opts = STATE_OPT_LIST.parse_string(text, parse_all=True)[0]
        for opt in opts:
            if opt.key == "timeout":
                self.rs.state_defaults.setdefault("timeouts", {})[
                    opt.value[0]] = opt.value[1]
            else:
                self.rs.state_defaults[opt.key] = opt.value

    def set_block_policy(self, toks):
        self.rs.state_defaults  # noqa: B018 (printing only; nothing kept)


def option_number(toks):
    """A lone NUMBER token (decimal or 0x hex, as yylex reads them)."""
    if len(toks) != 1 or toks[0].kind != "word":
        raise ValueError("expected a number")
    return int(toks[0].text, 0)


def option_pairs(toks):
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


OPTIONS = {
    "hostid": Reader.set_hostid,
    "timeout": Reader.set_timeout,
    "limit": Reader.set_limit,
    "optimization": Reader.set_optimization,
    "state-defaults": Reader.set_state_defaults,
}


def parse_pfconf(text, name="pf.conf", read_file=None, defines=None,
                 interfaces=None):
    """Parse a pf.conf into a Ruleset numbered as `pfctl -o none` would.

    interfaces maps a name to its (address, prefixlen) list, for rules
    that name an interface as a host; unknown ones stay names.
    """
    reader = Reader(name, read_file, defines, interfaces)
    reader.run(text, name)
    reader.check_queues()
    ruleexpand.expand_nr_macros(reader.rs)
    return reader.rs
