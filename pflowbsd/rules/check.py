"""pfctl's semantic checks: what parse.y refuses after the words parsed.

The grammar (pflowbsd.rules.grammar) accepts any well-formed rule; pfctl
then refuses some with yyerror(), in the rule's action (check_spec) or
per expanded combination in expand_rule() and filter_consistent()
(check_combo).  A refused rule fails the whole load, so each check raises
RuleSyntaxError at the line pfctl names, with pfctl's message.  Checks
that need the running system (interfaces, DNS, queues in the kernel)
are not here: only what the text itself decides.
"""
import re
from collections.abc import Iterator, Sequence
from typing import NoReturn

import pyparsing as pp

from pflowbsd.rules.grammar import Spec
from pflowbsd.rules.hosts import HOSTS, Host, Port
from pflowbsd.rules.lexer import ReadFile, Token
from pflowbsd.rules.model import RuleSyntaxError

TAG_MAX = 63        # PF_TAG_NAME_SIZE - 1
LABEL_MAX = 63      # PF_RULE_LABEL_SIZE - 1

# What parse.y says when an option is given twice (filter_opt, scrub_opt,
# state_opt_item); options not listed here pfctl lets the last one win.
REPEATED = {
    "divert": "more than one divert option",
    "keep_state": "modulate or keep cannot be redefined",
    "flags": "flags cannot be redefined",
    "icmp_types": "icmp-type cannot be redefined",
    "label": "label cannot be redefined",
    "scrub:no-df": "no-df cannot be respecified",
    "scrub:min-ttl": "min-ttl cannot be respecified",
    "scrub:max-mss": "max-mss cannot be respecified",
    "scrub:random-id": "random-id cannot be respecified",
    "scrub:set-tos": "set-tos cannot be respecified",
    "scrub:reassemble": "reassemble tcp cannot be respecified",
}
SCRUB_RANGE = {"min-ttl": 255, "max-mss": 65535}
# host(): an interface name may carry these modifiers (:network, :0, ...)
MODIFIERS = {"network", "broadcast", "peer", "0"}
NUMERIC = re.compile(r"[0-9.]+$")


def fail(where: Token, message: str) -> NoReturn:
    raise RuleSyntaxError(where.file, where.line, message)


def hosts_of(spec: Spec) -> Iterator[Host]:
    """Every Host the rule names."""
    for key in ("from", "to"):
        side = spec.get(key)
        for h in (side[0] or ()) if side else ():
            yield h
    for key in ("nat_to", "rdr_to", "binat_to", "redirect"):
        if isinstance(spec.get(key), tuple):
            for h in spec[key][0]:
                yield h
    route = spec.get("route")
    if isinstance(route, tuple):
        for h in route[1]:
            if isinstance(h, Host):
                yield h
    divert = spec.get("divert")
    if isinstance(divert, tuple) and isinstance(divert[1], Host):
        yield divert[1]


def ports_of(spec: Spec) -> Iterator[Port]:
    """Every Port the rule names."""
    for key in ("from", "to"):
        side = spec.get(key)
        yield from (side[1] or ()) if side else ()
    for key in ("nat_to", "rdr_to", "binat_to", "redirect"):
        if isinstance(spec.get(key), tuple) and spec[key][1] is not None:
            yield spec[key][1]
    divert = spec.get("divert")
    if isinstance(divert, tuple) and isinstance(divert[-1], Port):
        yield divert[-1]


def check_host(where: Token, h: Host) -> None:
    """host() and dynaddr: what no lookup can ever turn into an address."""
    if h.kind == "dynamic" and not h.value[:1].isalpha():
        fail(where, f"invalid interface name '{h.value.split('/')[0]}'")
    if h.kind != "name":
        return
    base, *mods = h.value.split("/")[0].split(":")
    if (mods and (not base[:1].isalpha() or not set(mods) <= MODIFIERS)) \
            or NUMERIC.match(base):
        fail(where, "could not parse host specification")


def check_repeated(spec: Spec, where: Token) -> None:
    """Options parse.y refuses to see twice in one rule."""
    for key in spec.get("repeated", ()):
        if key in REPEATED:
            fail(where, REPEATED[key])
        if key.startswith("state "):
            fail(where, f"state option '{key[6:]}' multiple definitions")
        if key.startswith("timeout "):
            fail(where, f"state timeout {key[8:]} multiple definitions")


def check_strings(spec: Spec, where: Token) -> None:
    """Tags and labels fit pf's fixed-size buffers."""
    for key in ("tag", "tagged"):
        value = (spec.get(key) or "").removeprefix("! ")
        if len(value) > TAG_MAX:
            fail(where, f"tag too long, max {TAG_MAX} chars")
    if len(spec.get("label") or "") > LABEL_MAX:
        fail(where, f"rule label too long (max {LABEL_MAX} chars)")


def check_ranges(spec: Spec, where: Token) -> None:
    """Numbers inside the ranges parse.y allows."""
    for name, top in SCRUB_RANGE.items():
        value = (spec.get("scrub") or {}).get(name)
        if isinstance(value, int) and not 0 <= value <= top:
            fail(where, f"illegal {name} value {value}")
    prios = spec.get("set_prio", ()) + ((spec["prio"],) if "prio" in spec
                                        else ())
    if any(p > 7 for p in prios):
        fail(where, "prio must be 0 - 7")
    for p in ports_of(spec):
        for v in (p.lo, p.hi):
            if isinstance(v, int) and v > 65535:
                fail(where, f"illegal port value {v}")


def check_flags(spec: Spec, where: Token) -> None:
    """A proto list with tcp in it drops the flags of its other members."""
    protos = spec.get("protos")
    if protos and "tcp" not in protos and spec.get("flags", "any") != "any":
        fail(where, "flags only apply to tcp")


def check_state(spec: Spec, where: Token) -> None:
    """State options that exclude each other."""
    opts = spec.get("state_opts") or {}
    if opts.get("source-track") == "global" and "max-src-nodes" in opts:
        fail(where, "'max-src-nodes' is incompatible with "
                    "'source-track global'")


def check_divert(spec: Spec, where: Token) -> None:
    """divert-to/-reply and af-to: directions and families that fit."""
    divert, direction = spec.get("divert"), spec.get("direction")
    if divert == "reply" and direction == "in":
        fail(where, "divert-reply used with incoming rule")
    if isinstance(divert, tuple) and divert[0] == "to":
        if direction == "out":
            fail(where, "divert-to used with outgoing rule")
        if spec.get("af") and divert[1].af and divert[1].af != spec["af"]:
            fail(where, "divert-to address family mismatch")
    if "af_to" in spec and isinstance(spec.get("route"), tuple):
        fail(where, "af-to cannot be used together with route-to, "
                    "reply-to, dup-to")


def check_binat(spec: Spec, where: Token) -> None:
    """parse.y's binat-to checks on the source and the redirect address."""
    if "binat_to" not in spec:
        return
    src = (spec.get("from") or (None,))[0] or []
    redir = spec["binat_to"][0]
    if not src or any(h.kind in ("any", "no-route", "urpf-failed")
                      for h in src) \
            or len(redir) != 1 or redir[0].kind == "table":
        fail(where, "binat-to requires a specified source and redirect "
                    "address")
    for h in src:
        if h.kind == "table":
            fail(where, f"invalid use of table <{h.value}> as the source "
                        "address of a binat-to rule")
        if h.kind == "dynamic" and not h.value.endswith(":0"):
            fail(where, f"invalid use of interface ({h.value}) as the "
                        "source address of a binat-to rule")
        if h.af and redir[0].af and h.af != redir[0].af:
            fail(where, "af mismatch in translation spec")


CHECKS = (check_repeated, check_strings, check_ranges, check_flags,
          check_state, check_divert, check_binat)


def check_spec(spec: Spec, where: Token) -> None:
    """The checks parse.y makes once per rule statement, before expanding."""
    for h in hosts_of(spec):
        check_host(where, h)
    for check in CHECKS:
        check(spec, where)


ICMP_AF: dict[tuple[str | None, str | None], str] = {
    ("icmp", "inet6"): "proto icmp doesn't match address family inet6",
    ("ipv6-icmp", "inet"): "proto icmp6 doesn't match address family inet"}


def check_combo(one: Spec, where: Token) -> None:
    """expand_rule() on one expanded combination."""
    proto, af = (one.get("protos") or [None])[0], one.get("af")
    if (proto, af) in ICMP_AF:
        fail(where, ICMP_AF[proto, af])


TABLE_FLAGS = {"persist", "const", "counters"}
IN_TABLE = {"table": "tables cannot contain tables",
            "dynamic": "dynamic addresses are not permitted inside tables",
            "no-route": '"no-route" is not permitted inside tables',
            "urpf-failed": '"urpf-failed" is not permitted inside tables'}


def check_table(toks: Sequence[Token], read_file: ReadFile | None) -> None:
    """tabledef: `table <name> [persist|const|counters] [file "f"] [{ }]`;
    table files are read as pfctl reads them (when read_file is given)."""
    where = toks[-1]
    texts = [t.text for t in toks]
    if len(texts) < 4 or texts[1] != "<" or ">" not in texts[3:]:
        fail(where, "syntax error")
    i, depth, items = texts.index(">", 3) + 1, 0, []
    while i < len(toks):
        word = texts[i]
        if depth:
            depth += {"{": 1, "}": -1}.get(word, 0)
            if depth:
                items.append(toks[i])
        elif word == "{":
            depth = 1
        elif word == "file" and i + 1 < len(toks):
            i += 1
            if read_file is not None:
                try:
                    read_file(texts[i])
                except OSError as exc:
                    fail(where, f'cannot load "{texts[i]}": '
                                f"{exc.strerror or exc}")
        elif word not in TABLE_FLAGS:
            fail(where, "syntax error")
        i += 1
    text = " ".join(t.text if t.kind != "qstr" else f'"{t.text}"'
                    for t in items)
    try:
        hosts = HOSTS.parse_string("{ " + text + " }", parse_all=True)[0]
    except pp.ParseBaseException:
        fail(where, "syntax error")
    for h in hosts:
        if h.kind in IN_TABLE:
            fail(where, IN_TABLE[h.kind])
        check_host(where, h)


def check_queue(toks: Sequence[Token]) -> str:
    """queue: a queue needs a bandwidth or a flows figure."""
    if not {"bandwidth", "flows"} & {t.text for t in toks}:
        fail(toks[-1], "no bandwidth or flow specification")
    return toks[1].text
