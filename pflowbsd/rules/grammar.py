"""The pf rule grammar, shared by pf.conf statements and `pfctl -sr` lines.

One pyparsing grammar reads a single rule, as written in pf.conf (lists,
service names, optional words) or as printed by pfctl's print_rule()
(`pfctl_parser.c`: one rule per line, lists already expanded).  Productions
carry parse.y's names (`filter_opts`, `state_opt_item`, `redirspec`, ...);
the terms they are made of (hosts, ports, lists) are pflowbsd.rules.hosts.
Each option yields a small (key, value) pair; `parse_rule_text` folds them
into a dict, the *spec*, which the callers turn into Rule objects.  Lists
stay lists here: expanding them is pflowbsd.rules.expand's job, because the
order decides rule numbers.  Packrat is off: it costs more than it saves on
one-line rules.
"""
from collections.abc import Callable
from typing import Any

import pyparsing as pp

from pflowbsd.pf.netdb import PROTO_NAMES, PROTOCOLS, proto_name
from pflowbsd.rules.hosts import (
    GIDS,
    HOST,
    HOSTS,
    HOSTWORD,
    NOT,
    NUMBER,
    PORT_ITEM,
    PORTS,
    QSTRING,
    STRING,
    UIDS,
    WORD,
    K,
    Port,
    S,
    _port_item,
    kw,
    one_or_list,
)

# A parsed rule: option name -> value.  The values are what the parse actions
# make of pyparsing's results (strings, numbers, Hosts, lists and tuples of
# them), different per option, so they are not typed any closer.
Spec = dict[str, Any]

# State timeouts a rule may carry (pf_timeouts[] in pfctl_parser.c).
TIMEOUT_NAMES = (
    "tcp.first", "tcp.opening", "tcp.established", "tcp.closing",
    "tcp.finwait", "tcp.closed", "tcp.tsdiff", "sctp.first", "sctp.opening",
    "sctp.established", "sctp.closing", "sctp.closed", "udp.first",
    "udp.single", "udp.multiple", "icmp.first", "icmp.error", "other.first",
    "other.single", "other.multiple", "frag", "interval", "src.track",
    "adaptive.start", "adaptive.end")


class KV:
    """A (key, value) pair a production contributes to the rule spec."""
    __slots__ = ("key", "value")

    def __init__(self, key: str, value: Any) -> None:
        self.key, self.value = key, value

    def __repr__(self) -> str:
        return f"KV({self.key!r}, {self.value!r})"


def put(key: str, fn: Callable[[pp.ParseResults], Any] = lambda t: t[0]
        ) -> Callable[[str, int, pp.ParseResults], KV]:
    """A parse action making KV(key, fn(tokens))."""
    return lambda s, loc, t: KV(key, fn(t))


# --- rule head: action dir logquick interface af proto fromto --------------
RETURN_CODE = pp.Opt(S("(") + pp.Regex(r"[^)]*") + S(")"))
BLOCKSPEC = (
    (kw("drop") | kw("return-rst") | kw("return-icmp6") | kw("return-icmp")
     | kw("return")) + RETURN_CODE
).set_parse_action(lambda t: KV("block_policy", " ".join(map(str, t))))
ACTION = (
    (kw("pass") | kw("match")).set_parse_action(put("action"))
    | (K("block") + pp.Opt(BLOCKSPEC)).set_parse_action(
        lambda t: [KV("action", "block")] + list(t))
    | (K("anchor") + pp.Opt(QSTRING | HOSTWORD.copy().add_condition(
        lambda t: not t[0].isdigit()))).set_parse_action(
        lambda t: [KV("action", "anchor"),
                   KV("anchor_name", t[0] if t else None)])
    | (pp.Opt(kw("no")) + (kw("nat") | kw("rdr") | kw("binat"))
       + pp.Opt(kw("pass"))).set_parse_action(
        lambda t: [KV("action", t[-2] if t[-1] == "pass" else t[-1]),
                   KV("no", t[0] == "no"), KV("nat_pass", t[-1] == "pass")])
    | kw("scrub").set_parse_action(put("action"))
    | (kw("antispoof")).set_parse_action(put("action"))
)
DIRECTION = (kw("in") | kw("out")).set_parse_action(put("direction"))
LOG = (K("log") + pp.Opt(S("(") + pp.DelimitedList(
    pp.Regex(r"[^,)]+")) + S(")"))).set_parse_action(
        lambda t: KV("log", [s.strip() for s in t] or True))
QUICK = K("quick").set_parse_action(lambda t: KV("quick", True))
IFNAME = (NOT + WORD).set_parse_action(lambda t: (t[0], t[1]))


def ifnames(key: str) -> pp.ParserElement:
    """An interface or a `{ }` list of them, `!` allowed: KV(key, list)."""
    return one_or_list(IFNAME).set_parse_action(lambda t: KV(key, list(t[0])))


ON = (K("on") + (
    (K("rdomain") + NUMBER).set_parse_action(put("on_rdomain"))
    | ifnames("ifaces")))
AF = (kw("inet6") | kw("inet")).set_parse_action(put("af"))


def _proto(word: int | str) -> str:
    """A protocol as pfctl prints it: the first name of its number."""
    if isinstance(word, int):
        return proto_name(word)
    return PROTO_NAMES.get(PROTOCOLS.get(word, -1), word)


PROTO_ITEM = (NUMBER | HOSTWORD).set_parse_action(lambda t: _proto(t[0]))
PROTO = (K("proto") + one_or_list(PROTO_ITEM)
         ).set_parse_action(lambda t: KV("protos", list(t[0])))


def endpoint(word: str) -> pp.ParserElement:
    """`from`/`to` hosts, ports and os: KV(word, (hosts, ports)), and
    KV("os", names) when an os is given (kept apart: only the printer
    reads it)."""
    return (K(word) + pp.Opt(HOSTS, default=None)
            + pp.Opt(K("port") + PORTS, default=None)
            + pp.Opt(K("os") + one_or_list(STRING), default=None)
            ).set_parse_action(lambda t: [KV(word, (
                list(t[0]) if t[0] is not None else None,
                list(t[1]) if t[1] is not None else None))] + (
                [KV("os", list(t[2]))] if t[2] is not None else []))


FROMTO = (K("all").set_parse_action(lambda t: KV("all", True))
          | endpoint("from") + pp.Opt(endpoint("to"))
          | endpoint("to"))

# --- filter_opts --------------------------------------------------------------


def _state_opt(t: pp.ParseResults) -> KV:
    return KV(t[0], t[1] if len(t) > 1 else True)


RATE = pp.Combine(pp.Word(pp.nums) + "/" + pp.Word(pp.nums))   # N/seconds
TIMEOUT_OPT = (pp.one_of(" ".join(TIMEOUT_NAMES)) + NUMBER
               ).set_parse_action(lambda t: KV("timeout", (t[0], t[1])))
STATE_OPT_ITEM = (
    TIMEOUT_OPT
    | (kw("max-src-conn-rate") + RATE).set_parse_action(_state_opt)
    | ((kw("max-src-states") | kw("max-src-conn") | kw("max-src-nodes")
        | kw("max")) + NUMBER).set_parse_action(_state_opt)
    | (kw("source-track") + pp.Opt(kw("rule") | kw("global"))
       ).set_parse_action(lambda t: KV("source-track",
                                       t[1] if len(t) > 1 else ""))
    | (kw("overload") + S("<") + WORD + S(">")
       + pp.Opt(pp.Combine(kw("flush") + pp.Opt(" " + kw("global"))))
       ).set_parse_action(lambda t: KV("overload", " ".join(t[1:])))
    | (kw("no-sync") | kw("if-bound") | kw("floating") | kw("sloppy")
       | kw("pflow")).set_parse_action(_state_opt)
    | (K("limit") + kw("source-track") + pp.Opt(kw("global"))
       ).set_parse_action(lambda t: KV("source-track", " ".join(t[1:])
                                       or "rule"))
)
STATE_OPT_LIST = pp.Group(pp.DelimitedList(STATE_OPT_ITEM))
KEEP = (
    (K("no") + K("state")).set_parse_action(lambda t: KV("keep_state", "no"))
    | ((kw("keep") | kw("modulate") | kw("synproxy")) + K("state")
       + pp.Opt(S("(") + STATE_OPT_LIST + S(")"), default=None)
       ).set_parse_action(lambda t: [KV("keep_state", t[0]),
                                     KV("state_opts", t[1])])
)

POOL_OPT = (
    kw("bitmask") | kw("random") | kw("round-robin") | kw("least-states")
    | pp.Combine(kw("source-hash") + pp.Opt(" " + WORD))
    | kw("sticky-address") | kw("static-port")
)
POOL_OPTS = pp.Group(pp.ZeroOrMore(POOL_OPT))


class RangePort(Port):
    """A redirection's `port lo:*`: equal to Port('=', lo) for every
    reader; print_rule shows a range as long as the destination's."""
    __slots__ = ()


REDIR_PORT = pp.Regex(r"[^\s(){}<>!=/#,\"':]+:\*").set_parse_action(
    lambda t: RangePort(*_port_item(t))) | PORT_ITEM
REDIRSPEC = (HOSTS + pp.Opt(K("port") + REDIR_PORT, default=None)
             + POOL_OPTS)


def _redirspec(t: pp.ParseResults, i: int = 0) -> tuple[list[Any], Any, list[str]]:
    """(hosts, port, pool options) of the REDIRSPEC at t[i:]."""
    return list(t[i]), t[i + 1], list(t[i + 2])


def redir(word: str, key: str) -> pp.ParserElement:
    return (K(word) + REDIRSPEC).set_parse_action(
        lambda t: KV(key, _redirspec(t)))


ROUTEHOST = one_or_list((S("(") + WORD + pp.Opt(HOST) + S(")")) | HOST)


def _route(t: pp.ParseResults) -> list[KV]:
    """KV("route", (word, hosts, pool options)); an `(ifname host)` item
    also names its interface in KV("route_ifnames", names), which the
    host lists of the expansion leave out."""
    items = list(t[1])
    names = [i for i in items if isinstance(i, str)]
    return [KV("route", (t[0], items, list(t[2])))] + (
        [KV("route_ifnames", names)] if names and len(names) < len(items)
        else [])


ROUTE = ((kw("route-to") | kw("reply-to") | kw("dup-to"))
         + ROUTEHOST + POOL_OPTS).set_parse_action(_route)
FASTROUTE = kw("fastroute").set_parse_action(lambda t: KV("route", t[0]))

ICMP_ITEM = pp.Group((NUMBER | HOSTWORD) + pp.Opt(K("code") + (NUMBER
                                                                | HOSTWORD)))
SCRUB_OPT = (
    (kw("min-ttl") | kw("max-mss") | kw("set-tos")) + (NUMBER | WORD)
    | kw("no-df") | kw("random-id")
    | kw("reassemble") + kw("tcp")
    | K("fragment") + (kw("reassemble") | kw("crop") | kw("drop-ovl"))
).set_parse_action(lambda t: KV("scrub:" + str(t[0]),
                                t[1] if len(t) > 1 else True))
QUEUE = (K("queue") + (S("(") + pp.DelimitedList(STRING) + S(")") | STRING)
         ).set_parse_action(lambda t: KV("queue", tuple(t)))
# `set prio`, `set queue`, `set tos`, `set delay`; pfctl prints them as one
# `set ( ... )`.
SET_ITEM = (
    (K("prio") + (S("(") + NUMBER + pp.Opt(S(",")) + NUMBER + S(")")
                  | NUMBER)).set_parse_action(
        lambda t: KV("set_prio", tuple(t)))
    | QUEUE
    | (K("tos") + (NUMBER | WORD)).set_parse_action(put("set_tos"))
    | (K("delay") + NUMBER).set_parse_action(put("delay"))
)
# parse.y `flags`: flag '/' flag | '/' flag | any; a bare `flags S` is an error
FLAGS = pp.Regex(r"[FSRPAUEW]*/[FSRPAUEW]+(?![\w/])|any")
# label, tag, tagged, anchor take a STRING; yylex makes a bare 88 a NUMBER
NAME = QSTRING | WORD.copy().add_condition(lambda t: not t[0].isdigit())

FILTER_OPT = (
    (kw("user") + UIDS).set_parse_action(lambda t: KV("uids", list(t[1])))
    | (kw("group") + GIDS).set_parse_action(lambda t: KV("gids", list(t[1])))
    | (K("flags") + FLAGS).set_parse_action(put("flags"))
    | ((kw("icmp-type") | kw("icmp6-type") | kw("ipv6-icmp-type"))
       + one_or_list(ICMP_ITEM)).set_parse_action(
        lambda t: KV("icmp_types", (t[0], [tuple(i) for i in t[1]])))
    | KEEP
    | (K("label") + NAME).set_parse_action(put("label"))
    | (NOT + K("tagged") + NAME).set_parse_action(
        lambda t: KV("tagged", ("! " if t[0] else "") + t[1]))
    | (K("tag") + NAME).set_parse_action(put("tag"))
    | QUEUE
    | (K("rtable") + NUMBER).set_parse_action(put("rtable"))
    | (K("rdomain") + NUMBER).set_parse_action(put("rdomain"))
    | (K("probability") + pp.Regex(r"[\d.]+%?")).set_parse_action(
        put("probability"))
    | (K("prio") + NUMBER).set_parse_action(put("prio"))
    | (K("set") + (S("(") + pp.DelimitedList(SET_ITEM) + S(")") | SET_ITEM))
    | (K("tos") + (NUMBER | WORD)).set_parse_action(put("tos"))
    | (K("max-pkt-rate") + RATE).set_parse_action(put("max_pkt_rate"))
    | kw("allow-opts").set_parse_action(lambda t: KV("allow_opts", True))
    | (kw("fragment") + ~(kw("reassemble") | kw("crop") | kw("drop-ovl"))
       ).set_parse_action(lambda t: KV("fragment", True))
    | kw("once").set_parse_action(lambda t: KV("once", True))
    | kw("divert-reply").set_parse_action(lambda t: KV("divert", "reply"))
    | (K("divert-to") + HOST + K("port") + PORT_ITEM).set_parse_action(
        lambda t: KV("divert", ("to", t[0], t[1])))
    | (K("divert-packet") + K("port") + PORT_ITEM).set_parse_action(
        lambda t: KV("divert", ("packet", t[0])))
    | (K("received-on") + ifnames("received_on"))
    | (K("scrub") + S("(") + pp.ZeroOrMore(SCRUB_OPT + pp.Opt(S(",")))
       + S(")"))
    | SCRUB_OPT
    | redir("nat-to", "nat_to") | redir("rdr-to", "rdr_to")
    | redir("binat-to", "binat_to")
    | (K("af-to") + AF + K("from") + REDIRSPEC
       + pp.Opt(K("to") + REDIRSPEC)).set_parse_action(
        lambda t: KV("af_to", (t[0].value,) + tuple(
            _redirspec(t, i) for i in range(1, len(t), 3))))
    | (S("->") + REDIRSPEC).set_parse_action(
        lambda t: KV("redirect", _redirspec(t)))
    | ROUTE | FASTROUTE
    | (K("ridentifier") + NUMBER).set_parse_action(put("ridentifier"))
    | ((kw("dnpipe") | kw("dnqueue")) + (
        S("(") + NUMBER + S(",") + NUMBER + S(")") | NUMBER)
       ).set_parse_action(lambda t: KV(t[0], tuple(t[1:])))
    | (K("for") + ifnames("ifaces"))
)

RULE = (ACTION + pp.Opt(DIRECTION)
        + pp.ZeroOrMore(LOG | QUICK)
        + pp.Opt(ON) + pp.Opt(AF) + pp.Opt(PROTO) + pp.Opt(FROMTO)
        + pp.ZeroOrMore(FILTER_OPT)
        + pp.Opt(pp.Literal("{").set_parse_action(
            lambda t: KV("block_open", True)))
        + pp.StringEnd())


def parse_rule_text(text: str) -> Spec:
    """Parse one rule; return its spec dict.  Raises pp.ParseException.

    spec["repeated"] names the options given twice (pflowbsd.rules.check
    rejects those pfctl rejects; the last one is kept, as here)."""
    spec: Spec = {"state_opts": {}, "timeouts": {}}
    repeated = []
    for item in RULE.parse_string(text, parse_all=True):
        if item.key == "state_opts":
            for opt in item.value or ():
                if opt.key == "timeout":
                    if opt.value[0] in spec["timeouts"]:
                        repeated.append("timeout " + opt.value[0])
                    spec["timeouts"][opt.value[0]] = opt.value[1]
                else:
                    if opt.key in spec["state_opts"]:
                        repeated.append("state " + opt.key)
                    spec["state_opts"][opt.key] = opt.value
        elif item.key.startswith("scrub:"):
            if item.key[6:] in spec.setdefault("scrub", {}):
                repeated.append(item.key)
            spec["scrub"][item.key[6:]] = item.value
        elif item.key in ("uids", "gids") and item.key in spec:
            spec[item.key] = item.value + spec[item.key]
        else:
            if item.key in spec:
                repeated.append(item.key)
            spec[item.key] = item.value
    if repeated:
        spec["repeated"] = repeated
    return spec
