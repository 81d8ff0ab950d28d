"""A rule printed as pfctl prints it (pfctl_parser.c print_rule), from a spec.

Each rule a pf.conf statement expands to is printed with its own interface,
protocol, addresses and ports, the way `pfctl -nv` shows it, so `pflowbsd
rules` lists `pass ... port = 53` and `pass ... port = 80` rather than the
statement twice.  Only the words the spec model holds are printed, nat-to
and rdr-to included when their pool is one address with at most a port and
pool options, and log options: a spec with anything else (pools of several
addresses, a source-hash key given as a string, an icmp-type number pfctl
renames, routing, divert, queues, scrub, return-icmp, tos, set prio, ...)
gives None and the caller shows the statement's text instead.
"""
import re
from collections.abc import Sequence

from pflowbsd.rules.grammar import TIMEOUT_NAMES, Spec
from pflowbsd.rules.hosts import Host, Port

PRINTED = {"action", "block_policy", "direction", "log", "quick", "ifaces",
           "af", "protos", "from", "to", "all", "uids", "gids", "flags",
           "keep_state", "state_opts", "timeouts", "label", "tag", "tagged",
           "repeated", "anchor_name", "block_open", "nat_to", "rdr_to",
           "icmp_types"}
# Types whose codes pfctl_parser.c's icmp_code[] names none: a number there
# prints as given.
NO_CODE_NAMES = ("echorep", "echoreq")
# print_pool's order of pool options; a source-hash key prints as 0x + 32
# hex digits (a key given as a string is hashed: not printed).
POOL_ORDER = ("bitmask", "random", "source-hash", "round-robin",
              "least-states", "sticky-address", "static-port")
SOURCE_HASH_KEY = re.compile(r"source-hash 0x[0-9a-f]{32}")
# print_rule's order of state options, then the timeouts in PFTM order.
OPT_ORDER = ("max", "no-sync", "source-track", "max-src-states",
             "max-src-conn", "max-src-conn-rate", "max-src-nodes", "if-bound",
             "sloppy", "pflow")
PFTM = tuple(n for n in TIMEOUT_NAMES if n != "src.track") + ("src.track",)


def host_text(h: Host) -> str:
    value, mask = h.value, ""
    if h.kind == "dynamic" and "/" in value:
        value, _, bits = value.partition("/")
        mask = "/" + bits
    text = {"table": "<{}>", "dynamic": "({})", "route": 'route "{}"'}.get(
        h.kind, "{}")
    return ("! " if h.neg else "") + text.format(value) + mask


def op_text(word: str, p: Port) -> str:
    if p.op == ":":
        return f" {word} {p.lo}:{p.hi}"
    if p.op in ("<>", "><"):
        return f" {word} {p.lo} {p.op} {p.hi}"
    return f" {word} {p.op} {p.lo}"


def side_text(word: str, side: tuple[Sequence[Host] | None,
                                     Sequence[Port] | None] | None) -> str:
    hosts, ports = side or (None, None)
    h = hosts[0] if hosts else None
    text = f" {word} " + (host_text(h) if h else "any")
    return text + (op_text("port", ports[0]) if ports else "")


def side_is_any(side: tuple[Sequence[Host] | None, Sequence[Port] | None]
                | None) -> bool:
    """`from any to any` with no ports prints as `all`."""
    if not side:
        return True
    hosts, ports = side
    return not ports and (not hosts or (hosts[0].kind == "any"
                                        and not hosts[0].neg))


def state_text(spec: Spec) -> str:
    opts, timeouts = spec.get("state_opts") or {}, spec.get("timeouts") or {}
    words = []
    for key in OPT_ORDER:
        value = opts.get(key)
        if value is True:
            words.append(key)
        elif value is not None and value is not False:
            words.append(f"{key} {value}")
    words += [f"{n} {timeouts[n]}" for n in PFTM if n in timeouts]
    keep = spec.get("keep_state")
    if keep == "no":
        return " no state"
    text = {"modulate": " modulate state", "synproxy": " synproxy state"}.get(
        keep or "", " keep state" if words else "")
    return text + (f" ({', '.join(words)})" if words else "")


def pool_text(word: str, pool: tuple[Sequence[Host], Port | None,
                                     Sequence[object]] | None) -> str | None:
    """print_pool() for one translation address and its port; None for a
    pool of several addresses or with options (not modelled yet)."""
    if not pool:
        return ""
    hosts, port, opts = pool
    if len(hosts) != 1 or hosts[0].kind not in ("addr", "dynamic", "table"):
        return None     # several addresses: pfctl makes a table of them
    out = f" {word} " + host_text(hosts[0])
    if port is None:
        pass
    elif port.op == "=":
        out += f" port {port.lo}"
    elif port.op == ":" and port.hi is not None:
        out += f" port {port.lo}:{port.hi}"
    else:
        return None
    words = [str(o) for o in opts]
    if len(set(words)) != len(words) or set(words) - set(POOL_ORDER) - {
            w for w in words if SOURCE_HASH_KEY.fullmatch(w)}:
        return None     # a hashed key string, or an option twice
    if "static-port" in words and (word != "nat-to" or port is not None):
        return None
    rank = {w: i for i, w in enumerate(POOL_ORDER)}
    words.sort(key=lambda w: rank.get(w, rank["source-hash"]))
    return out + "".join(" " + w for w in words)


def print_spec(spec: Spec) -> str | None:
    """print_rule() for one expanded combination, or None (see above)."""
    given = {k for k, v in spec.items()
             if v is not None and v is not False and v not in ([], {}, "")}
    if given - PRINTED or set(spec.get("state_opts") or {}) - set(
            OPT_ORDER) or spec["action"] not in ("pass", "block", "match"):
        return None
    out = spec["action"]
    if out == "block":
        policy = spec.get("block_policy") or "drop"
        if " " in policy:       # return-icmp(...) and the like
            return None
        out += " " + policy
    if spec.get("direction"):
        out += " " + spec["direction"]
    log = spec.get("log")
    if log is True:
        out += " log"
    elif log:
        # print_rule: all, matches, user, then `to pflogN` (pflog0 is the
        # default logif 0, not printed).
        words = [w for w in ("all", "matches", "user") if w in log] + [
            w for w in log if w.startswith("to pflog") and w != "to pflog0"]
        if len(words) + ("to pflog0" in log) != len(log):
            return None
        out += " log" + (f" ({', '.join(words)})" if words else "")
    if spec.get("quick"):
        out += " quick"
    for neg, name in (spec.get("ifaces") or [])[:1]:
        out += " on " + ("! " if neg else "") + name
    if spec.get("af"):
        out += " " + spec["af"]
    protos = spec.get("protos")
    if protos:
        out += " proto " + protos[0]
    src, dst = spec.get("from"), spec.get("to")
    if all(not s or (not s[1] and (not s[0] or (s[0][0].kind == "any"
                                   and not s[0][0].neg))) for s in (src, dst)):
        out += " all"
    else:
        out += side_text("from", src) + side_text("to", dst)
    for key, word in (("uids", "user"), ("gids", "group")):
        ids = spec.get(key)
        for p in [ids] if isinstance(ids, Port) else (ids or [])[:1]:
            out += op_text(word, p)
    flags = spec.get("flags")
    if flags is None and spec["action"] == "pass" and \
            spec.get("keep_state") != "no" and (not protos or protos[0] ==
                                                "tcp"):
        flags = "S/SA"
    if flags and flags != "any":
        out += " flags " + flags
    elif flags == "any" and spec["action"] == "pass":
        out += " flags any"
    icmp = spec.get("icmp_types")
    if icmp:
        word, types = icmp
        if isinstance(types, tuple):    # one expanded: (proto, (type, code))
            word = "icmp-type" if word == "icmp" else "icmp6-type"
            types = [types]
        # geticmptypebynumber() prints a known number by name: only names as
        # written (and a number as code of a type with no code names) are sure.
        if len(types) != 1 or str(types[0][0]).isdigit() or (
                len(types[0]) > 1 and str(types[0][1]).isdigit()
                and types[0][0] not in NO_CODE_NAMES):
            return None
        out += f" {word} {types[0][0]}"
        if len(types[0]) > 1:
            out += f" code {types[0][1]}"
    out += state_text(spec)
    if spec.get("label"):
        out += f' label "{spec["label"]}"'
    if spec.get("tag"):
        out += f' tag {spec["tag"]}'
    tagged = spec.get("tagged")
    if tagged:
        neg, name = ("! ", tagged[2:]) if tagged.startswith("! ") else \
            ("", tagged)
        out += f" {neg}tagged {name}"
    for key, word in (("nat_to", "nat-to"), ("rdr_to", "rdr-to")):
        pool = pool_text(word, spec.get(key))
        if pool is None:
            return None
        out += pool
    return out
