"""`pflowbsd rules` and the export column of `pflowbsd states`.

`cmd_rules` reads a `pfctl -sr -vv` listing or a pf.conf (pflowbsd.rules.load),
against the host's interfaces when the caller has them, asks the Selector the
daemon would build from its configuration (pflowbsd.rules.select) about every
rule, and prints one line a rule: where it is and its number (`?` where a
pf.conf's number could not be derived, naming the line after which the
numbering of that ruleset is unknown), the decision and why, and the rule as
pfctl prints it (each expanded rule with its own address and port).
`cmd_states` prints `pflowbsd states`' summary lines with a column saying
whether each state would be exported, and why not.  The caller passes the
texts, the output streams and how to read included files: no I/O here.
"""
import json
from typing import TextIO

from pflowbsd.pf.states import checked_states, printable, summary
from pflowbsd.rules.ifa import IfTable
from pflowbsd.rules.lexer import ReadFile
from pflowbsd.rules.load import load_ruleset
from pflowbsd.rules.model import Rule, Ruleset, RuleSyntaxError
from pflowbsd.rules.select import Selector

MAX_ERRORS = 10  # unreadable lines named one by one; past these, one line with the count


def number_text(rs: Ruleset, rule: Rule) -> str:
    if rule.nr is not None:
        return str(rule.nr)
    where = rs.stopped.get(rule.anchor)
    return f"? (not derived: numbering stopped at {where})" if where else "?"


def list_rules(rs: Ruleset, selector: Selector, as_json: bool,
               out: TextIO) -> int:
    """Each rule, its decision and why; returns how many are exported."""
    if not as_json:
        print(f"# rules from {rs.source}"
              + (" (numbers derived as pfctl -o none gives them; the loaded "
                 "ruleset may differ after the optimizer)"
                 if rs.source == "pf.conf" else ""), file=out)
    chosen = 0
    for rule in rs.rules:
        export, why = selector.decide_rule(rule)
        chosen += export
        text = rule.printed or rule.text
        if as_json:
            print(json.dumps({
                "anchor": rule.anchor, "nr": rule.nr, "action": rule.action,
                "pflow": rule.pflow, "timeouts": rule.timeouts,
                "label": rule.label, "export": export, "why": why,
                "line": rule.line, "rule": text,
                "derived": rs.source == "pf.conf"}), file=out)
        else:
            where = f"{rule.anchor}:" if rule.anchor else ""
            mark = "export" if export else "-"
            print(f"{where}@{number_text(rs, rule)}\t{mark}\t{why}\t{text}",
                  file=out)
    return chosen


def cmd_rules(text: str, name: str, as_json: bool, out: TextIO, err: TextIO,
              read_file: ReadFile | None = None,
              selector: Selector | None = None,
              interfaces: IfTable | None = None) -> int:
    """Body of `pflowbsd rules [--json] [FILE]`; returns the exit status."""
    try:
        rs = load_ruleset(text, name, read_file=read_file,
                          interfaces=interfaces)
    except RuleSyntaxError as exc:
        print(str(exc), file=err)
        return 1
    for warning in rs.warnings:
        print(f"warning: {warning}", file=err)
    list_rules(rs, selector or Selector(), as_json, out)
    return 0


def cmd_states(text: str, rs: Ruleset | None, selector: Selector,
               as_json: bool, out: TextIO, err: TextIO) -> int:
    """`pflowbsd states` with the export decision of each state, from the
    creating rule in rs (None: rules unknown) and the selector."""
    table = checked_states(text)
    for st in table.states:
        rule, unknown = rs.resolve(st.anchor, st.rule) if rs is not None \
            else (None, "no rules")
        export, why = selector.decide(st, rule)
        if rule is None and not export and unknown:
            why = f"{why} ({unknown})"
        if as_json:
            obj = {**st.to_json(), "export": export, "why": why}
            out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        else:
            line = printable(summary(st)).replace("\n", " ")
            out.write(f"{line}\t{'export' if export else '-'}\t{why}\n")
    for e in table.errors[:MAX_ERRORS]:
        err.write(f"pflowbsd: line {e.line}: {e.reason}\n")
    if len(table.errors) > MAX_ERRORS:
        err.write(f"pflowbsd: {len(table.errors) - MAX_ERRORS} more unreadable lines "
                  f"({len(table.errors)} in all, {len(table.states)} states read): is it "
                  "pfctl -ss -v[v] output?\n")
    return 1 if table.errors else 0
