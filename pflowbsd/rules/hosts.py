"""The pf grammar's terms: words, strings, numbers, `{ }` lists, hosts, ports.

pyparsing elements for what parse.y calls STRING, NUMBER, host, xhost,
dynaddr, port_item and uid_item/gid_item.  Their parse actions turn a term into
a plain value (Host, Port), printed as pfctl prints it (print_addr(): masked
addresses, short masks only), so a pf.conf and a `pfctl -sr` listing of the
same rule give equal values.  The rule grammar (pflowbsd.rules.grammar) is
built from these; a table's `{ }` body is parsed with HOSTS alone.
"""
import ipaddress
from collections.abc import Mapping
from typing import NamedTuple

import pyparsing as pp

from pflowbsd.pf.netdb import SERVICES

# getpwnam()/getgrnam(): the BSD base system's users and groups.
GROUPS = {"wheel": 0, "daemon": 1, "kmem": 2, "sys": 3, "tty": 4,
          "operator": 5, "bin": 7, "staff": 20, "www": 67, "nobody": 32767,
          "nogroup": 32766}
USERS = {"root": 0, "daemon": 1, "operator": 2, "bin": 3, "www": 67,
         "nobody": 32767, "wheel": 0, "kmem": 2, "sys": 3}


class Host(NamedTuple):
    """One address: kind is any/addr/range/table/dynamic/name/no-route/
    urpf-failed/self/route; af is 'inet'/'inet6' when the address says so."""
    neg: bool
    kind: str
    value: str
    af: str | None = None


class ScopedHost(Host):
    """A link-local address: its %scope names the rule's interface."""
    scope: str | None = None


class Port(NamedTuple):
    """A port or uid/gid test: op in = != < <= > >= <> >< : (range)."""
    op: str
    lo: int | str
    hi: int | str | None = None


class Endpoint(NamedTuple):
    host: Host | None
    port: Port | None


ANY = Host(False, "any", "any")


def kw(word: str) -> pp.Keyword:
    return pp.Keyword(word, ident_chars=pp.alphanums + "_-.")


def K(word: str) -> pp.Suppress:
    return pp.Suppress(kw(word))


S = pp.Suppress
# pfctl's allowed_in_string(): what a bare word may hold.
WORD = pp.Regex(r'[^\s(){}<>!=/#,"\']+')
QSTRING = pp.QuotedString('"', esc_char="\\", multiline=True) | \
    pp.QuotedString("'", multiline=True)
STRING = QSTRING | WORD
def pf_number(text: str) -> int:
    """A number as parse.y reads it: 0x hex, else decimal (leading zeros and all)."""
    return int(text, 16) if text[:2] in ("0x", "0X") else int(text, 10)


NUMBER = pp.Regex(r"(?:0x[0-9a-fA-F]{1,16}|[0-9]{1,20})(?![0-9a-fA-F])").set_parse_action(
    lambda t: pf_number(t[0]))  # longer than 64 bits: not a number yylex() takes
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
# A word that is no keyword: a host name, a port or protocol name.
HOSTWORD = WORD.copy().add_condition(lambda t: t[0] not in RESERVED)


def comma_list(item: pp.ParserElement) -> pp.ParserElement:
    """`{ a, b c }`: commas optional, lists nest (pfctl flattens them)."""
    lst = pp.Forward()
    lst <<= S("{") + pp.ZeroOrMore((item | lst) + pp.Opt(S(","))) + S("}")
    return lst


def one_or_list(item: pp.ParserElement) -> pp.ParserElement:
    """One item or a `{ }` list of them, as one group."""
    return pp.Group(comma_list(item) | item)


# --- hosts (parse.y: host, xhost, dynaddr, tables) ---------------------------

def address_af(text: str) -> str | None:
    base = text.split("%")[0]
    try:
        return "inet6" if ipaddress.ip_address(base).version == 6 else "inet"
    except ValueError:
        return None


def short_v4(text: str) -> str | None:
    """inet_net_pton() forms: `10.1` is 10.1.0.0."""
    parts = text.split(".")
    if 1 < len(parts) < 4 and all(p.isdigit() for p in parts):
        return ".".join(parts + ["0"] * (4 - len(parts)))
    return None


def norm_address(text: str, bits: int | None = None) -> str:
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


def _host_word(t: pp.ParseResults) -> Host:
    neg, word = t[0], t[1]
    bits = t[2] if len(t) > 2 else None
    af = address_af(word)
    if bits == 0 and ((word.isascii() and word.isdigit()) or af):
        # 0/0 prints as any, yet host_v4/host_v6 gave it a family
        return Host(neg, "any", "any", af or "inet")
    if af:
        if "%" not in word:
            return Host(neg, "addr", norm_address(word, bits), af)
        host = ScopedHost(neg, "addr", norm_address(word, bits), af)
        host.scope = word.partition("%")[2]
        return host
    v4 = short_v4(word)
    if v4 and bits is not None:
        return Host(neg, "addr", norm_address(v4, bits), "inet")
    if word.isascii() and word.isdigit() and len(word) <= 3 and int(word) < 256:
        # pfctl (host_v4) takes a bare number as an IPv4 network.
        return Host(neg, "addr", norm_address(
            str(ipaddress.ip_address(int(word) << 24)), bits or 8), "inet")
    value = word + (f"/{bits}" if bits is not None else "")
    return Host(neg, "name", value)


def _host_range(t: pp.ParseResults) -> Host:
    a, b = t[1], t[2]
    return Host(t[0], "range", f"{norm_address(a)} - {norm_address(b)}",
                address_af(a))


def _keyword_host(word: str) -> pp.ParserElement:
    """`any`, `self`, ...: a host that is its own value."""
    return (NOT + K(word)).set_parse_action(lambda t: Host(t[0], word, word))


MASK = S("/") + NUMBER
ADDRWORD = pp.Regex(r"[0-9a-fA-F:.]+(%[\w.]+)?").add_condition(
    lambda t: address_af(t[0]) is not None)
HOST = (
    (NOT + S("<") + WORD + S(">")).set_parse_action(
        lambda t: Host(t[0], "table", t[1]))
    | (NOT + S("(") + WORD + S(")") + pp.Opt(MASK)).set_parse_action(
        lambda t: Host(t[0], "dynamic", t[1] + (
            f"/{t[2]}" if len(t) > 2 else "")))
    | _keyword_host("any") | _keyword_host("no-route")
    | _keyword_host("urpf-failed") | _keyword_host("self")
    | (NOT + K("route") + STRING).set_parse_action(
        lambda t: Host(t[0], "route", t[1]))
    | (NOT + ADDRWORD + S("-") + ADDRWORD).set_parse_action(_host_range)
    | (NOT + HOSTWORD + pp.Opt(MASK)).set_parse_action(_host_word)
)
HOSTS = one_or_list(HOST)

# --- ports, uids (parse.y: port_item, uid_item) ------------------------------
UNARY = pp.Regex(r"!=|<=|>=|=|<|>")
BINARY = pp.Regex(r"<>|><")
# `op value`, `value op value` or a bare value (`lo:hi` is one word)
PORT_TERM = UNARY + HOSTWORD | HOSTWORD + BINARY + HOSTWORD | HOSTWORD


def _port_value(word: int | str) -> int | str:
    if isinstance(word, int):
        return word
    try:
        return pf_number(word)
    except ValueError:
        return SERVICES.get(word, word)


def _port_item(t: pp.ParseResults) -> Port:
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


PORT_ITEM = PORT_TERM.copy().set_parse_action(_port_item)
PORTS = one_or_list(PORT_ITEM)


def id_list(names: Mapping[str, int]) -> pp.ParserElement:
    """`user`/`group` items: ports' syntax, names looked up in names."""
    def item(t: pp.ParseResults) -> Port:
        p = _port_item(t)
        lo = names.get(p.lo, p.lo) if isinstance(p.lo, str) else p.lo
        hi = names.get(p.hi, p.hi) if isinstance(p.hi, str) else p.hi
        return Port(p.op, lo, hi)
    return one_or_list(PORT_TERM.copy().set_parse_action(item))


UIDS, GIDS = id_list(USERS), id_list(GROUPS)

