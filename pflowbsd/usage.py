"""The usage text, read back: one command's usage lines, its help, and what a refused
command line got wrong.

Strategy.  The docopt text of pflowbsd/cli.py is the command line's single source; this
module only cuts it up, so `pflowbsd rules -h` and the usage line after a mistake can
never say something the text does not.  A command's help is its usage lines, its row
of "Commands:", and the rows of every "... options:" section that describe an option
its usage names (a row with its continuation lines), then the PARAM paragraph if it
takes PARAM.  Pure text in, text out.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pflowbsd.control import COMMANDS as CTL


def lines(doc: str, command: str | None) -> list[str]:
    """The usage lines of one command (None: the daemon's), continuations included."""
    rows = doc.split("Usage:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    out, keep = [], False
    for row in rows:
        if row.startswith("  pflowbsd"):
            word = row.split()[1]
            keep = word == command if command else word.startswith("[")
        if keep:
            out.append(row)
    return out


def options(usage: list[str]) -> set[str]:
    """The options a usage names, -adnv read as -a -d -n -v; -h and --help always."""
    found = set()
    for opt in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", " ".join(usage)):
        found |= {opt} if opt.startswith("--") else {f"-{c}" for c in opt[1:]}
    return found | {"-h", "--help"}


def _rows(rows: list[str], wanted: Callable[[str], bool]) -> list[str]:
    """The rows (with their continuation lines) whose first word is wanted."""
    out, keep = [], False
    for row in rows:
        if re.match(r"  \S", row):
            keep = wanted(row.split()[0])
        if keep:
            out.append(row)
    return out


def command_help(doc: str, command: str) -> str:
    """`pflowbsd COMMAND -h`: its usage, what it does, and its options' rows."""
    usage = lines(doc, command)
    known, out = options(usage), ["Usage:", *usage, ""]
    blocks = [b.splitlines() for b in re.split(r"\n(?=\S)", doc)]  # heading, rows
    for head, *rows in blocks:
        if head == "Commands:":
            out += [*_rows(rows, lambda first: first == command), ""]
    for head, *rows in blocks:
        if head.endswith("options:"):
            opts = _rows(rows, lambda first: first.rstrip(",") in known)
            out += [head, *opts] if opts else []
    if "PARAM" in " ".join(usage):
        out += ["", *(p for p in doc.split("\n\n") if p.startswith("PARAM"))]
    if command == "ctl":
        out += ["", "COMMAND:", *(f"  {(n + ' ' + '|'.join(c.args)).strip():<15}{c.help}"
                                  for n, c in CTL.items())]
    return "\n".join(out).rstrip() + "\n"


def refused(doc: str, argv: list[str], command: str | None) -> str:
    """What docopt refused, in the words typed: an unknown option, else the command."""
    known = options(lines(doc, command))
    for a in argv:
        flags = {f"-{c}" for c in a[1:]} if re.fullmatch(r"-[A-Za-z]+", a) else {a}
        if a.startswith("-") and a != "-" and a.split("=")[0] not in known and not flags <= known:
            return f"unknown option {a}" + ("" if command else " (or a command's option "
                                            "given without its command)")
    return f"{command or 'pflowbsd'}: missing or unexpected arguments"
