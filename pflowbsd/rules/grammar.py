"""The pf rule grammar, shared by pf.conf statements and `pfctl -sr` lines.

One pyparsing grammar reads a single rule, as written in pf.conf (lists,
service names, optional words) or as printed by pfctl's print_rule()
(`pfctl_parser.c`: one rule per line, lists already expanded).  Productions
carry parse.y's names (`filter_opts`, `state_opt_item`, `redirspec`, ...).
Each option yields a small (key, value) pair; `parse_rule_text` folds them
into a dict, the *spec*, which the callers turn into Rule objects.  Lists
stay lists here: expanding them is pfconf's job, because the order decides
rule numbers.
"""
import ipaddress
from typing import NamedTuple

import pyparsing as pp

from pflowbsd.pf.netdb import PROTO_NAMES, PROTOCOLS, SERVICES

# packrat off: it costs more than it saves on one-line rules

GROUPS = {"wheel": 0, "daemon": 1, "kmem": 2, "sys": 3, "tty": 4,
          "operator": 5, "bin": 7, "staff": 20, "www": 67, "nobody": 32767,
          "nogroup": 32766}
USERS = {"root": 0, "daemon": 1, "operator": 2, "bin": 3, "www": 67,
         "nobody": 32767, "wheel": 0, "kmem": 2, "sys": 3}

# State timeouts a rule may carry (pf_timeouts[] in pfctl_parser.c).
TIMEOUT_NAMES = (
    "tcp.first", "tcp.opening", "tcp.established", "tcp.closing",
    "tcp.finwait", "tcp.closed", "tcp.tsdiff", "sctp.first", "sctp.opening",
    "sctp.established", "sctp.closing", "sctp.closed", "udp.first",
    "udp.single", "udp.multiple", "icmp.first", "icmp.error", "other.first",
    "other.single", "other.multiple", "frag", "interval", "src.track",
    "adaptive.start", "adaptive.end")


class Host(NamedTuple):
    """One address: kind is any/addr/range/table/dynamic/name/no-route/
    urpf-failed/self/route; af is 'inet'/'inet6' when the address says so."""
    neg: bool
    kind: str
    value: str
    af: str | None = None


class ScopedHost(Host):
    """A link-local address: its %scope names the rule's interface."""
    scope = None


class Port(NamedTuple):
    """A port or uid/gid test: op in = != < <= > >= <> >< : (range)."""
    op: str
    lo: int | str
    hi: int | str | None = None


class Endpoint(NamedTuple):
    host: Host | None
    port: Port | None


ANY = Host(False, "any", "any")


class KV:
    """A (key, value) pair a production contributes to the rule spec."""
    __slots__ = ("key", "value")

    def __init__(self, key, value):
        self.key, self.value = key, value

    def __repr__(self):
        return f"KV({self.key!r}, {self.value!r})"


def kw(word):
    return pp.Keyword(word, ident_chars=pp.alphanums + "_-.")


def K(word):
    return pp.Suppress(kw(word))


def put(key, fn=lambda t: t[0]):
    return lambda s, l, t: KV(key, fn(t))


S = pp.Suppress
# pfctl's allowed_in_string(): what a bare word may hold.
WORD = pp.Regex(r'[^\s(){}<>!=/#,"\']+')
QSTRING = pp.QuotedString('"', esc_char="\\", multiline=True) | \
    pp.QuotedString("'", multiline=True)
STRING = QSTRING | WORD
NUMBER = pp.Regex(r"0x[0-9a-fA-F]+|\d+").set_parse_action(
    lambda t: int(t[0], 0))
NOT = pp.Opt(pp.Literal("!")).set_parse_action(lambda t: bool(t))

RESERVED = {
    "all", "any", "from", "to", "port", "os", "on", "proto", "inet", "inet6",
    "flags", "keep", "modulate", "synproxy", "no", "label", "tag", "tagged",
    "user", "group", "icmp-type", "icmp6-type", "queue", "rtable",
    "probability", "allow-opts", "fragment", "once", "in", "out", "quick",
    "log", "nat-to", "rdr-to", "binat-to", "af-to", "route-to", "reply-to",
    "dup-to", "divert-to", "divert-reply", "divert-packet", "set", "prio",
    "tos", "max-pkt-rate", "received-on", "scrub", "min-ttl", "max-mss",
    "no-df", "random-id", "reassemble", "static-port", "sticky-address",
    "round-robin", "random", "source-hash", "bitmask", "least-states",
    "rdomain", "self", "no-route", "urpf-failed", "route", "ridentifier",
    "dnpipe", "dnqueue", "max-src-conn", "crop", "drop-ovl", "state",
}


def comma_list(item):
    """`{ a, b c }`: commas optional, lists nest (pfctl flattens them)."""
    lst = pp.Forward()
    lst <<= S("{") + pp.ZeroOrMore((item | lst) + pp.Opt(S(","))) + S("}")
    return lst


def one_or_list(item):
    return pp.Group(comma_list(item) | item)


# --- hosts (parse.y: host, xhost, dynaddr, tables) ---------------------------

def address_af(text):
    base = text.split("%")[0]
    try:
        return "inet6" if ipaddress.ip_address(base).version == 6 else "inet"
    except ValueError:
        return None


def short_v4(text):
    """inet_net_pton() forms: `10.1` is 10.1.0.0."""
    parts = text.split(".")
    if 1 < len(parts) < 4 and all(p.isdigit() for p in parts):
        return ".".join(parts + ["0"] * (4 - len(parts)))
    return None


def norm_address(text, bits=None):
    """Print an address and mask as print_addr() does: masked, the mask
    only if short, no scope (pfctl keeps it apart as the ifindex)."""
    ip = ipaddress.ip_address(text.partition("%")[0])
    full = 32 if ip.version == 4 else 128
    if bits is not None and bits > 128:
        # host() itself gives up: pfctl rejects the rule whatever follows
        raise pp.ParseFatalException(text, 0,
                                     "could not parse host specification")
    if bits is not None and bits > full:
        raise pp.ParseFatalException(
            text, 0, f"netmask {bits} invalid for IPv4 address")
    if bits is None or bits == full:
        return str(ip)
    net = ipaddress.ip_network(f"{ip}/{bits}", strict=False)
    return f"{net.network_address}/{bits}"


def _host_word(t):
    neg, word = t[0], t[1]
    bits = t[2] if len(t) > 2 else None
    af = address_af(word)
    if bits == 0 and (word.isdigit() or af):
        return Host(neg, "any", "any")
    if af:
        if "%" not in word:
            return Host(neg, "addr", norm_address(word, bits), af)
        host = ScopedHost(neg, "addr", norm_address(word, bits), af)
        host.scope = word.partition("%")[2]
        return host
    if short_v4(word) and bits is not None:
        return Host(neg, "addr", norm_address(short_v4(word), bits), "inet")
    if word.isdigit():
        # pfctl (host_v4) takes a bare number as an IPv4 network.
        return Host(neg, "addr", norm_address(
            str(ipaddress.ip_address(int(word) << 24)), bits or 8), "inet")
    value = word + (f"/{bits}" if bits is not None else "")
    return Host(neg, "name", value)


def _host_range(t):
    a, b = t[1], t[2]
    return Host(t[0], "range", f"{norm_address(a)} - {norm_address(b)}",
                address_af(a))


MASK = S("/") + NUMBER
HOSTWORD = WORD.copy().add_condition(lambda t: t[0] not in RESERVED)
ADDRWORD = pp.Regex(r"[0-9a-fA-F:.]+(%[\w.]+)?").add_condition(
    lambda t: address_af(t[0]) is not None)
HOST = (
    (NOT + S("<") + WORD + S(">")).set_parse_action(
        lambda t: Host(t[0], "table", t[1]))
    | (NOT + S("(") + WORD + S(")") + pp.Opt(MASK)).set_parse_action(
        lambda t: Host(t[0], "dynamic", t[1] + (
            f"/{t[2]}" if len(t) > 2 else "")))
    | (NOT + K("any")).set_parse_action(lambda t: Host(t[0], "any", "any"))
    | (NOT + K("no-route")).set_parse_action(
        lambda t: Host(t[0], "no-route", "no-route"))
    | (NOT + K("urpf-failed")).set_parse_action(
        lambda t: Host(t[0], "urpf-failed", "urpf-failed"))
    | (NOT + K("self")).set_parse_action(lambda t: Host(t[0], "self", "self"))
    | (NOT + K("route") + STRING).set_parse_action(
        lambda t: Host(t[0], "route", t[1]))
    | (NOT + ADDRWORD + S("-") + ADDRWORD).set_parse_action(_host_range)
    | (NOT + HOSTWORD + pp.Opt(MASK)).set_parse_action(_host_word)
)
HOSTS = pp.Group(comma_list(HOST) | HOST)

# --- ports, uids (parse.y: port_item, uid_item) ------------------------------
UNARY = pp.Regex(r"!=|<=|>=|=|<|>")
BINARY = pp.Regex(r"<>|><")


def _port_value(word):
    if isinstance(word, int):
        return word
    try:
        return int(word, 0)
    except ValueError:
        return SERVICES.get(word, word)


def _port_item(t):
    if len(t) == 3 and t[1] in ("<>", "><"):
        return Port(t[1], _port_value(t[0]), _port_value(t[2]))
    if len(t) == 2:
        return Port(t[0], _port_value(t[1]))
    word = str(t[0])
    if ":" in word:
        lo, hi = word.split(":", 1)
        if hi == "*":
            return Port("=", _port_value(lo))
        return Port(":", _port_value(lo), _port_value(hi))
    return Port("=", _port_value(t[0]))


PORTWORD = HOSTWORD
PORT_ITEM = (UNARY + PORTWORD | PORTWORD + BINARY + PORTWORD | PORTWORD
             ).set_parse_action(_port_item)
PORTS = pp.Group(comma_list(PORT_ITEM) | PORT_ITEM)


def id_list(names):
    def item(t):
        p = _port_item(t)
        lo = names.get(p.lo, p.lo) if isinstance(p.lo, str) else p.lo
        hi = names.get(p.hi, p.hi) if isinstance(p.hi, str) else p.hi
        return Port(p.op, lo, hi)
    one = (UNARY + PORTWORD | PORTWORD + BINARY + PORTWORD | PORTWORD
           ).set_parse_action(item)
    return pp.Group(comma_list(one) | one)


UIDS, GIDS = id_list(USERS), id_list(GROUPS)

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
ON = (K("on") + (
    (K("rdomain") + NUMBER).set_parse_action(put("on_rdomain"))
    | pp.Group(comma_list(IFNAME) | IFNAME).set_parse_action(
        lambda t: KV("ifaces", list(t[0])))))
AF = (kw("inet6") | kw("inet")).set_parse_action(put("af"))


def _proto(word):
    if isinstance(word, int):
        return PROTO_NAMES.get(word, str(word))
    return PROTO_NAMES.get(PROTOCOLS.get(word, -1), word)


PROTO_ITEM = (NUMBER | HOSTWORD).set_parse_action(lambda t: _proto(t[0]))
PROTO = (K("proto") + pp.Group(comma_list(PROTO_ITEM) | PROTO_ITEM)
         ).set_parse_action(lambda t: KV("protos", list(t[0])))


def endpoint(word):
    return (K(word) + pp.Opt(HOSTS, default=None)
            + pp.Opt(K("port") + PORTS, default=None)
            + pp.Opt(K("os") + one_or_list(STRING), default=None)
            ).set_parse_action(lambda t: KV(word, (
                list(t[0]) if t[0] is not None else None,
                list(t[1]) if t[1] is not None else None)))


FROMTO = (K("all").set_parse_action(lambda t: KV("all", True))
          | endpoint("from") + pp.Opt(endpoint("to"))
          | endpoint("to"))

# --- filter_opts --------------------------------------------------------------


def _state_opt(t):
    return KV(t[0], t[1] if len(t) > 1 else True)


TIMEOUT_OPT = (pp.one_of(" ".join(TIMEOUT_NAMES)) + NUMBER
               ).set_parse_action(lambda t: KV("timeout", (t[0], t[1])))
STATE_OPT_ITEM = (
    TIMEOUT_OPT
    | (kw("max-src-conn-rate") + pp.Combine(
        pp.Word(pp.nums) + "/" + pp.Word(pp.nums))).set_parse_action(
            _state_opt)
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
REDIR_HOST = pp.Group(comma_list(HOST) | HOST)
REDIRSPEC = (REDIR_HOST + pp.Opt(K("port") + PORT_ITEM, default=None)
             + pp.Group(pp.ZeroOrMore(POOL_OPT)))


def redir(word, key):
    return (K(word) + REDIRSPEC).set_parse_action(
        lambda t: KV(key, (list(t[0]), t[1], list(t[2]))))


ROUTEHOST = pp.Group(comma_list(
    (S("(") + WORD + pp.Opt(HOST) + S(")")) | HOST)
    | (S("(") + WORD + pp.Opt(HOST) + S(")")) | HOST)
ROUTE = ((kw("route-to") | kw("reply-to") | kw("dup-to"))
         + ROUTEHOST + pp.Group(pp.ZeroOrMore(POOL_OPT))).set_parse_action(
    lambda t: KV("route", (t[0], list(t[1]), list(t[2]))))
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
# pfctl prints `set prio`, `set tos`, `set queue` as one `set ( ... )`.
SET_ITEM = (
    (K("prio") + (S("(") + NUMBER + pp.Opt(S(",")) + NUMBER + S(")")
                  | NUMBER)).set_parse_action(
        lambda t: KV("set_prio", tuple(t)))
    | (K("queue") + (S("(") + pp.DelimitedList(STRING) + S(")") | STRING)
       ).set_parse_action(lambda t: KV("queue", tuple(t)))
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
       + pp.Group(comma_list(ICMP_ITEM) | ICMP_ITEM)).set_parse_action(
        lambda t: KV("icmp_types", (t[0], [tuple(i) for i in t[1]])))
    | KEEP
    | (K("label") + NAME).set_parse_action(put("label"))
    | (NOT + K("tagged") + NAME).set_parse_action(
        lambda t: KV("tagged", ("! " if t[0] else "") + t[1]))
    | (K("tag") + NAME).set_parse_action(put("tag"))
    | (K("queue") + (S("(") + pp.DelimitedList(STRING) + S(")") | STRING)
       ).set_parse_action(lambda t: KV("queue", tuple(t)))
    | (K("rtable") + NUMBER).set_parse_action(put("rtable"))
    | (K("rdomain") + NUMBER).set_parse_action(put("rdomain"))
    | (K("probability") + pp.Regex(r"[\d.]+%?")).set_parse_action(
        put("probability"))
    | (K("prio") + NUMBER).set_parse_action(put("prio"))
    | (K("set") + K("prio") + (S("(") + NUMBER + pp.Opt(S(",")) + NUMBER
                               + S(")")
                               | NUMBER)).set_parse_action(
        lambda t: KV("set_prio", tuple(t)))
    | (K("set") + K("queue") + (S("(") + pp.DelimitedList(STRING) + S(")")
                                | STRING)).set_parse_action(
        lambda t: KV("queue", tuple(t)))
    | (K("set") + S("(") + pp.DelimitedList(SET_ITEM) + S(")"))
    | (K("set") + K("tos") + (NUMBER | WORD)).set_parse_action(
        put("set_tos"))
    | (K("set") + K("delay") + NUMBER).set_parse_action(put("delay"))
    | (K("tos") + (NUMBER | WORD)).set_parse_action(put("tos"))
    | (K("max-pkt-rate") + pp.Combine(pp.Word(pp.nums) + "/"
                                      + pp.Word(pp.nums))
       ).set_parse_action(put("max_pkt_rate"))
    | kw("allow-opts").set_parse_action(lambda t: KV("allow_opts", True))
    | (kw("fragment") + ~(kw("reassemble") | kw("crop") | kw("drop-ovl"))
       ).set_parse_action(lambda t: KV("fragment", True))
    | kw("once").set_parse_action(lambda t: KV("once", True))
    | kw("divert-reply").set_parse_action(lambda t: KV("divert", "reply"))
    | (K("divert-to") + HOST + K("port") + PORT_ITEM).set_parse_action(
        lambda t: KV("divert", ("to", t[0], t[1])))
    | (K("divert-packet") + K("port") + PORT_ITEM).set_parse_action(
        lambda t: KV("divert", ("packet", t[0])))
    | (K("received-on") + pp.Group(comma_list(IFNAME) | IFNAME)
       ).set_parse_action(lambda t: KV("received_on", list(t[0])))
    | (K("scrub") + S("(") + pp.ZeroOrMore(SCRUB_OPT + pp.Opt(S(",")))
       + S(")"))
    | SCRUB_OPT
    | redir("nat-to", "nat_to") | redir("rdr-to", "rdr_to")
    | redir("binat-to", "binat_to")
    | (K("af-to") + AF + K("from") + REDIRSPEC
       + pp.Opt(K("to") + REDIRSPEC)).set_parse_action(
        lambda t: KV("af_to", (t[0].value,) + tuple(
            (list(t[i]), t[i + 1], list(t[i + 2]))
            for i in range(1, len(t), 3))))
    | (S("->") + REDIRSPEC).set_parse_action(
        lambda t: KV("redirect", (list(t[0]), t[1], list(t[2]))))
    | ROUTE | FASTROUTE
    | (K("ridentifier") + NUMBER).set_parse_action(put("ridentifier"))
    | ((kw("dnpipe") | kw("dnqueue")) + (
        S("(") + NUMBER + S(",") + NUMBER + S(")") | NUMBER)
       ).set_parse_action(lambda t: KV(t[0], tuple(t[1:])))
    | (K("for") + pp.Group(comma_list(IFNAME) | IFNAME)).set_parse_action(
        lambda t: KV("ifaces", list(t[0])))
)

RULE = (ACTION + pp.Opt(DIRECTION)
        + pp.ZeroOrMore(LOG | QUICK)
        + pp.Opt(ON) + pp.Opt(AF) + pp.Opt(PROTO) + pp.Opt(FROMTO)
        + pp.ZeroOrMore(FILTER_OPT)
        + pp.Opt(pp.Literal("{").set_parse_action(
            lambda t: KV("block_open", True)))
        + pp.StringEnd())


def parse_rule_text(text):
    """Parse one rule; return its spec dict.  Raises pp.ParseException.

    spec["repeated"] names the options given twice (pflowbsd.rulecheck
    rejects those pfctl rejects; the last one is kept, as here)."""
    spec = {"state_opts": {}, "timeouts": {}}
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
