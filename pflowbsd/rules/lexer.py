"""pf.conf tokens, as pfctl's yylex() (parse.y) reads them.

`#` comments (a backslash-newline continues them too), backslash continuations,
quoted strings, and `$macro` expanded as yylex() does it: a `$` that starts a
token pushes the macro's value back into the input, so the value is read
together with the text around it (`$int_if:network` is one word, `em1:network`);
a `$` inside a word, or inside the value being read, is a plain character (parse.y's
allowed_in_string() lets `$` into a word, and `expanding` stops nested expansion).
Newlines are tokens, because they end statements.  `join` puts a statement's
tokens back together as text for the rule grammar, with the offset of each token
so a parse error can name its source line.  No I/O: files reach the front end
(pflowbsd.rules.pfconf) through a ReadFile callable its caller passes in.
"""
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NoReturn

from pflowbsd.rules.model import RuleSyntaxError

# How the caller reads an included file, a `load anchor` file or a table file.
ReadFile = Callable[[str], str]

SPECIALS = "(){}<>!=,/"
STRING_MAX = 8192       # yylex()'s buffer: longer strings are an error
TWO_CHAR = ("<>", "><", "!=", "<=", ">=", "->")
# A word runs to white space, a special, a comment or quote, or `->`; `$`
# inside a word is a plain character.  Only printable ASCII: pfctl runs in
# the C locale, where isalnum() and ispunct() take no byte above 0x7e, so a
# UTF-8 letter is a byte yylex() returns alone (a syntax error).
WORD = re.compile(r"""(?:[$%&*+.0-9:;?@A-Z\[\\\]^_`a-z|~]|-(?!>))+""")
BLANKS = re.compile(r"[ \t\r]+")


class Token:
    """One word (`word`), quoted string (`qstr`), punctuation or newline (`nl`);
    space tells whether white space came before it, for `join`."""
    __slots__ = ("file", "kind", "line", "space", "text")

    def __init__(self, kind: str, text: str, line: int, space: bool,
                 file: str) -> None:
        self.kind, self.text, self.line = kind, text, line
        self.space, self.file = space, file

    def __repr__(self) -> str:
        return f"{self.kind}:{self.text!r}@{self.line}"


class Lexer:
    """Tokens of one file; macros are looked up when `$name` is read."""

    def __init__(self, text: str, name: str, macros: Mapping[str, str]) -> None:
        self.text, self.name, self.macros = text, name, macros
        self.pos, self.line = 0, 1
        self.expanded_to = 0    # text[:expanded_to] holds a pushed-back value

    def error(self, message: str) -> NoReturn:
        raise RuleSyntaxError(self.name, self.line, message)

    def tokens(self) -> Iterator[Token]:
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
                m = BLANKS.match(text, self.pos)
                self.pos = m.end() if m else self.pos + 1
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
            if c == "$" and self.pos >= self.expanded_to:
                self.push_macro()
                text, n = self.text, len(self.text)
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
                m = WORD.match(text, start)
                self.pos = m.end() if m else start
                if self.pos == start:  # \v, \f, \x1f, NBSP: yylex() takes no such byte
                    self.error(f"syntax error: unexpected {c!r}")
                yield Token("word", text[start:self.pos], self.line, space,
                            self.name)
            space = False

    def push_macro(self) -> None:
        """`$name` at a token's start: its value replaces it in the input
        (yylex's lungetc of the value), to be read with what follows."""
        text, n = self.text, len(self.text)
        end = start = self.pos + 1
        while end < n and (text[end].isalnum() or text[end] == "_"):
            end += 1
        word = text[start:end]
        if word not in self.macros:
            self.error(f"macro '{word}' not defined")
        value = self.macros[word].replace("\n", " ")
        self.text = text[:self.pos] + value + text[end:]
        self.expanded_to = self.pos + len(value)


def token_text(tok: Token) -> str:
    if tok.kind == "qstr":
        return '"' + tok.text.replace('"', '\\"') + '"'
    return tok.text


def join(tokens: Sequence[Token]) -> tuple[str, list[int]]:
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


def line_at(tokens: Sequence[Token], starts: Sequence[int], loc: int) -> Token:
    """The token at offset loc of the text `join` made of tokens."""
    for tok, start in zip(reversed(tokens), reversed(starts)):
        if start <= loc:
            return tok
    return tokens[0]
