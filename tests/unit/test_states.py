"""pflowbsd.pf.states against the golden pfctl output, printed states, and bad input.

Also pf/record.py and pf/tokens.py, which it builds states with: every test goes in
through parse_states() (or scan()/parse_record()), so they share one file over 400 lines,
in sections: golden data, printed states, malformed input, the fast path against the strict.
"""

import gzip
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pflowbsd.pf.states import Host, ParseError, cmd_states, parse_record, parse_states, scan
from tests.support import FIXTURES

GOLDEN = FIXTURES / "golden"
SETS = [f"{os_}-{kind}-{v}" for os_ in ("openbsd", "freebsd")
        for kind in ("small", "random") for v in ("v", "vv")]


def load(name):
    text = gzip.open(GOLDEN / f"{name}.txt.gz", "rt").read()
    truth = [json.loads(l) for l in gzip.open(GOLDEN / f"{name}.jsonl.gz", "rt")]
    return text, truth


SKIP = {"n", "case", "flavour", "state_flags", "sync_flags"}
VV_ONLY = {"id", "creatorid", "route", "rtableid", "orig_ifname"}


def comparable(key, want, got, vv):
    """(want, got) reduced to what the text can tell."""
    if key == "tcp" and want:
        def peers(d, drop):
            return {s: {k: v for k, v in d[s].items() if k != drop} for s in ("src", "dst")}
        w = peers(want, "wscale_raw") | {"wscale_printed": want["wscale_printed"]}
        g = peers(got, "wscale") | {"wscale_printed": got["wscale_printed"]}
        if want["wscale_printed"]:      # printed as wscale & 0x0f
            for s in ("src", "dst"):
                w[s]["ws"] = want[s]["wscale_raw"] & 0x0F
                g[s]["ws"] = got[s]["wscale"]
        return w, g
    if key == "flags":
        g = {k: got.get(k, "<missing>") for k in want}
        w = dict(want)
        if "log" in w:                  # the raw log byte is not printed, only != 0
            w["log"], g["log"] = bool(w["log"]), bool(g["log"])
        return w, g
    if key in ("src_state", "dst_state") and got["value"] is None:
        # PROXY:SRC/DST and FreeBSD sctp "?" hide the level
        assert want["name"] in (None, "?") and (
            want["name"] == "?" or got is not None), (want, got)
        return None, None
    if key in VV_ONLY and not vv:
        assert got is None
        return None, None
    return want, got


@pytest.mark.parametrize("name", SETS)
def test_golden(name):
    text, truth = load(name)
    table = parse_states(text)
    assert table.errors == [] and table.lost == 0 and not table.truncated
    assert len(table.states) == len(truth)
    vv = name.endswith("vv")
    for state, want in zip(table.states, truth):
        got = state.to_json()
        for key, value in want.items():
            if key in SKIP:
                continue
            w, g = comparable(key, value, got.get(key, "<missing>"), vv)
            assert g == w, (name, want["n"], key)
        assert state.key == (want["creatorid"], want["id"]) if vv else state.key == (None, None)


@pytest.mark.parametrize("name", [s for s in SETS if s.endswith("vv")])
def test_scan_agrees_with_parse_states(name):
    text, _ = load(name)
    table = parse_states(text)
    sc = scan(text)
    assert sc.errors == [] and not sc.truncated
    assert [r[0] for r in sc.records] == [s.key for s in table.states]
    for rec, state in zip(sc.records, table.states):
        key, head, counters, start, end = rec
        assert head == text[start:text.index("\n", start)]
        p, b = counters.split(", ")
        assert p == "%d:%d pkts" % state.packets and b == "%d:%d bytes" % state.bytes
        assert parse_record(text, start, end, state.line) == state


# ---- a small printer after pf_print_state.c print_state() -------------------

TCP = ("CLOSED", "LISTEN", "SYN_SENT", "SYN_RCVD", "ESTABLISHED", "CLOSE_WAIT",
       "FIN_WAIT_1", "CLOSING", "LAST_ACK", "FIN_WAIT_2", "TIME_WAIT")
UDP = ("NO_TRAFFIC", "SINGLE", "MULTIPLE")


def print_host(h):
    rd = f"({h.rdomain}) " if h.rdomain else ""
    if not h.port:
        return rd + h.addr
    return rd + (f"{h.addr}[{h.port}]" if ":" in h.addr else f"{h.addr}:{h.port}")


def hms(s):
    return "%.2u:%.2u:%.2u" % (s // 3600, s // 60 % 60, s % 60)


def print_state(s):
    """Text of one state as pfctl -ss -vv prints it (OpenBSD 1.69 layout)."""
    out = s["direction"] == "out"
    if out:     # nk = wire key, sk = stack key; addr[1] (source) first
        nk = (s["wire_src"], s["wire_dst"])
        sk = (s["stack_src"], s["stack_dst"])
    else:       # nk = stack key, sk = wire key; addr[1] is the destination
        nk = (s["stack_dst"], s["stack_src"])
        sk = (s["wire_dst"], s["wire_src"])
    line = f"{s['ifname']} {s['proto_name']} {print_host(nk[0])}"
    if sk[0] != nk[0]:
        line += f" ({print_host(sk[0])})"
    if not out and s["gw"]:
        line += " {%s}" % s["gw"]
    line += " -> " if out else " <- "
    line += print_host(nk[1])
    if sk[1] != nk[1]:
        line += f" ({print_host(sk[1])})"
    if out and s["gw"]:
        line += " {%s}" % s["gw"]
    src, dst = s["levels"] if out else s["levels"][::-1]
    names = TCP if s["proto_name"] == "tcp" else UDP
    line += "       %s:%s\n" % (names[src], names[dst])
    if s["proto_name"] == "tcp":
        a, b = s["seq"] if out else s["seq"][::-1]
        line += "   [%d + %d]  [%d + %d]\n" % (a[0], a[1], b[0], b[1])
    line += "   age %s, expires in %s, %d:%d pkts, %d:%d bytes" % (
        hms(s["age"]), hms(s["exp"]), *s["packets"], *s["bytes"])
    if s["anchor"] is not None:
        line += f", anchor {s['anchor']}"
    if s["rule"] is not None:
        line += f", rule {s['rule']}"
    for tok in s["tokens"]:
        line += ", " + tok
    line += "\n   id: %016x creatorid: %08x\n" % (s["id"], s["creatorid"])
    return line


u64 = st.integers(0, 2**64 - 1)
v4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: "%d.%d.%d.%d" % t)
v6 = st.sampled_from(["2001:db8::1", "fe80::21b:21ff:fe3c:4d5e", "::1", "::",
                      "::ffff:192.0.2.33", "2001:db8:0:1:1:1:1:1", "64:ff9b::c000:201"])


@st.composite
def states(draw):
    addr = draw(st.sampled_from([v4, v6]))
    rd = draw(st.sampled_from([0, 0, 3]))
    host = st.builds(Host, addr, st.integers(0, 65535), st.just(rd))
    ws, wd = draw(host), draw(host)
    ss = draw(st.one_of(st.just(ws), host))
    sd = draw(st.one_of(st.just(wd), host))
    proto = draw(st.sampled_from(["tcp", "udp"]))
    names = 11 if proto == "tcp" else 3
    return {
        "ifname": draw(st.sampled_from(["all", "em0", "vlan10.20"])),
        "proto_name": proto, "direction": draw(st.sampled_from(["in", "out"])),
        "wire_src": ws, "wire_dst": wd, "stack_src": ss, "stack_dst": sd,
        "gw": draw(st.sampled_from([None, "192.0.2.254", "fe80::1"])),
        "levels": (draw(st.integers(0, names - 1)), draw(st.integers(0, names - 1))),
        "seq": ((draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))),
                (draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)))),
        "age": draw(st.integers(0, 10**7)), "exp": draw(st.integers(0, 10**6)),
        "packets": (draw(u64), draw(u64)), "bytes": (draw(u64), draw(u64)),
        "anchor": draw(st.one_of(st.none(), st.integers(0, 2**32 - 2))),
        "rule": draw(st.one_of(st.none(), st.integers(0, 2**32 - 2))),
        "tokens": draw(st.lists(st.sampled_from(
            ["sloppy", "pflow", "source-track", "sticky-address", "no-df",
             "set-prio (0x03 0x05)", "log (all)", "limit source-track global",
             "dummynet pipe (1 2)", "rlabel 7", "frobnicate 3"]), unique=True)),
        "id": draw(u64), "creatorid": draw(st.integers(0, 2**32 - 1)),
    }


@settings(max_examples=80, deadline=None)
@given(st.lists(states(), min_size=1, max_size=5))
def test_printed_states_parse_back(specs):
    text = "".join(print_state(s) for s in specs)
    table = parse_states(text)
    assert table.errors == [] and len(table.states) == len(specs)
    for s, got in zip(specs, table.states):
        for k in ("ifname", "proto_name", "direction", "wire_src", "wire_dst",
                  "stack_src", "stack_dst", "rule", "anchor"):
            assert getattr(got, k) == s[k], k
        assert got.nat == (s["wire_src"] != s["stack_src"] or s["wire_dst"] != s["stack_dst"])
        assert (got.src_state, got.dst_state) == s["levels"]
        assert got.age_s == s["age"] and got.expires_in_s == s["exp"]
        assert got.packets == s["packets"] and got.bytes == s["bytes"]
        assert got.id == "%016x" % s["id"] and got.creatorid == "%08x" % s["creatorid"]
        assert got.route_addr == s["gw"]
        assert got.pflow == ("pflow" in s["tokens"])
        assert got.flags["sloppy"] == ("sloppy" in s["tokens"])
        assert got.flags.get("other", []) == (["frobnicate 3"] if "frobnicate 3" in s["tokens"] else [])
        if s["proto_name"] == "tcp":
            for peer, (lo, win) in zip(("src", "dst"), s["seq"]):
                assert got.tcp[peer]["seqlo"] == lo and got.tcp[peer]["window"] == win
    sc = scan(text)
    assert [r[0] for r in sc.records] == [s.key for s in table.states]


# ---- malformed input ---------------------------------------------------------

REC = ("all tcp 10.0.0.5:1234 -> 10.0.0.6:80       ESTABLISHED:ESTABLISHED\n"
       "   [1 + 2]  [3 + 4]\n"
       "   age 00:01:00, expires in 23:59:00, 10:8 pkts, 1200:4800 bytes, rule 0\n"
       "   id: 00000000000000{n:02d} creatorid: 1a2b3c4d\n")


def recs(*ns):
    return "".join(REC.format(n=n) for n in ns)


def test_empty_input():
    t = parse_states("")
    assert (t.states, t.errors, t.lost, t.truncated) == ([], [], 0, False)
    s = scan("")
    assert (s.records, s.errors, s.truncated) == ([], [], False)


def test_garbage_line_between_records():
    text = recs(1) + "hello world\n" + recs(2)
    t = parse_states(text)
    assert [s.id[-2:] for s in t.states] == ["01", "02"]
    assert t.errors == [ParseError(5, "hello world", "not a pfctl state line")]
    assert t.lost == 1 and not t.truncated
    assert scan(text).errors == t.errors
    assert t.states[1].line == 6


def test_binary_bytes():
    raw = recs(1).encode() + b"\xff\xfe\x00garbage\x80\n" + recs(2).encode()
    text = raw.decode("utf-8", "replace")
    t = parse_states(text)
    assert len(t.states) == 2 and len(t.errors) == 1 and t.errors[0].line == 5
    out, err = io.StringIO(), io.StringIO()
    assert cmd_states(raw.decode("utf-8", "surrogateescape"), False, out, err) == 1
    assert err.getvalue().startswith("pflowbsd: line 5: not a pfctl state line: ")
    assert "\\udcff" in err.getvalue() and len(out.getvalue().splitlines()) == 2


def test_missing_continuation_line_reports_record_once():
    lines = recs(1, 2, 3).splitlines(keepends=True)
    del lines[6]        # the age line of the second record
    t = parse_states("".join(lines))
    assert [s.id[-2:] for s in t.states] == ["01", "03"]
    assert t.errors == [ParseError(5, lines[4].rstrip("\n"), "missing age/counters line")]
    assert t.lost == 1 and not t.truncated


def test_malformed_continuation_line():
    text = recs(1, 2).replace("10:8 pkts", "10:x pkts", 1)
    t = parse_states(text)
    assert [s.id[-2:] for s in t.states] == ["02"]
    assert t.errors == [ParseError(3, text.splitlines()[2], "malformed age/counters line")]


def test_truncated_record_without_id_line():
    text = recs(1, 2)
    text = text[:text.rindex("   id:")]
    t = parse_states(text)
    assert len(t.states) == 1 and t.truncated and t.lost == 1
    assert t.errors[0].reason == "truncated record: missing id line"
    s = scan(text)
    assert len(s.records) == 1 and s.truncated
    assert s.errors[0].reason == "truncated record: missing id line"


def test_truncated_mid_line():
    text = recs(1, 2)[:-10]
    t = parse_states(text)
    assert len(t.states) == 1 and t.truncated
    assert t.errors[0].reason.startswith("truncated record")


def test_orphan_continuation_lines_at_start():
    t = parse_states("   age 00:00:01, expires in 00:00:01, 1:1 pkts, 1:1 bytes\n" + recs(1))
    assert len(t.states) == 1
    assert t.errors[0].reason == "continuation line outside a record"


def test_freebsd13_gateway_and_origif():
    text = ("all tcp 10.37.132.100:22 <- 10.37.132.1:49460       ESTABLISHED:ESTABLISHED\n"
            "   [1096929984 + 1878983168] wscale 7  [1640271468 + 256] wscale 6\n"
            "   age 01:32:36, expires in 24:00:00, 755:820 pkts, 52857:205889 bytes, rule 113, source-track\n"
            "   id: 6694fa6200000003 creatorid: a2e0f312 gateway: 0.0.0.0\n"
            "   origif: le0\n")     # pfctl-formats.md §6.1, OPNsense 22.7
    (s,) = parse_states(text).states
    assert s.direction == "in" and s.route is None and s.orig_ifname == "le0"
    assert s.stack_src == Host("10.37.132.1", 49460) and s.packets == (755, 820)
    assert s.flags["source_track"] and s.rule == 113 and s.age_s == 5556
    assert s.tcp["src"]["seqlo"] == 1640271468 and s.tcp["src"]["wscale"] == 6
    s2 = parse_states(text.replace("0.0.0.0", "192.0.2.1")).states[0]
    assert s2.route == {"kind": "gateway", "rt": 1, "addr": "192.0.2.1", "ifname": None}
    assert scan(text).records[0][0] == ("a2e0f312", "6694fa6200000003")


def test_pfsense_gateway_line():
    text = recs(1) + "   gateway: 192.0.2.1\n" + recs(2) + "   gateway: 0.0.0.0\n"
    t = parse_states(text)
    assert t.errors == [] and len(t.states) == 2
    assert t.states[0].route["addr"] == "192.0.2.1" and t.states[1].route is None
    assert len(scan(text).records) == 2


def test_opnsense_rlabel_and_freebsd15_tokens():
    text = recs(1).replace("rule 0", "rule 0, rlabel 3735928559, pflow, limit source-track global,"
                           " NAT/RDR sticky-address, route sticky-address, log (all), set-tos 0xb8")
    (s,) = parse_states(text).states
    f = s.flags
    assert s.pflow and f["rlabel"] == 3735928559 and f["source_track"] and f["source_track_global"]
    assert f["sticky_address"] and f["route_sticky_address"] and f["log_all"] and f["set_tos"] == 0xB8


def test_openbsd6_rt_addr_on_id_line():
    text = recs(1).replace("creatorid: 1a2b3c4d", "creatorid: 1a2b3c4d rt_addr: 192.0.2.254")
    (s,) = parse_states(text).states
    assert s.route_addr == "192.0.2.254"


def test_real_world_ss_lines():
    text = """all udp 172.17.1.255:1947 <- 172.17.1.47:52339       NO_TRAFFIC:SINGLE
all udp 255.255.255.255:1947 <- 172.17.1.65:54326       NO_TRAFFIC:SINGLE
all tcp 10.0.2.15:22 <- 10.0.2.2:38548       ESTABLISHED:ESTABLISHED
all tcp 10.30.50.3:80 (10.0.2.15:80) <- 10.0.2.2:35520       FIN_WAIT_2:FIN_WAIT_2
all udp 10.30.50.1:53 <- 10.30.50.3:59363       SINGLE:MULTIPLE
all icmp 10.0.2.15:25608 (10.30.50.3:3782) -> 144.76.222.201:25608       0:0
"""
    t = parse_states(text)
    assert t.errors == [] and len(t.states) == 6
    s = t.states[0]
    assert (s.src_state, s.dst_state) == (1, 0) and s.age_s is None and s.id is None
    rdr = t.states[3]
    assert rdr.stack_dst == Host("10.30.50.3", 80) and rdr.wire_dst == Host("10.0.2.15", 80)
    icmp = t.states[5]
    assert icmp.direction == "out" and icmp.stack_src == Host("10.30.50.3", 3782) and icmp.nat


def test_old_three_host_format():
    t = parse_states(
        "all tcp 10.0.0.5:50000 -> 203.0.113.1:61234 -> 93.184.216.34:443       ESTABLISHED:ESTABLISHED\n"
        "all tcp 10.0.0.10:8080 <- 203.0.113.1:80 <- 198.51.100.7:40000       ESTABLISHED:ESTABLISHED\n")
    out, inn = t.states
    assert out.stack_src == Host("10.0.0.5", 50000) and out.wire_src == Host("203.0.113.1", 61234)
    assert out.wire_dst == out.stack_dst == Host("93.184.216.34", 443)
    assert inn.stack_dst == Host("10.0.0.10", 8080) and inn.wire_dst == Host("203.0.113.1", 80)
    assert inn.wire_src == Host("198.51.100.7", 40000) and inn.direction == "in"


def test_cmd_states_json_and_summary():
    out, err = io.StringIO(), io.StringIO()
    assert cmd_states(recs(1), True, out, err) == 0 and err.getvalue() == ""
    d = json.loads(out.getvalue())
    assert d["packets"] == [10, 8] and d["wire_src"] == {"addr": "10.0.0.5", "port": 1234}
    out = io.StringIO()
    cmd_states(recs(1), False, out, err)
    assert "10.0.0.5:1234 -> 10.0.0.6:80" in out.getvalue()


def test_parse_record_rejects_non_record():
    with pytest.raises(ValueError):
        parse_record("garbage\n", 0, 8)


# ---- fast path (grammar.FAST_RECORD) against the strict grammar --------------

@pytest.mark.parametrize("name", SETS)
def test_fast_and_strict_paths_build_the_same_states(name):
    """A junk line at the end sends the table through the checked path, and
    every record through the strict grammar as well: all three must agree."""
    from pflowbsd.pf import grammar
    from pflowbsd.pf.record import build_strict
    text, _ = load(name)
    fast = parse_states(text).states
    checked = parse_states(text + "junk\n")
    assert [e.reason for e in checked.errors] == ["not a pfctl state line"]
    assert checked.states == fast
    strict = [build_strict(m, s.line) for m, s in
              zip(grammar.RECORD.finditer(text), fast, strict=True)]
    assert strict == fast
    assert [s.to_json() for s in strict] == [s.to_json() for s in fast]


def test_rdomain_hosts_on_both_sides_and_translated():
    text = ("all tcp (3) 10.0.0.5:1234 ((4) 192.0.2.1:5555) -> (3) 2001:db8::1[80]       "
            "ESTABLISHED:ESTABLISHED\n" + REC.format(n=1).split("\n", 1)[1])
    (s,) = parse_states(text).states
    assert s.wire_src == Host("10.0.0.5", 1234, 3) and s.stack_src == Host("192.0.2.1", 5555, 4)
    assert s.wire_dst == s.stack_dst == Host("2001:db8::1", 80, 3)
    assert s.nat and s.direction == "out" and s.af == "inet" and s.stack_af == "inet"


def test_lazy_tcp_and_flags_are_plain_values_once_read():
    text = recs(1).replace("rule 0", "rule 0, pflow, set-tos 0x10")
    (s,) = parse_states(text).states
    assert s.pflow is True and s.flags["pflow"] and s.flags["set_tos"] == 0x10
    assert s.flags is s.flags and s.tcp is s.tcp
    assert s.tcp["src"] == {"seqlo": 1, "seqhi": 3, "window": 2, "seqdiff": 0, "wscale": None}
    (udp,) = parse_states(text.replace("all tcp", "all udp").replace("   [1 + 2]  [3 + 4]\n", "")
                          .replace("ESTABLISHED:ESTABLISHED", "MULTIPLE:SINGLE")).states
    assert udp.tcp is None and udp.src_state == 2 and udp.dst_state == 1


def test_parse_record_fast_and_strict_agree():
    text = recs(1, 2) + "   gateway: 192.0.2.9\n"     # pfSense line: strict grammar only
    (a, b) = parse_states(text).states
    end1 = text.index("all", 1)
    assert parse_record(text, 0, end1, 1) == a
    assert parse_record(text, end1, len(text), 5) == b
    assert b.route["addr"] == "192.0.2.9" and b.nlines == 5


def test_memo_caches_that_start_over_still_build_every_state(monkeypatch):
    """The hot loop reads the memos' plain caches and learns a missing word;
    with caches of two entries, learning one word evicts the others."""
    from pflowbsd.pf import tokens
    text = "".join(REC.format(n=n).replace("all tcp", f"em{n} tcp")
                   .replace("rule 0", f"rule {n}, pflow" if n % 2 else f"rule {n}")
                   .replace("1a2b3c4d", f"{n:08x}") for n in range(40))
    expected = parse_states(text).states
    monkeypatch.setattr(tokens, "_MEMO_MAX", 2)
    for memo in (tokens.SHARED, tokens.NUMBER, tokens.PFLOW):
        memo.cache.clear()
    states = parse_states(text).states
    assert states == expected and len(states) == 40
    assert [s.ifname for s in states] == [f"em{n}" for n in range(40)]
    assert [s.pflow for s in states] == [n % 2 == 1 for n in range(40)]
    assert len(tokens.SHARED.cache) <= 2
