"""A rule printed as pfctl prints it (pfctl_parser.c print_rule), from a spec.

Each rule a pf.conf statement expands to is printed with its own interface,
protocol, addresses and ports, the way `pfctl -nv` shows it, so `pflowbsd
rules` lists `pass ... port = 53` and `pass ... port = 80` rather than the
statement twice.  print_spec() follows print_rule()'s order word by word;
each clause is a small function returning its text, or None where the spec
holds something whose printed form is not sure here.  Then the whole rule
is None and the caller shows the statement's text instead: never a wrong
line.  Not printed: pools of several addresses (pfctl makes a table
`<__automatic_N>` of them, numbered in load order), a source-hash with no key
(pfctl draws a random one), a host name as divert address, af-to,
`floating`, os fingerprints.  A key given as a string prints as its MD5, as
parse.y makes it; an icmp type or code number as the name pfctl's tables give
it; `$nr` in a label or tag stays for expand.expand_nr_macros to fill in.  Name
tables: pftables.
Past 400 lines: print_rule() is one long C function and this follows it
clause by clause; cut in two, its order would be read in two places.
"""
import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any

from pflowbsd.rules import pftables as T
from pflowbsd.rules.grammar import TIMEOUT_NAMES, RangePort, Spec
from pflowbsd.rules.hosts import Host, Port
from pflowbsd.rules.pftables import number, tos_number

# print_rule's order of state options, then the timeouts in PFTM order.
OPT_ORDER = ("max", "no-sync", "source-track", "max-src-states",
             "max-src-conn", "max-src-conn-rate", "max-src-nodes", "overload",
             "if-bound", "sloppy", "pflow")
PFTM = tuple(n for n in TIMEOUT_NAMES if n not in ("src.track", "tcp.tsdiff")
             ) + ("src.track", "tcp.tsdiff")
# print_pool's order of pool options; a source-hash key prints as 0x + 32
# hex digits (a key given as a string is hashed: not printed).
POOL_ORDER = ("bitmask", "random", "source-hash", "round-robin",
              "least-states", "sticky-address", "static-port")
POOL_TYPES = set(POOL_ORDER[:5])
SOURCE_HASH_KEY = re.compile(r"source-hash 0x[0-9a-fA-F]{32}")
# The scrub ( ) words in print_rule's order; set-tos prints in set ( ).
SCRUB_ORDER = ("no-df", "random-id", "min-ttl", "reassemble", "max-mss")
UINT_MAX = 0xFFFFFFFF
TCPFLAGS = "FSRPAUEW"


def host_text(h: Host, af: str | None = None) -> str:
    """print_addr(); an interface's mask as long as the af's or longer
    (gen_dynnode() cuts inet's to 32) is not printed."""
    value, mask = h.value, ""
    if h.kind == "dynamic" and "/" in value:
        value, _, bits = value.partition("/")
        if not bits.isdigit() or int(bits) < (32 if af == "inet" else 128):
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
                                     Sequence[Port] | None] | None,
              af: str | None = None) -> str:
    hosts, ports = side or (None, None)
    h = hosts[0] if hosts else None
    text = f" {word} " + (host_text(h, af) if h else "any")
    return text + (op_text("port", ports[0]) if ports else "")


def side_is_any(side: tuple[Sequence[Host] | None, Sequence[Port] | None]
                | None) -> bool:
    """`from any to any` with no ports prints as `all`."""
    if not side:
        return True
    hosts, ports = side
    return not ports and (not hosts or (hosts[0].kind == "any"
                                        and not hosts[0].neg))


def flag_bits(text: str) -> str:
    """print_flags(): the letters in FSRPAUEW order."""
    return "".join(c for c in TCPFLAGS if c in text)


def block_text(policy: str | None, af: str | None) -> str | None:
    """print_rule's block policy: drop, return, return-rst(ttl N) or
    return-icmp with parse.y's port-unr defaults, by the rule's af."""
    word, _, arg = (policy or "drop").partition(" ")
    if word in ("drop", "return") and not arg:
        return " " + word
    if word == "return-rst":
        ttl = re.fullmatch(r"ttl (\d+)", arg)
        if arg and not ttl:
            return None
        n = int(ttl.group(1)) if ttl else 0
        return " return-rst" + (f"(ttl {n})" if n else "") if n < 256 \
            else None
    parts = [p.strip() for p in arg.split(",")] if arg else []
    codes: list[Any] = [T.RETURN_ICMP_DEFAULT, T.RETURN_ICMP6_DEFAULT]
    if word == "return-icmp" and len(parts) <= 2:
        codes[:len(parts)] = parts
    elif word == "return-icmp6" and len(parts) <= 1:
        codes[1:1 + len(parts)] = parts
    else:
        return None
    names = [T.unreach_code_name(codes[0], "inet"),
             T.unreach_code_name(codes[1], "inet6")]
    if None in names:
        return None
    if af == "inet":
        return f" return-icmp({names[0]})"
    if af == "inet6":
        return f" return-icmp6({names[1]})"
    return f" return-icmp({names[0]}, {names[1]})"


def log_text(log: Any) -> str | None:
    """print_rule: all, matches, user, then `to pflogN` (pflog0 is the
    default logif 0, not printed)."""
    if log is True:
        return " log"
    words = [w for w in ("all", "matches", "user") if w in log] + [
        w for w in log if w.startswith("to pflog") and w != "to pflog0"]
    if len(words) + ("to pflog0" in log) != len(log):
        return None
    return " log" + (f" ({', '.join(words)})" if words else "")


def icmp_text(spec: Spec) -> str | None:
    """icmp-type/icmp6-type NAME [code NAME] as geticmp*bynumber() print."""
    word, types = spec["icmp_types"]
    if isinstance(types, tuple):    # one expanded: (proto, (type, code))
        word = "icmp-type" if word == "icmp" else "icmp6-type"
        types = [types]
    if len(types) != 1:
        return None
    af = "inet6" if word != "icmp-type" else "inet"
    itype, *code = types[0]
    typed = T.icmp_type_word(itype, af)
    if typed is None:
        return None
    out = f" {'icmp6-type' if af == 'inet6' else 'icmp-type'} {typed[1]}"
    if code:
        text = T.icmp_code_word(code[0], typed[0], af)
        if text is None:
            return None
        out += " code " + text
    return out


def set_text(spec: Spec) -> str | None:
    """set ( prio, queue, tos, delay ): one clause, in print_rule's order."""
    items = []
    prio = spec.get("set_prio")
    if prio:
        if any(number(p, 7) is None for p in prio):
            return None
        items.append(f"prio {prio[0]}" if len(set(prio)) == 1
                     else f"prio({prio[0]}, {prio[1]})")
    queue = spec.get("queue")
    if queue:
        if len(queue) > 2:
            return None
        items.append(f"queue {queue[0]}" if len(queue) == 1
                     else f"queue({queue[0]}, {queue[1]})")
    tos = spec.get("set_tos", (spec.get("scrub") or {}).get("set-tos"))
    if tos is not None:
        n = tos_number(tos)
        if n is None:
            return None
        items.append(f"tos 0x{n:02x}")
    if spec.get("delay") is not None:
        if number(spec["delay"], 0xFFFF) is None:
            return None
        items.append(f"delay {spec['delay']}")
    return f" set ({', '.join(items)})" if items else ""


def probability_text(value: str | None) -> str | None:
    """parse.y reads N% or a fraction and keeps floor(p * UINT_MAX + 0.5)
    (0 made 1); print_rule prints it %f, trailing zeros cut."""
    if value is None:
        return ""
    if not re.fullmatch(r"\d+(\.\d*)?%?", value):
        return None
    p = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    if p > 1:
        return None
    prob = int(p * UINT_MAX + 0.5) or 1
    text = "%f" % (prob * 100.0 / (UINT_MAX + 1.0))
    text = text.rstrip("0").rstrip(".")
    return f" probability {text}%"


def state_words(spec: Spec) -> str:
    """The ( ) of state options; a leading overload takes no comma after
    it, as in print_rule (it does not clear ropts)."""
    opts, timeouts = spec.get("state_opts") or {}, spec.get("timeouts") or {}
    out, first = "", True
    for key in OPT_ORDER:
        value = opts.get(key)
        if value is None or value is False:
            continue
        if key == "overload":
            table, *flush = str(value).split()
            value = " ".join([f"<{table}>"] + flush)
        out += ("" if first else ", ") + (key if value is True else
                                         f"{key} {value}")
        first = first and key == "overload"
    for n in PFTM:
        if n in timeouts:
            out += ("" if first else ", ") + f"{n} {timeouts[n]}"
            first = False
    return out


def state_text(spec: Spec) -> str | None:
    """no state / keep state / modulate / synproxy, probability, ( opts )."""
    opts, timeouts = spec.get("state_opts") or {}, spec.get("timeouts") or {}
    if set(opts) - set(OPT_ORDER) or opts.get("source-track") == "":
        return None
    keep = spec.get("keep_state")
    ropts = bool(timeouts) or any(k in opts for k in OPT_ORDER if not (
        k.startswith("max-src-conn") or k == "overload"))
    if keep == "no":
        text = " no state" if spec["action"] == "pass" else ""
    elif keep in ("modulate", "synproxy"):
        text = f" {keep} state"
    else:
        text = " keep state" if ropts and (keep or spec["action"] == "pass") \
            else ""
    prob = probability_text(spec.get("probability"))
    if prob is None:
        return None
    words = state_words(spec) if keep != "no" else ""
    if words and not ropts:
        return None     # parse.y always sets source-track with these
    return text + prob + (f" ({words})" if words else "")


def scrub_text(scrub: dict[str, Any]) -> str | None:
    """scrub ( no-df random-id min-ttl N reassemble tcp max-mss N )."""
    if set(scrub) - set(SCRUB_ORDER) - {"set-tos"}:
        return None     # fragment reassemble and the like
    words = []
    for key in SCRUB_ORDER:
        value = scrub.get(key)
        if key in ("min-ttl", "max-mss") and value is not None:
            if number(value, 255 if key == "min-ttl" else 0xFFFF) is None:
                return None
            if value:
                words.append(f"{key} {value}")
        elif key == "reassemble" and value is not None:
            if value != "tcp":
                return None
            words.append("reassemble tcp")
        elif value:
            words.append(key)
    return f" scrub ({' '.join(words)})" if words else ""


def divert_text(divert: Any, direction: str | None) -> str | None:
    """divert-to ADDR port N, divert-reply, divert-packet port N."""
    if divert == "reply":
        return " divert-reply"
    port = divert[-1]
    if not isinstance(port, Port) or port.op != "=" or \
            number(port.lo, 0xFFFF) is None or port.lo == 0:
        return None
    if divert[0] == "packet":
        return f" divert-packet port {port.lo}"
    host = divert[1]
    if direction == "out" or host.kind != "addr" or host.neg or \
            "/" in host.value:
        return None
    return f" divert-to {host.value} port {port.lo}"


def pool_port(word: str, port: Port | None, dst_port: Port | None
              ) -> str | None:
    """print_pool's port: nat-to lo[:hi], rdr-to lo[:hi], hi following a
    destination range (parse.y), lo:lo printed once."""
    if port is None:
        return ""
    lo, hi = number(port.lo, 0xFFFF), number(port.hi, 0xFFFF)
    if port.op not in ("=", ":") or lo is None or (port.op == ":"
                                                   and hi is None):
        return None
    if isinstance(port, RangePort) and word != "rdr-to":
        return None
    if isinstance(port, RangePort) and dst_port is not None and \
            dst_port.op == ":" and isinstance(dst_port.lo, int) and \
            isinstance(dst_port.hi, int):
        hi = lo + dst_port.hi - dst_port.lo
    return f" port {lo}" + (f":{hi}" if hi is not None and hi != lo else "")


def pool_text(word: str, pool: Any, dst_port: Port | None = None
              ) -> str | None:
    """print_pool() for one address (or table, or interface) and its port
    and options; parse.y adds round-robin to a table or an interface of
    several addresses."""
    if not pool:
        return ""
    hosts, port, opts = pool
    if len(hosts) != 1:
        return None     # several addresses: pfctl makes a table of them
    h = hosts[0]
    if isinstance(h, str):      # route-to (ifname): its addresses
        h = Host(False, "dynamic", h)
    if h.kind not in ("addr", "dynamic", "table") or h.neg:
        return None
    out = f" {word} " + host_text(h)
    ports = pool_port(word, port, dst_port)
    if ports is None:
        return None
    words = [source_hash_word(str(o)) for o in opts]
    keyed = {w for w in words if SOURCE_HASH_KEY.fullmatch(w)}
    if len(set(words)) != len(words) or "source-hash" in words or \
            set(words) - set(POOL_ORDER) - keyed:
        return None     # a random or hashed key, or an option twice
    if len((set(words) & POOL_TYPES) | keyed) > 1:
        return None
    if "static-port" in words and (word != "nat-to" or port is not None):
        return None
    if not (set(words) & POOL_TYPES or keyed) and (
            h.kind == "table" or (h.kind == "dynamic"
                                  and not h.value.split("/")[0].endswith(":0"))):
        words.append("round-robin")
    rank = {w: i for i, w in enumerate(POOL_ORDER)}
    words.sort(key=lambda w: rank.get(w, rank["source-hash"]))
    return out + ports + "".join(" " + w for w in words)


def source_hash_word(word: str) -> str:
    """A pool option as print_pool prints it: a source-hash key in lower-case hex, and
    one given as a string as parse.y makes it, the MD5 of the string (HTONL'd words
    printed %08x: the digest's bytes in order)."""
    if SOURCE_HASH_KEY.fullmatch(word):
        return word.lower()
    if word.startswith("source-hash ") and len(word) > 12:
        key = word[12:].strip().strip('"')
        return "source-hash 0x" + hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
    return word


def received_text(spec: Spec) -> str | None:
    ifaces = spec.get("received_on") or []
    if len(ifaces) > 1:
        return None
    return "".join(f" {'!' if neg else ''}received-on {name}"
                   for neg, name in ifaces)


def ugid_text(spec: Spec) -> str:
    out = ""
    for key, word in (("uids", "user"), ("gids", "group")):
        ids = spec.get(key)
        for p in [ids] if isinstance(ids, Port) else (ids or [])[:1]:
            out += op_text(word, p)
    return out


def flags_text(spec: Spec) -> str:
    """flags F/S; parse.y: S/SA on stateful pass rules, none on a rule of
    another protocol than tcp; `flags any` on stateful tcp pass/match."""
    protos = spec.get("protos")
    if protos and protos[0] != "tcp":
        return ""
    flags, keep, action = spec.get("flags"), spec.get("keep_state"), \
        spec["action"]
    stateful = not spec.get("fragment") and (
        keep in ("keep", "modulate", "synproxy")
        or (action == "pass" and keep != "no"))
    if flags is None and action == "pass" and stateful:
        flags = "S/SA"
    if flags and flags != "any":
        have, _, mask = flags.partition("/")
        return f" flags {flag_bits(have)}/{flag_bits(mask)}"
    return " flags any" if stateful and action != "block" else ""


def numbers_text(spec: Spec) -> str | None:
    """tos 0xNN, prio N, max-pkt-rate N/S."""
    out = ""
    if spec.get("tos") is not None:
        tos = tos_number(spec["tos"])
        if tos is None:
            return None
        out += f" tos 0x{tos:02x}" if tos else ""
    if spec.get("prio") is not None:
        if number(spec["prio"], 7) is None:
            return None
        out += f" prio {spec['prio']}"
    if spec.get("max_pkt_rate"):
        limit, seconds = str(spec["max_pkt_rate"]).split("/")
        out += f" max-pkt-rate {int(limit)}/{int(seconds)}"
    return out


def words_text(spec: Spec) -> str | None:
    """fragment, scrub ( ), allow-opts, label, once, tag, tagged, rtable."""
    out = " fragment" if spec.get("fragment") else ""
    scrub = scrub_text(spec["scrub"]) if spec.get("scrub") else ""
    if scrub is None:
        return None
    out += scrub + (" allow-opts" if spec.get("allow_opts") else "")
    if spec.get("label"):
        out += f' label "{spec["label"]}"'
    out += " once" if spec.get("once") else ""
    if spec.get("tag"):
        out += f" tag {spec['tag']}"
    tagged = spec.get("tagged")
    if tagged:
        neg, name = ("! ", tagged[2:]) if tagged.startswith("! ") else \
            ("", tagged)
        out += f" {neg}tagged {name}"
    if spec.get("rtable") is not None:
        if number(spec["rtable"]) is None:
            return None
        out += f" rtable {spec['rtable']}"
    return out


def redirect_text(spec: Spec) -> str | None:
    """divert, nat-to, rdr-to (its port may follow the destination's
    range), route-to / reply-to / dup-to."""
    out = divert_text(spec["divert"], spec.get("direction")) \
        if spec.get("divert") else ""
    dst_ports = (spec.get("to") or (None, None))[1] or [None]
    route = spec.get("route")
    if isinstance(route, str):
        return None     # fastroute
    binat = spec.get("binat_to")
    if binat and (binat[1] is not None or binat[2] or spec.get("nat_to")):
        return None
    nat = (binat[0], None, ["static-port"]) if binat else spec.get("nat_to")
    for text in (pool_text("nat-to", nat),
                 pool_text("rdr-to", spec.get("rdr_to"), dst_ports[0]),
                 pool_text(route[0], (route[1], None, route[2]))
                 if route else ""):
        if out is None or text is None:
            return None
        out += text
    return out


# The clauses after the addresses, in print_rule's order.
CLAUSES: tuple[Callable[[Spec], str | None], ...] = (
    received_text, ugid_text, flags_text,
    lambda spec: icmp_text(spec) if spec.get("icmp_types") else "",
    numbers_text, set_text, state_text, words_text, redirect_text)
# The spec keys print_spec prints; a spec with any other is not printed.
PRINTED = {"action", "block_policy", "direction", "log", "quick", "ifaces",
           "on_rdomain", "af", "protos", "from", "to", "all", "received_on",
           "uids", "gids", "flags", "icmp_types", "tos", "prio",
           "max_pkt_rate", "set_prio", "queue", "set_tos", "delay",
           "keep_state", "state_opts", "timeouts", "probability", "fragment",
           "scrub", "allow_opts", "label", "once", "tag", "tagged", "rtable",
           "divert", "nat_to", "rdr_to", "binat_to", "route", "repeated",
           "anchor_name", "block_open"}


def print_spec(spec: Spec) -> str | None:
    """print_rule() for one expanded combination, or None (see above)."""
    given = {k for k, v in spec.items()
             if v is not None and v is not False and v not in ([], {}, "")}
    if given - PRINTED or spec["action"] not in ("pass", "block", "match"):
        return None
    out = spec["action"]
    if out == "block":
        policy = block_text(spec.get("block_policy"), spec.get("af"))
        if policy is None:
            return None
        out += policy
    if spec.get("direction"):
        out += " " + spec["direction"]
    if spec.get("log"):
        log = log_text(spec["log"])
        if log is None:
            return None
        out += log
    if spec.get("quick"):
        out += " quick"
    for neg, name in (spec.get("ifaces") or [])[:1]:
        out += " on " + ("! " if neg else "") + name
    if spec.get("on_rdomain") is not None:
        out += f" on rdomain {spec['on_rdomain']}"
    if spec.get("af"):
        out += " " + spec["af"]
    protos = spec.get("protos")
    if protos:
        out += " proto " + protos[0]
    src, dst = spec.get("from"), spec.get("to")
    if side_is_any(src) and side_is_any(dst):
        out += " all"
    else:
        out += side_text("from", src, spec.get("af")) + \
            side_text("to", dst, spec.get("af"))
    for clause in CLAUSES:
        text = clause(spec)
        if text is None:
            return None
        out += text
    return out
