"""The small vocabularies of a pfctl state record, turned into values.

Strategy: every word pfctl prints from a fixed table (state level names, the
`, token`s after the counters, the extras of the id line, `%.2u:%.2u:%.2u`
durations) is looked up, not re-parsed: dispatch dicts for tokens, and
bounded memos (text -> value, kept in a plain dict) for what repeats from
state to state, so the bulk parser pays one dict lookup per field. Sources as in grammar.py.
"""

from pflowbsd.pf import grammar as g
from pflowbsd.pf import netdb

# A memo's cache starts over when it reaches this size.
_MEMO_MAX = 1 << 16


class Memo:
    """text -> compute(text), computed on first lookup and kept in .cache: a
    plain dict, which the bulk parser indexes directly (a dict subclass with
    __missing__ costs a slow __getitem__ call per lookup), learning a missing
    key here on KeyError."""
    __slots__ = ("cache", "compute")

    def __init__(self, compute, cache=()):
        self.cache = dict(cache)
        self.compute = compute

    def __getitem__(self, key):
        cache = self.cache
        if key in cache:
            return cache[key]
        v = self.compute(key)
        if len(cache) >= _MEMO_MAX:
            cache.clear()
        cache[key] = v
        return v


# ---- `, token`s after the counters (print_state(), FreeBSD and OpenBSD) ------

FREEBSD_FLAGS = {
    "allow_opts": False, "sloppy": False, "no_sync": False, "psync_ack": False,
    "no_df": False, "set_tos": None, "random_id": False, "reassemble_tcp": False,
    "set_prio": None, "dummynet": None, "source_track": False,
    "sticky_address": False, "log": 0, "log_all": False, "min_ttl": 0,
    "max_mss": 0, "pflow": False,
}

# Tokens without arguments: token -> {flags key: value}.
_OPT_WORDS = {
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


def _opt_set_tos(m, f):
    f["set_tos"] = int(m[1], 16)


def _opt_set_prio(m, f):
    f["set_prio"] = [int(m[1], 16), int(m[2], 16)]


def _opt_dummynet(m, f):
    f["dummynet"] = {"pipe": int(m[2]), "rpipe": int(m[3]),
                     "is_pipe": m[1] == "pipe", "is_queue": m[1] == "queue"}


def _opt_int(m, f):
    f[m[1].replace("-", "_")] = int(m[2])


# Tokens with arguments, by their first word: (grammar regex, handler).
_OPT_ARGS = {
    "set-tos": (g.OPT_SET_TOS, _opt_set_tos),
    "set-prio": (g.OPT_SET_PRIO, _opt_set_prio),
    "dummynet": (g.OPT_DUMMYNET, _opt_dummynet),
    "min-ttl": (g.OPT_INT, _opt_int),
    "max-mss": (g.OPT_INT, _opt_int),
    "rlabel": (g.OPT_INT, _opt_int),
}


def parse_opts(opts):
    """The flags dict of the text after `rule N` (", tok, tok" or "");
    unknown tokens go to 'other'."""
    flags = dict(FREEBSD_FLAGS)
    if not opts:
        return flags
    for tok in opts[2:].split(g.OPT_SEP):
        words = _OPT_WORDS.get(tok)
        if words is not None:
            flags.update(words)
            continue
        rx, handler = _OPT_ARGS.get(tok.partition(" ")[0], (None, None))
        m = rx and rx.fullmatch(tok)
        if m:
            handler(m, flags)
        else:
            flags.setdefault("other", []).append(tok)
    return flags


# Words many states print alike (ifname, creatorid) -> one shared str.
SHARED = Memo(str)
# Numbers many states print alike (rule, anchor) -> int.
NUMBER = Memo(int)

# The text after `rule N` (", tok, tok") -> (whether a token is "pflow", the
# text shared by all states that print it).
PFLOW = Memo(lambda opts: ("pflow" in opts[2:].split(g.OPT_SEP), opts))


# ---- the id line's extras ---------------------------------------------------

_ROUTE_RT = {"gateway": 1, "route-to": 2, "dup-to": 3, "reply-to": 4}
ZERO_ADDRS = ("0.0.0.0", "::")


def parse_id_extras(text):
    """(route, rtableid, rt_addr) from the tail of the -vv id line."""
    route = rtableid = rt_addr = None
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

def _peer(seq, win, diff, ws):
    seqlo = int(seq)
    window = int(win)
    return {"seqlo": seqlo, "seqhi": (seqlo + window) & 0xFFFFFFFF, "window": window,
            "seqdiff": int(diff) if diff else 0,
            "wscale": int(ws) if ws is not None else None}


def parse_seq(text, inbound):
    """State.tcp from the window line's text (grammar.SEQ_BODY); the printed
    order is (nk side, sk side), i.e. (dst, src) when inbound."""
    sseq, swin, sdiff, sws, dseq, dwin, ddiff, dws = g.SEQ_BODY.fullmatch(text).groups()
    first = _peer(sseq, swin, sdiff, sws)
    second = _peer(dseq, dwin, ddiff, dws)
    if inbound:
        first, second = second, first
    return {"src": first, "dst": second, "wscale_printed": sws is not None}


# ---- state levels (print_state() "%s:%s") -----------------------------------

def _levels_table(names):
    return {f"{a}:{b}": (i, j) for a, i in names for b, j in names}


_TCP_LEVELS = _levels_table([(n, i) for i, n in enumerate(g.TCP_STATES)])
_OTHER_LEVELS = _levels_table([(n, i) for i, n in enumerate(g.UDP_STATES)])
_SCTP_LEVELS = _levels_table(list(g.SCTP_STATES.items()))
_PROXY = {"PROXY:SRC": (None, None), "PROXY:DST": (None, None)}


def levels(proto, text):
    """(left, right) raw levels of the printed pair, None where not recoverable;
    ValueError if the pair is not one pfctl prints."""
    r = (_TCP_LEVELS if proto == 6 else _SCTP_LEVELS if proto == 132
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


def _named_level(proto, name):
    table = g.SCTP_STATES if proto == 132 else {}
    return table.get(name)      # "?" (FreeBSD sctp_state_name default) -> None


def _protocol(word):
    """p_name (or "%u") as printed -> (number, p_name or None, levels memo:
    state text -> (left, right, the text shared by all states that print it))."""
    num = netdb.PROTOCOLS.get(word)
    if num is None:
        num, word = (int(word), None) if word.isdigit() else (-1, word)
    return num, word, Memo(lambda text: (*levels(num, text), text))


PROTOCOLS = Memo(_protocol)
