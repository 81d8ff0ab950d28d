"""List expansion and numbering of pf.conf rules, in pfctl's order.

parse.y's expand_rule() nests its loops interface, proto, icmp-type, src
host, dst host, src port, dst port, uid, gid (pf4.ok shows it); it drops
combinations whose address families disagree and numbers each kept rule in
turn.  The rule's address family is first decided from the host lists
(decide_address_family) and from translation addresses (remove_invalid_hosts,
here redirect_hosts).  With the optimizer off those numbers are what the
kernel reports as `rule N`.  A rule we cannot model stops the numbering of
its ruleset: later rules there get nr None, never a guess.
"""
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from pflowbsd.rules.check import check_combo
from pflowbsd.rules.grammar import Spec
from pflowbsd.rules.hosts import ANY, Endpoint, Host, Port, norm_address
from pflowbsd.rules.ifa import MODES, IfTable
from pflowbsd.rules.lexer import Token
from pflowbsd.rules.model import (
    FILTER_ACTIONS,
    Rule,
    Ruleset,
    RuleSyntaxError,
    StateOpt,
    rule_from_spec,
)
from pflowbsd.rules.printer import print_spec

# The host's interfaces (pflowbsd.rules.ifa), for names that stand for them.
Interfaces = IfTable

# pfctl keywords the grammar does not model: a rule using one is skipped
# with a warning instead of being rejected as a syntax error.
UNMODELLED = {"map-e-portset", "keep-counters", "max-src-conn-fanout",
              "source-limit", "state-limit", "l3", "ethernet"}

# localhost as /etc/hosts has it (pfctl resolves names at load time).
KNOWN_NAMES = {"localhost": (("127.0.0.1", "inet"), ("::1", "inet6"))}


class Numbering:
    """Rule numbers per (anchor, ruleset), as pf->rule_nr counts them."""

    def __init__(self, rs: Ruleset) -> None:
        self.rs = rs
        self.next: dict[tuple[str, str], int | None] = {}

    def add(self, rule: Rule) -> None:
        key = (rule.anchor, rule.ruleset)
        nr = self.next.get(key, 0)
        if nr is not None:
            rule.nr = nr
            self.next[key] = nr + 1
        self.rs.rules.append(rule)

    def skip(self, anchor: str, tok: Token, why: str) -> None:
        self.rs.warnings.append(
            f"{tok.file}:{tok.line}: rule skipped ({why}); later rule "
            f"numbers in {anchor or 'the main ruleset'} are unknown")
        self.next[(anchor, "filter")] = None
        self.rs.stopped.setdefault(anchor, f"{tok.file}:{tok.line}")


def interface_hosts(h: Host, interfaces: Interfaces) -> list[Host] | None:
    """host_if(): `em0`, `em0:network`, `egress:0`, `self`, `em0/24`: the
    addresses pfctl reads off the interfaces, or None when the name is no
    interface, group or `self` (it stays a name)."""
    value, _, mask = h.value.partition("/")
    name, _, modifier = value.partition(":")
    if modifier not in MODES or not interfaces.exists(name):
        return None
    hosts = interfaces.lookup(name, modifier, h.neg,
                              int(mask) if mask.isdigit() else None)
    return hosts or None


def resolve_names(hosts: Sequence[Host], interfaces: Interfaces | None = None
                  ) -> list[Host]:
    """Replace known host names by their addresses, as pfctl's host() does."""
    out: list[Host] = []
    for h in hosts:
        if h.kind == "self" and interfaces:
            h = Host(h.neg, "name", "self" + h.value[4:])
        found = interface_hosts(h, interfaces) \
            if h.kind == "name" and interfaces else None
        if found is not None:
            out.extend(found)
        elif h.kind == "name" and h.value.split("/")[0] in KNOWN_NAMES:
            base, _, bits = h.value.partition("/")
            for addr, af in KNOWN_NAMES[base]:
                full = 32 if af == "inet" else 128
                value = norm_address(addr, int(bits) if bits else full)
                out.append(Host(h.neg, "addr", value, af))
        else:
            out.append(h)
    return out


def printed_host(h: Host, af: str | None) -> Host:
    """A host as print_addr() shows it in a rule of family af: 0/0 is any,
    and a dynamic address's mask is cut to the family's full length
    (`(self)/40` is `(self)` in an inet rule)."""
    if h.kind == "any" and h.af:
        return Host(h.neg, "any", "any")
    if h.kind == "dynamic" and "/" in h.value and af:
        name, _, bits = h.value.partition("/")
        if bits.isdigit() and int(bits) >= (32 if af == "inet" else 128):
            return Host(h.neg, h.kind, name, h.af)
    return h


def decide_address_family(hosts: Sequence[Host], af: str | None) -> str | None:
    """parse.y: a list whose addresses share one family sets the rule's."""
    target = None
    for h in hosts or ():
        if h.af:
            if target is None:
                target = h.af
            elif target != h.af:
                return af
    return af or target


def redirect_hosts(spec: Spec, key: str, af: str | None, tok: Token,
                   interfaces: Interfaces | None) -> str | None:
    """remove_invalid_hosts(): translation addresses fix or follow the af."""
    if key not in spec or not isinstance(spec[key], tuple):
        return af
    at = 1 if key in ("route", "divert") else 0
    if len(spec[key]) <= at or not isinstance(spec[key][at], list):
        if key == "divert" and len(spec[key]) > 1 and \
                isinstance(spec[key][1], Host):
            hosts = resolve_names([spec[key][1]], interfaces)
            return af or hosts[0].af
        return af
    hosts = [h for h in resolve_names(
        [h for h in spec[key][at] if isinstance(h, Host)], interfaces)]
    kept = []
    if not hosts:
        return af
    for h in hosts:
        if af and h.af and h.af != af:
            continue
        if h.af and not af:
            af = h.af
        kept.append(h)
    if not kept:
        raise RuleSyntaxError(tok.file, tok.line, AF_MISMATCH.get(
            key, "no translation address with matching address family "
                 "found."))
    spec[key] = spec[key][:at] + (kept,) + tuple(spec[key][at + 1:])
    return af


AF_MISMATCH = {"route": "af mismatch in routing spec",
               "binat_to": "af mismatch in translation spec"}


def apply_state_defaults(spec: Spec,
                         defaults: Mapping[str, StateOpt | dict[str, int]]
                         ) -> None:
    """`set state-defaults` reaches pass rules with no state clause."""
    if spec["action"] != "pass" or spec.get("keep_state") or not defaults:
        return
    for k, v in defaults.items():
        if isinstance(v, dict):         # k == "timeouts"
            for name, secs in v.items():
                spec["timeouts"].setdefault(name, secs)
        else:
            spec["state_opts"].setdefault(k, v)


def port_label(p: Port | None) -> str:
    if p is None:
        return ""
    if p.op == "=":
        return str(p.lo)
    if p.op in ("<>", "><"):
        return f"{p.lo}{p.op}{p.hi}"
    if p.op == ":":     # expand_label_port() has no case for PF_OP_RRG
        return ""
    return f"{p.op}{p.lo}"


def addr_label(h: Host | None) -> str:
    if h is None or h.kind == "any":
        return ("! " if h and h.neg else "") + "any"
    text = {"table": "<{}>", "dynamic": "({})"}.get(h.kind, "{}")
    return ("! " if h.neg else "") + text.format(h.value)


def expand_label(label: str | None, ifname: str | None, src: Host,
                 sport: Port | None, dst: Host, dport: Port | None,
                 proto: str | None) -> str | None:
    """$if, $srcaddr, ... in a label or tag, for one expanded rule."""
    if label is None or "$" not in label:
        return label
    for macro, value in (("$if", ifname or ""), ("$srcaddr", addr_label(src)),
                         ("$dstaddr", addr_label(dst)),
                         ("$srcport", port_label(sport)),
                         ("$dstport", port_label(dport)),
                         ("$proto", proto or "ip")):
        label = label.replace(macro, value)
    return label or None


ICMP_PROTO = {"icmp-type": "icmp", "icmp6-type": "ipv6-icmp",
              "ipv6-icmp-type": "ipv6-icmp"}


def implied_options(spec: Spec) -> None:
    """What parse.y adds on its own: binat-to is outbound, max-src-* track
    sources per rule, max-src-conn-rate sets src.track, max sets the
    rule's adaptive timeouts (60 % / 120 %), an empty label is none."""
    opts, timeouts = spec["state_opts"], spec["timeouts"]
    if "binat_to" in spec and not spec.get("direction"):
        spec["direction"] = "out"
    if opts.get("source-track") == "":
        opts["source-track"] = "global"
    if any(k.startswith("max-src-") for k in opts):
        # parse.y: max-src-nodes and max-src-conn* set PFRULE_RULESRCTRACK,
        # max-src-states only PFRULE_SRCTRACK (global unless `rule`)
        opts["source-track"] = opts.get("source-track") or "global"
        if any(k.startswith(("max-src-conn", "max-src-nodes")) for k in opts):
            opts["source-track"] = "rule"
    if "max-src-conn-rate" in opts:
        secs = int(str(opts["max-src-conn-rate"]).split("/")[1])
        timeouts.setdefault("src.track", secs)
    if "max" in opts and "adaptive.start" not in timeouts \
            and "adaptive.end" not in timeouts:
        timeouts["adaptive.start"] = opts["max"] * 6 // 10
        timeouts["adaptive.end"] = opts["max"] * 12 // 10
    for key in ("label", "tag"):
        if spec.get(key) == "":
            spec[key] = None


def expand(spec: Spec, rs: Ruleset, anchor: str, tok: Token, text: str,
           interfaces: Interfaces | None = None, last: Token | None = None
           ) -> list[Rule]:
    """The rules one pf.conf rule statement stands for, in pfctl's order.

    Errors name last, the statement's last token, as yyerror() does."""
    at = last or tok
    apply_state_defaults(spec, rs.state_defaults)
    implied_options(spec)
    src_hosts, src_ports = spec.get("from") or (None, None)
    dst_hosts, dst_ports = spec.get("to") or (None, None)
    src_hosts = resolve_names(src_hosts, interfaces) if src_hosts else [ANY]
    dst_hosts = resolve_names(dst_hosts, interfaces) if dst_hosts else [ANY]
    af = spec.get("af")
    if spec["action"] in FILTER_ACTIONS:
        af = decide_address_family(src_hosts, af)
        af = decide_address_family(dst_hosts, af)
    for key in ("nat_to", "rdr_to", "binat_to", "redirect", "route",
                "divert"):
        af = redirect_hosts(spec, key, af, at, interfaces)
    icmp = spec.get("icmp_types")
    icmp_items: Sequence[tuple[str, Any] | None] = [None]
    if icmp:
        typed = [(ICMP_PROTO[icmp[0]], t) for t in icmp[1]]
        icmp_items = typed
        if typed[0][0] == "ipv6-icmp" and not af:
            af = "inet6"
    combos = itertools.product(
        spec.get("ifaces") or [None], spec.get("protos") or [None],
        icmp_items, src_hosts, dst_hosts, src_ports or [None],
        dst_ports or [None], spec.get("uids") or [None],
        spec.get("gids") or [None])
    rules = []
    for iface, proto, itype, sh, dh, sp, dp, uid, gid in combos:
        if (af and sh.af and af != sh.af) or (af and dh.af and af != dh.af) \
                or (sh.af and dh.af and sh.af != dh.af):
            continue
        if (sp or dp) and proto not in ("tcp", "udp", "sctp"):
            raise RuleSyntaxError(at.file, at.line,
                                  "port only applies to tcp/udp")
        if itype and proto and proto != itype[0]:
            raise RuleSyntaxError(at.file, at.line, "icmp-type mismatch")
        one = dict(spec)
        one["af"] = af or sh.af or dh.af
        one["ifaces"] = [iface] if iface else None
        one["protos"] = [proto] if proto else None
        one["from"] = ([sh], [sp] if sp else None)
        one["to"] = ([dh], [dp] if dp else None)
        one["uids"], one["gids"] = uid, gid
        one["icmp_types"] = itype
        check_combo(one, at)
        for key in ("label", "tag", "tagged"):
            one[key] = expand_label(spec.get(key),
                                    iface[1] if iface else "any",
                                    sh, sp, dh, dp, proto)
        if proto and proto != "tcp" and one.get("keep_state") in (
                "modulate", "synproxy"):
            one["keep_state"] = "keep"
        scoped = getattr(sh, "scope", None) or getattr(dh, "scope", None)
        if scoped and not iface:
            one["ifaces"] = [(False, scoped)]
        rule = rule_from_spec(one, anchor, None, tok.line, text)
        rule.printed = print_spec(one)
        rule.spec = one
        rule.src = Endpoint(printed_host(sh, one["af"]), sp)
        rule.dst = Endpoint(printed_host(dh, one["af"]), dp)
        rules.append(rule)
    if not rules:
        raise RuleSyntaxError(at.file, at.line,
                              "rule expands to no valid combination")
    if "binat_to" in spec:
        rules += binat_reverse(spec, rs, anchor, tok, text, interfaces,
                               last)
    return rules


def binat_reverse(spec: Spec, rs: Ruleset, anchor: str, tok: Token,
                  text: str, interfaces: Interfaces | None,
                  last: Token | None) -> list[Rule]:
    """binat-to also loads the inbound half: from dst to the binat address,
    rdr-to the source (parse.y builds it after the outbound rule)."""
    back = {k: v for k, v in spec.items() if k != "binat_to"}
    back["state_opts"], back["timeouts"] = dict(spec["state_opts"]), {}
    back["direction"] = "in"
    back["from"] = spec.get("to") or ([ANY], None)
    back["to"] = (spec["binat_to"][0], None)
    back["rdr_to"] = ((spec.get("from") or ([ANY], None))[0], None, [])
    back["af"] = spec.get("af") or spec["binat_to"][0][0].af
    return expand(back, rs, anchor, tok, text, interfaces, last)


def expand_nr_macros(rs: Ruleset) -> None:
    """`$nr` in labels and tags is the final rule number (after numbering), in the
    rule's words and in its printed line (the printer leaves `$nr` for this)."""
    for rule in rs.rules:
        nr = str(rule.nr) if rule.nr is not None else "?"
        for attr in ("label", "tag"):
            value = getattr(rule, attr)
            if value and "$nr" in value:
                setattr(rule, attr, value.replace("$nr", nr))
        if rule.printed and "$nr" in rule.printed:
            rule.printed = rule.printed.replace("$nr", nr)
