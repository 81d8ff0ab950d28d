"""`pflowbsd rules`: each rule of a ruleset, and whether its states are exported.

Reads a `pfctl -sr -vv` listing or a pf.conf (pflowbsd.rules.load), asks the
Selector (pflowbsd.rules.select) about every rule, and prints one line a rule,
or one JSON object a line with --json.  The caller passes the text, the output
streams and how to read included files: no I/O of its own.
"""
import json
from typing import TextIO

from pflowbsd.rules.lexer import ReadFile
from pflowbsd.rules.load import load_ruleset
from pflowbsd.rules.model import RuleSyntaxError
from pflowbsd.rules.select import Selector


def cmd_rules(text: str, name: str, as_json: bool, out: TextIO, err: TextIO,
              read_file: ReadFile | None = None,
              selector: Selector | None = None) -> int:
    """Body of `pflowbsd rules [--json] [FILE]`; returns the exit status."""
    selector = selector or Selector()
    try:
        rs = load_ruleset(text, name, read_file=read_file)
    except RuleSyntaxError as exc:
        print(str(exc), file=err)
        return 1
    for warning in rs.warnings:
        print(f"warning: {warning}", file=err)
    if not as_json:
        print(f"# rules from {rs.source}"
              + (" (numbers as pfctl -o none gives them)"
                 if rs.source == "pf.conf" else ""), file=out)
    for rule in rs.rules:
        export, why = selector.decide_rule(rule)
        if as_json:
            print(json.dumps({
                "anchor": rule.anchor, "nr": rule.nr, "action": rule.action,
                "pflow": rule.pflow, "timeouts": rule.timeouts,
                "label": rule.label, "export": export, "why": why,
                "line": rule.line}), file=out)
        else:
            where = f"{rule.anchor}:" if rule.anchor else ""
            nr = "?" if rule.nr is None else rule.nr
            mark = "export" if export else "-"
            print(f"{where}@{nr}\t{mark}\t{why}\t{rule.text}", file=out)
    return 0
