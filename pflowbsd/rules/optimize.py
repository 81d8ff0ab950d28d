"""The table pass of pfctl's ruleset optimizer (pfctl_optimize.c, -o basic).

With the optimizer on (pfctl's default), rules that differ only in their
source address, or only in their destination address, are merged into one
rule on a `<__automatic_N>` table once TABLE_THRESHOLD of them share it
(combine_rules()).  Strategy, as pfctl_optimize.c does it per ruleset:
superblocks first (construct_superblocks(): adjacent rules whose BREAK
fields agree; a BARRIER field puts a rule alone), then each pair of rules of
a superblock that rules_combineable() allows joins the first one's table.
The comparisons are made on each expanded rule's spec (Rule.spec), which
holds every word the rule was written with.

Names are those of `pfctl -n`: add_opt_table()'s temporary `__automatic_K`,
K counting every table started in the run, small ones too.  A loaded
ruleset's tables are renamed `__automatic_<random id>_<n>`
(pf_opt_create_table(), arc4random()), which no reader of pf.conf can know.

Pass 1 (remove_identical_rules()) runs first: a rule that another of its
superblock covers (exclude_supersets(): no interface, both directions, any
protocol or port, a wider network, no family) is dropped.  Not modelled:
pass 3 (reorder_rules(), which reorders a superblock for skip steps), so
only numbers of rules outside merged superblocks are sure.  No I/O here.
"""
import ipaddress
from collections.abc import Iterable
from dataclasses import replace
from typing import cast

from pflowbsd.rules.grammar import Spec
from pflowbsd.rules.hosts import Endpoint, Host, Port
from pflowbsd.rules.model import Rule
from pflowbsd.rules.printer import print_spec

TABLE_THRESHOLD = 6
PREFIX = "__automatic_"
# pf_rule_desc[] NOMERGE and COMBINED fields, as spec keys: they may differ
# inside a superblock.  Every other key is BREAK (must be equal).
NOMERGE = frozenset(("af", "ifaces", "tagged", "os", "timeouts", "uids",
                     "gids", "direction", "protos", "icmp_types", "flags",
                     "tos", "from", "to", "onrdomain", "af_to"))
# BARRIER state options: max_states, max_src_* (and per-rule source-track)
BARRIER_OPTS = frozenset(("max", "max-src-nodes", "max-src-states",
                          "max-src-conn", "max-src-conn-rate"))
# PF_ADDR_ADDRMASK hosts: the only ones addrs_combineable() merges
ADDRMASK = frozenset(("addr", "any"))


def barrier(spec: Spec) -> bool:
    """A field that puts the rule in its own superblock (BARRIER)."""
    opts = spec.get("state_opts") or {}
    return (spec["action"] == "anchor" or bool(spec.get("label"))
            or bool(spec.get("probability")) or bool(BARRIER_OPTS & set(opts))
            or opts.get("source-track") == "rule")


def ifname(spec: Spec) -> str:
    ifaces = spec.get("ifaces") or []
    return ifaces[0][1] if ifaces else ""


def interface_group(name: str) -> bool:
    """interface_group(): a real interface's name ends in a digit."""
    return bool(name) and not ("0" <= name[-1] <= "9")


def break_fields(spec: Spec) -> dict[str, object]:
    return {k: v for k, v in spec.items() if k not in NOMERGE}


def inclusive(first: Spec, spec: Spec) -> bool:
    """superblock_inclusive(): may spec join the block first opened?"""
    if barrier(spec) or barrier(first):
        return False
    a, b = ifname(first), ifname(spec)
    if (interface_group(a) or interface_group(b)) and a.lower() != b.lower():
        return False
    return break_fields(comparable(first)) == break_fields(comparable(spec))


def side(spec: Spec, key: str) -> tuple[Host | None, list[Port] | None]:
    """The one host and the ports of an expanded rule's from or to."""
    hosts, ports = spec.get(key) or (None, None)
    return (hosts[0] if hosts else None), ports


def without_hosts(spec: Spec) -> dict[str, object]:
    """comparable_rule(COMBINED): the rule with src.addr and dst.addr gone
    (neg stays: it is not part of the address)."""
    out = dict(spec)
    for key in ("from", "to"):
        host, ports = side(spec, key)
        out[key] = (host.neg if host else False, ports)
    return out


def combineable(host: Host | None) -> bool:
    return host is not None and host.kind in ADDRMASK


class Table:
    """pf_opt_tbl: a table's name, the addresses it would hold, and whether
    a rule already took it (pt_generated)."""

    def __init__(self, name: str, first: Host) -> None:
        self.name, self.hosts = name, [first]
        self.generated = False


Comparable = dict[str, object]


def comparable(spec: Spec) -> Comparable:
    """comparable_rule(DC): the rule's fields as pf_rule holds them once
    expanded (one interface, protocol, host and port; flags as set)."""
    out = dict(spec)
    out.pop("all", None)        # a way of writing from any to any
    out["direction"], out["af"] = spec.get("direction"), spec.get("af")
    keep = spec.get("keep_state")
    out["keep_state"] = (keep or "keep") if spec["action"] == "pass" \
        and keep != "no" else (keep if keep != "no" else None)
    ifaces = spec.get("ifaces") or [(False, "")]
    out["ifaces"] = ifaces[0]
    protos = spec.get("protos")
    proto = protos[0] if protos else None
    out["protos"] = proto
    flags = spec.get("flags")
    if flags is None and spec["action"] == "pass" and \
            spec.get("keep_state") != "no":
        flags = "S/SA"
    out["flags"] = None if flags == "any" or (proto and proto != "tcp") \
        else flags
    for key in ("from", "to"):
        host, ports = side(spec, key)
        out[key] = (address(host), ports)
    return out


Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = tuple[bool, str, Net | str | None]
Side = tuple[Address, object]


def address(host: Host | None) -> Address:
    """(neg, kind, value); an ADDRMASK host's value is its network."""
    if host is None or host.kind == "any":
        return (bool(host and host.neg), "mask", None)
    if host.kind == "addr":
        return (host.neg, "mask", ipaddress.ip_network(host.value,
                                                       strict=False))
    return (host.neg, host.kind, host.value)


def covers(sup: Address, sub: Address, same_af: bool) -> Address:
    """sub's address as exclude_supersets() leaves it: none under a
    0/0, sup's own under a wider network of the same family."""
    sneg, skind, snet = sup
    bneg, bkind, bnet = sub
    if skind == "mask" and snet is None and not sneg and not bneg:
        return (False, "mask", None)
    if skind == bkind == "mask" and sneg == bneg and same_af and \
            isinstance(snet, (ipaddress.IPv4Network, ipaddress.IPv6Network)) \
            and isinstance(bnet, type(snet)) and \
            snet.prefixlen < bnet.prefixlen and bnet.subnet_of(snet):  # type: ignore[arg-type]
        return sup
    return sub


def exclude_supersets(sup: Comparable, sub: Comparable) -> None:
    """exclude_supersets(): what sup covers is cleared from sub."""
    sif = cast(tuple[bool, str], sup["ifaces"])
    bif = cast(tuple[bool, str], sub["ifaces"])
    if not sif[1]:
        sub["ifaces"] = (bif[0], "")
    if sup.get("direction") is None:
        sub["direction"] = None
    if (sup["protos"] is None or sup["protos"] == sub["protos"]) and \
            sup["flags"] is None and sub["flags"] is not None:
        sub["flags"] = None
    if sup["protos"] is None:
        sub["protos"] = None
    for key in ("from", "to"):
        saddr, sports = cast(Side, sup[key])
        baddr, bports = cast(Side, sub[key])
        sub[key] = (covers(saddr, baddr, sup.get("af") == sub.get("af")),
                    bports if sports else None)
    if sup.get("af") is None:
        sub["af"] = None


def remove_identical(block: list[Rule]) -> list[Rule]:
    """remove_identical_rules(): of two rules one of which covers the
    other, the covered one goes."""
    alive = list(block)
    comps = {id(r): comparable(r.spec or {}) for r in block}
    i = 0
    while i < len(alive):
        j, dropped_i = i + 1, False
        while j < len(alive):
            a, b = dict(comps[id(alive[i])]), dict(comps[id(alive[j])])
            a2, b2 = dict(a), dict(b)
            exclude_supersets(a, b)
            exclude_supersets(b2, a2)
            if a == b:
                del alive[j]
                continue
            if a2 == b2:
                del alive[i]
                dropped_i = True
                break
            j += 1
        if not dropped_i:
            i += 1
    return alive


def combine(block: list[Rule], counter: list[int]) -> list[Rule]:
    """combine_rules() on one superblock; counter is add_opt_table()'s
    static tablenum, shared by the whole run."""
    src: dict[int, Table] = {}
    dst: dict[int, Table] = {}
    gone: set[int] = set()
    specs = [r.spec or {} for r in block]
    plain = [without_hosts(s) for s in specs]
    srcs = [side(s, "from")[0] for s in specs]
    dsts = [side(s, "to")[0] for s in specs]
    for i in range(len(block)):
        if i in gone:
            continue
        for j in range(i + 1, len(block)):
            if j in gone:
                continue
            sh1, dh1, sh2, dh2 = srcs[i], dsts[i], srcs[j], dsts[j]
            src_eq, dst_eq = sh1 == sh2, dh1 == dh2
            same = plain[i] == plain[j]
            for eq, other_eq, mine, theirs, h1, h2 in (
                    (src_eq, dst_eq, dst, src, dh1, dh2),
                    (dst_eq, src_eq, src, dst, sh1, sh2)):
                if eq and not other_eq and i not in theirs \
                        and j not in mine and j not in theirs and same \
                        and combineable(h1) and combineable(h2):
                    assert h1 is not None and h2 is not None
                    if i not in mine:
                        mine[i] = Table(f"{PREFIX}{counter[0]}", h1)
                        counter[0] += 1
                    mine[i].hosts.append(h2)
                    mine[j] = mine[i]
                    if len(mine[i].hosts) >= TABLE_THRESHOLD:
                        gone.add(j)
                    break
    out: list[Rule] = []
    for i, rule in enumerate(block):
        if i in gone:
            continue
        for tables, key in ((src, "from"), (dst, "to")):
            table = tables.get(i)
            if table is None or len(table.hosts) < TABLE_THRESHOLD:
                continue
            if table.generated:     # "This rule is included in a table"
                break
            table.generated = True
            rule = merged(rule, key, table.name)
        else:
            out.append(rule)
    return out


def merged(rule: Rule, key: str, name: str) -> Rule:
    spec = dict(rule.spec or {})
    host, ports = side(spec, key)
    table = Host(bool(host and host.neg), "table", name)
    spec[key] = ([table], ports)
    end = Endpoint(table, ports[0] if ports else None)
    out = replace(rule, spec=spec, printed=print_spec(spec))
    if key == "from":
        out.src = end
    else:
        out.dst = end
    return out


def superblocks(rules: Iterable[Rule]) -> list[list[Rule]]:
    blocks: list[list[Rule]] = []
    for rule in rules:
        first = blocks[-1][0] if blocks else None
        # a rule past an unmodelled one (no number) starts its own block:
        # the rule between them is unknown
        if first is not None and first.spec is not None and \
                rule.spec is not None and rule.nr is not None and \
                inclusive(first.spec, rule.spec):
            blocks[-1].append(rule)
        else:
            blocks.append([rule])
    return blocks


def automatic_tables(rules: list[Rule]) -> list[Rule]:
    """The rules after the optimizer's table pass, each ruleset renumbered
    as pfctl_optimize_ruleset() does (from 0, in the new order).  Rulesets
    are optimized in the order they first appear, the main one first."""
    order = dict.fromkeys([""] + [r.anchor for r in rules])
    counter = [0]
    kept: dict[str, list[Rule]] = {}
    by_anchor: dict[str, list[Rule]] = {a: [] for a in order}
    for r in rules:
        if r.ruleset == "filter":
            by_anchor[r.anchor].append(r)
    for anchor, filt in by_anchor.items():
        done = [r for block in superblocks(filt)
                for r in (combine(remove_identical(block), counter)
                          if len(block) > 1 else block)]
        nr = 0
        for i, r in enumerate(done):
            if r.nr is not None:
                done[i] = replace(r, nr=nr)
                nr += 1
        kept[anchor] = done
    queues = {a: iter(rs) for a, rs in kept.items()}
    # keep the original interleaving of rulesets: each filter rule's slot is
    # taken by the next kept rule of its ruleset, dropped slots vanish
    out: list[Rule] = []
    remaining = {a: len(rs) for a, rs in kept.items()}
    for r in rules:
        if r.ruleset != "filter":
            out.append(r)
        elif remaining[r.anchor]:
            out.append(next(queues[r.anchor]))
            remaining[r.anchor] -= 1
    return out
