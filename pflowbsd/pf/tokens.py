"""The small vocabularies of a pfctl state record, turned into values.

Strategy: every word pfctl prints from a fixed table (state level names, the
`, token`s after the counters, the extras of the id line, `%.2u:%.2u:%.2u`
durations) is looked up, not re-parsed: dispatch dicts for tokens, and
bounded memos (text -> value, kept in a plain dict) for what repeats from
state to state, so the bulk parser pays one dict lookup per field. The
dicts built lazily for a State (flags, tcp, route) are TypedDicts: plain
dicts at run time. Sources as in pf/grammar.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Generic, Literal, TypedDict, TypeVar

from pflowbsd.pf import grammar as g
from pflowbsd.pf import netdb

K = TypeVar("K")
V = TypeVar("V")

# A memo's cache starts over when it reaches this size.
_MEMO_MAX = 1 << 16


class Memo(Generic[K, V]):
    """text -> compute(text), computed on first lookup and kept in .cache: a
    plain dict, which the bulk parser indexes directly (a dict subclass with
    __missing__ costs a slow __getitem__ call per lookup), learning a missing
    key here on KeyError."""
    __slots__ = ("cache", "compute")

    def __init__(self, compute: Callable[[K], V], cache: Mapping[K, V] | None = None) -> None:
        self.cache: dict[K, V] = dict(cache) if cache else {}
        self.compute = compute

    def __getitem__(self, key: K) -> V:
        cache = self.cache
        if key in cache:
            return cache[key]
        v = self.compute(key)
        if len(cache) >= _MEMO_MAX:
            cache.clear()
        cache[key] = v
        return v


# ---- `, token`s after the counters (print_state(), FreeBSD and OpenBSD) ------

class Dummynet(TypedDict):
    pipe: int
    rpipe: int
    is_pipe: bool
    is_queue: bool


class Flags(TypedDict, total=False):
    """State.flags: FREEBSD_FLAGS, updated by the tokens printed."""
    allow_opts: bool
    sloppy: bool
    no_sync: bool
    psync_ack: bool
    no_df: bool
    set_tos: int | None
    random_id: bool
    reassemble_tcp: bool
    set_prio: list[int] | None
    dummynet: Dummynet | None
    source_track: bool
    source_track_global: bool
    sticky_address: bool
    route_sticky_address: bool
    log: int
    log_all: bool
    min_ttl: int
    max_mss: int
    rlabel: int
    pflow: bool
    other: list[str]    # tokens this module does not know, as printed


FREEBSD_FLAGS: Flags = {
    "allow_opts": False, "sloppy": False, "no_sync": False, "psync_ack": False,
    "no_df": False, "set_tos": None, "random_id": False, "reassemble_tcp": False,
    "set_prio": None, "dummynet": None, "source_track": False,
    "sticky_address": False, "log": 0, "log_all": False, "min_ttl": 0,
    "max_mss": 0, "pflow": False,
}

# Tokens without arguments: token -> {flags key: value}.
_OPT_WORDS: dict[str, Flags] = {
    "allow-opts": {"allow_opts": True},
    "sloppy": {"sloppy": True},
    "no-sync": {"no_sync": True},
    "pflow": {"pflow": True},
    "psync-ack": {"psync_ack": True},
    "no-df": {"no_df": True},
    "random-id": {"random_id": True},
    "reassemble-tcp": {"reassemble_tcp": True},
    "source-track": {"source_track": True},
    "sticky-address": {"sticky_address": True},
    # FreeBSD 15 PF_SN_TYPE_NAMES spellings
    "limit source-track": {"source_track": True},
    "limit source-track global": {"source_track": True, "source_track_global": True},
    "NAT/RDR sticky-address": {"sticky_address": True},
    "route sticky-address": {"route_sticky_address": True},
    # PF_LOG = 0x01, PF_LOG_ALL = 0x02; the raw byte is not printed
    "log": {"log": 1},
    "log (all)": {"log": 3, "log_all": True},
}


OptHandler = Callable[[re.Match[str], Flags], None]


def _opt_set_tos(m: re.Match[str], f: Flags) -> None:
    f["set_tos"] = int(m[1], 16)


def _opt_set_prio(m: re.Match[str], f: Flags) -> None:
    f["set_prio"] = [int(m[1], 16), int(m[2], 16)]


def _opt_dummynet(m: re.Match[str], f: Flags) -> None:
    f["dummynet"] = {"pipe": int(m[2]), "rpipe": int(m[3]),
                     "is_pipe": m[1] == "pipe", "is_queue": m[1] == "queue"}


def _opt_int(key: Literal["min_ttl", "max_mss", "rlabel"]) -> OptHandler:
    """The handler of "<word> %d", kept as flags[key]."""
    def handler(m: re.Match[str], f: Flags) -> None:
        f[key] = int(m[2])
    return handler


# Tokens with arguments, by their first word: (grammar regex, handler).
_OPT_ARGS: dict[str, tuple[re.Pattern[str], OptHandler]] = {
    "set-tos": (g.OPT_SET_TOS, _opt_set_tos),
    "set-prio": (g.OPT_SET_PRIO, _opt_set_prio),
    "dummynet": (g.OPT_DUMMYNET, _opt_dummynet),
    "min-ttl": (g.OPT_INT, _opt_int("min_ttl")),
    "max-mss": (g.OPT_INT, _opt_int("max_mss")),
    "rlabel": (g.OPT_INT, _opt_int("rlabel")),
}


def parse_opts(opts: str) -> Flags:
    """The flags dict of the text after `rule N` (", tok, tok" or "");
    unknown tokens go to 'other'."""
    flags = FREEBSD_FLAGS.copy()
    if not opts:
        return flags
    for tok in opts[2:].split(g.OPT_SEP):
        words = _OPT_WORDS.get(tok)
        if words is not None:
            flags.update(words)
            continue
        arg = _OPT_ARGS.get(tok.partition(" ")[0])
        m = arg[0].fullmatch(tok) if arg else None
        if arg and m:
            arg[1](m, flags)
        else:
            flags.setdefault("other", []).append(tok)
    return flags


# Words many states print alike (ifname, creatorid) -> one shared str.
SHARED: Memo[str, str] = Memo(str)
# Numbers many states print alike (rule, anchor) -> int.
NUMBER: Memo[str, int] = Memo(int)

# The text after `rule N` (", tok, tok") -> (whether a token is "pflow", the
# text shared by all states that print it).
PFLOW: Memo[str, tuple[bool, str]] = Memo(
    lambda opts: ("pflow" in opts[2:].split(g.OPT_SEP), opts))


# ---- the id line's extras ---------------------------------------------------

class Route(TypedDict):
    """State.route: the route-to/dup-to/reply-to/gateway a state prints."""
    kind: str
    rt: int     # PF_ROUTETO etc.: gateway 1, route-to 2, dup-to 3, reply-to 4
    addr: str
    ifname: str | None


_ROUTE_RT = {"gateway": 1, "route-to": 2, "dup-to": 3, "reply-to": 4}
ZERO_ADDRS = ("0.0.0.0", "::")


def parse_id_extras(text: str) -> tuple[Route | None, int | None, str | None]:
    """(route, rtableid, rt_addr) from the tail of the -vv id line."""
    route: Route | None = None
    rtableid: int | None = None
    rt_addr: str | None = None
    for m in g.ID_EXTRA.finditer(text):
        if m["kind"]:
            if m["kind"] == "gateway" and m["ifname"] is None and m["addr"] in ZERO_ADDRS:
                continue    # FreeBSD 13 prints " gateway: 0.0.0.0" unconditionally
            route = {"kind": m["kind"], "rt": _ROUTE_RT[m["kind"]],
                     "addr": m["addr"], "ifname": m["ifname"]}
        elif m["rtable"]:
            rtableid = int(m["rtable"])
        elif m["rt_addr"]:
            rt_addr = m["rt_addr"]
    return route, rtableid, rt_addr


# ---- print_seq() ------------------------------------------------------------

class Peer(TypedDict):
    seqlo: int
    seqhi: int
    window: int
    seqdiff: int
    wscale: int | None


class Tcp(TypedDict):
    """State.tcp: the window line, per peer."""
    src: Peer
    dst: Peer
    wscale_printed: bool


def _peer(seq: str, win: str, diff: str | None, ws: str | None) -> Peer:
    seqlo = int(seq)
    window = int(win)
    return {"seqlo": seqlo, "seqhi": (seqlo + window) & 0xFFFFFFFF, "window": window,
            "seqdiff": int(diff) if diff else 0,
            "wscale": int(ws) if ws is not None else None}


def parse_seq(text: str, inbound: bool) -> Tcp:
    """State.tcp from the window line's text (grammar.SEQ_BODY, which the
    record's grammar matched already); the printed order is (nk side, sk
    side), i.e. (dst, src) when inbound."""
    m = g.SEQ_BODY.fullmatch(text)
    assert m is not None
    sseq, swin, sdiff, sws, dseq, dwin, ddiff, dws = m.groups()
    first = _peer(sseq, swin, sdiff, sws)
    second = _peer(dseq, dwin, ddiff, dws)
    if inbound:
        first, second = second, first
    return {"src": first, "dst": second, "wscale_printed": sws is not None}


# ---- state levels (print_state() "%s:%s") -----------------------------------

Levels = tuple[int | None, int | None]


def _levels_table(names: list[tuple[str, int]]) -> dict[str, tuple[int, int]]:
    return {f"{a}:{b}": (i, j) for a, i in names for b, j in names}


_TCP_LEVELS = _levels_table([(n, i) for i, n in enumerate(g.TCP_STATES)])
_OTHER_LEVELS = _levels_table([(n, i) for i, n in enumerate(g.UDP_STATES)])
_SCTP_LEVELS = _levels_table(list(g.SCTP_STATES.items()))
_PROXY: dict[str, Levels] = {"PROXY:SRC": (None, None), "PROXY:DST": (None, None)}


def levels(proto: int, text: str) -> Levels:
    """(left, right) raw levels of the printed pair, None where not recoverable;
    ValueError if the pair is not one pfctl prints."""
    r: Levels | None = (_TCP_LEVELS if proto == 6 else _SCTP_LEVELS if proto == 132
                        else _OTHER_LEVELS).get(text)
    if r is not None:
        return r
    if proto == 132:
        r = _OTHER_LEVELS.get(text)      # OpenBSD: sctp is an "other" protocol
        if r is not None:
            return r
    if proto == 6 and text in _PROXY:
        return _PROXY[text]
    m = g.BAD_STATE.fullmatch(text)
    if m:
        return int(m[1]), int(m[2])
    a, sep, b = text.partition(":")
    lv = [int(x) if x.isdigit() else _named_level(proto, x) for x in (a, b)]
    if not sep or (lv[0] is None and lv[1] is None and "?" not in text):
        raise ValueError(f"unknown state pair {text!r}")
    return lv[0], lv[1]


def _named_level(proto: int, name: str) -> int | None:
    table = g.SCTP_STATES if proto == 132 else {}
    return table.get(name)      # "?" (FreeBSD sctp_state_name default) -> None


# A protocol's state pairs as printed -> (left, right, the text shared by all states
# that print it).
LevelsMemo = Memo[str, tuple[int | None, int | None, str]]


def _protocol(word: str) -> tuple[int, str | None, LevelsMemo]:
    """p_name (or "%u") as printed -> (number, p_name or None, its LevelsMemo)."""
    name: str | None = word
    if word.isdigit():
        num: int | None = int(word) if len(word) <= 3 else None
        name = None
    else:
        num = netdb.proto_number(word)
    if num is None or num > 255:
        raise ValueError(f"unknown protocol {word[:40]!r}")
    number: int = num
    return number, name, Memo(lambda text: (*levels(number, text), text))


PROTOCOLS: Memo[str, tuple[int, str | None, LevelsMemo]] = Memo(_protocol)
