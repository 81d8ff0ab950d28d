"""Faults and bad input in the core: state lines pf/ cannot read, partial snapshots
(pf.snapshot.partial_reason through Pipeline.poll), the configuration words of issue 11,
and the shell's rate-limited log (shell/ratelog.py: pure but for its clock).

Each table is plain `pfctl -ss -vv` text made by tests.support.pftext; a state whose
record cannot be read must be skipped and counted, never raise, never expire, and
never keep the other states from expiring.
"""

import io
import logging

import pytest

from pflowbsd.config import Config, ConfigError, apply_file, apply_words
from pflowbsd.export import ipfix
from pflowbsd.pf import netdb, snapshot
from pflowbsd.pf.states import cmd_states, parse_states
from pflowbsd.pipeline import PfSide, Pipeline
from pflowbsd.shell.ratelog import RateLog
from pflowbsd.tracker import Tracker
from tests.support.pftext import record, sid

DST = ("127.0.0.1", 9995)


def udp(n: int, head: str = "all udp 10.0.0.{n}:4000 -> 10.9.9.9:53       MULTIPLE:MULTIPLE",
        **kw: str) -> str:
    return record(head.format(n=n), id=sid(n), **kw)


def table(ns) -> str:
    return "".join(udp(n) for n in ns)


def pipe(**words) -> Pipeline:
    cfg = Config(flowdst=[DST], export_all=True, **words)
    return Pipeline(cfg, PfSide(cfg), 0)


def expired(p: Pipeline, text: str, t: float, entries=None) -> int:
    up, _out = p.poll(text, t, entries=entries)
    return up.gone


# ---- pf/: names and numbers a state line may hold -------------------------------------

@pytest.mark.parametrize("name,number", [
    ("igrp", 88), ("ospf", 89), ("pim", 103), ("carp", 112), ("pfsync", 240),
    ("eigrp", 88), ("nvp-ii", 11), ("mobileip", 55), ("ipv6-icmp", 58), ("udplite", 136)])
def test_every_bsd_protocol_name_parses(name, number):
    text = udp(1, f"all {name} 10.0.0.1 -> 224.0.0.5       MULTIPLE:MULTIPLE")
    t = parse_states(text)
    assert not t.errors and t.states[0].proto == number


def test_a_name_outside_the_table_is_looked_up_by_the_shells_resolver():
    text = udp(1, "all frob-proto 10.0.0.1 -> 10.0.0.2       MULTIPLE:MULTIPLE")
    assert "unknown protocol" in parse_states(text).errors[0].reason
    netdb.set_resolver({"frob-proto": 253}.get)
    try:
        from pflowbsd.pf import tokens
        tokens.PROTOCOLS.cache.pop("frob-proto", None)
        st = parse_states(text).states[0]
        assert st.proto == 253 and st.proto_name == "frob-proto"
    finally:
        netdb.set_resolver(None)
        tokens.PROTOCOLS.cache.pop("frob-proto", None)


@pytest.mark.parametrize("head,kw", [
    ("all frobnitz 10.0.0.1 -> 10.0.0.2       MULTIPLE:MULTIPLE", {}),
    ("all 300 10.0.0.1 -> 10.0.0.2       MULTIPLE:MULTIPLE", {}),
    ("all divert 10.0.0.1 -> 10.0.0.2       MULTIPLE:MULTIPLE", {}),
    ("all udp 10.0.0.1:70000 -> 10.0.0.2:53       MULTIPLE:MULTIPLE", {}),
    ("all udp 10.0.0.999:7 -> 10.0.0.2:53       MULTIPLE:MULTIPLE", {}),
    ("all udp 1:2:3:4:5:6:7:8:9[7] -> ::1[53]       MULTIPLE:MULTIPLE", {}),
    ("all udp 10.0.0.1:7 -> 10.0.0.2:53       MULTIPLE:MULTIPLE", {"pkts": "9" * 5000 + ":1"}),
    ("all udp 10.0.0.1:7 -> 10.0.0.2:53       MULTIPLE:MULTIPLE", {"bytes": "9" * 21 + ":1"}),
    ("all udp 10.0.0.1:7 -> 10.0.0.2:53       MULTIPLE:MULTIPLE", {"age": "9" * 40 + ":00:00"}),
])
def test_an_unreadable_state_is_skipped_counted_and_never_expires(head, kw):
    good = table([1, 2])
    bad = record(head, id=sid(9), **kw)
    p = pipe()
    assert expired(p, good + bad, 100) == 0
    up, _ = p.poll(good + bad, 110)
    assert len(up.errors) == 1 and not up.partial
    assert p.tracker.stats["parse_errors"] == 2
    # state 2 ends while the bad line lives on: it still expires; the bad one never does
    assert expired(p, udp(1) + bad, 120) == 1
    assert expired(p, udp(1), 130) == 0
    out, err = io.StringIO(), io.StringIO()
    assert cmd_states(bad, True, out, err) == 1  # `pflowbsd states` says so, without raising
    assert out.getvalue() == "" and err.getvalue().count("\n") == 1


def test_a_state_that_turns_unreadable_is_kept_as_last_seen():
    t = Tracker(select=lambda st: True)
    t.update(table([1, 2]), 100)
    broken = udp(1) + udp(2, "all udp 10.0.0.2:4000 -> 10.9.9.999:53       MULTIPLE:MULTIPLE",
                          pkts="11:9", bytes="1300:4900")
    up = t.update(broken, 110)
    assert up.gone == 0 and not up.partial and len(up.errors) == 1
    up = t.update(udp(1), 120)
    assert up.gone == 1 and len(up.expired) == 1  # with the counters it had when readable


# ---- partial snapshots ------------------------------------------------------------------

def test_empty_output_expires_nothing_unless_pf_counts_zero():
    p = pipe()
    p.poll(table(range(1, 11)), 100, entries=10)
    assert expired(p, "", 110, entries=10) == 0 and p.partial_reason
    assert expired(p, "", 120, entries=0) == 10 and p.partial_reason is None


def test_garbage_expires_nothing():
    p = pipe()
    p.poll(table(range(1, 6)), 100, entries=5)
    assert expired(p, "pfctl: something odd\n\x00\x01garbage\n", 110) == 0
    assert p.partial_reason == "no parseable state"
    assert expired(p, table(range(1, 6)), 120, entries=5) == 0


def test_a_table_cut_at_a_record_boundary_is_judged_against_current_entries():
    p = pipe()
    p.poll(table(range(1, 101)), 100, entries=100)
    assert expired(p, table(range(1, 31)), 110, entries=100) == 0  # cut to 30 %
    assert p.partial_reason == "30 states of 100 current entries"
    # churn between -si and -ss: 10 % fewer is a whole table
    assert expired(p, table(range(1, 91)), 120, entries=100) == 10
    assert snapshot.partial_reason(table(range(1, 51)), 100) is None
    assert snapshot.partial_reason(table(range(1, 50)), 100) is not None


def test_without_a_count_of_the_same_poll_a_table_is_judged_as_before():
    p = pipe()
    p.poll(table(range(1, 101)), 100)
    assert expired(p, table(range(1, 31)), 110) == 70  # old recordings replay as today
    assert expired(p, "", 120) == 30


def test_a_cut_last_record_expires_nothing():
    p = pipe()
    p.poll(table([1, 2, 3]), 100, entries=3)
    assert expired(p, table([1]) + udp(2)[:-20], 110, entries=3) == 0


# ---- SIGHUP: a new flowdst gets the templates at once -------------------------------

def test_a_new_flowdst_gets_ipfix_templates_in_its_first_datagram():
    cfg = Config(flowdst=[DST], pflowproto=10)
    p = Pipeline(cfg, PfSide(cfg), 0)
    p.start(100)
    new = Config(flowdst=[("127.0.0.1", 9996)], pflowproto=10)
    out = p.reconfigure(new, PfSide(new), 105)
    first = out.datagrams[("127.0.0.1", 9996)][0]
    assert ipfix.HEADER.unpack_from(first)[0] == 10
    assert int.from_bytes(first[16:18], "big") == 2  # a template set
    same = p.reconfigure(new, PfSide(new), 106)
    assert same.count() == 0


# ---- configuration words ----------------------------------------------------------

def test_pfctl_timeout_and_record_max():
    cfg = apply_words(Config(), ["pfctl-timeout", "5", "record-max", "500M"])
    assert cfg.pfctl_timeout == 5 and cfg.record_max == 500 << 20
    assert Config().record_max == 1 << 30 and Config().pfctl_timeout is None
    for words in (["record-max", "0"], ["record-max", "1Q"], ["pfctl-timeout", "0"]):
        with pytest.raises(ConfigError):
            apply_words(Config(), words)


@pytest.mark.parametrize("words", [
    ["mtu", "9" * 5000], ["flowdst", "127.0.0.1:\u00b2"], ["interval", "1e-300"],
    ["domain", "\u0663"], ["flowdst", "127.0.0.1:" + "9" * 5000]])
def test_bad_values_are_config_errors(words):
    with pytest.raises(ConfigError):
        apply_words(Config(), words)


def test_a_file_with_a_latin1_comment_is_read():
    cfg = apply_file(Config(), "flowdst 127.0.0.1:9995 # collecteur de Ren\ufffd\n", "f")
    assert cfg.flowdst == [DST]


# ---- the shell's rate-limited log ---------------------------------------------------

def test_each_kind_is_logged_once_a_minute_with_a_count(caplog, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("pflowbsd.shell.ratelog.time.monotonic", lambda: clock[0])
    say = RateLog()
    with caplog.at_level(logging.INFO, logger="pflowbsd"):
        for _ in range(5):
            say("a", logging.WARNING, "fault a")
        say("b", logging.WARNING, "fault b")
        clock[0] += 61
        say("a", logging.WARNING, "fault a")
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["fault a", "fault b", "fault a (4 more since)"]
    assert say.counts == {"a": 6, "b": 1}


# ---- rules: odd whitespace and leading zeros (issue 11's two rules/ faults) ----------

@pytest.mark.parametrize("ch", ["\x1f", "\v", "\f", "\u00a0"])
def test_pfconf_with_odd_whitespace_is_a_syntax_error_not_a_loop(ch):
    from pflowbsd.rules.load import load_ruleset
    from pflowbsd.rules.model import RuleSyntaxError

    with pytest.raises(RuleSyntaxError, match="unexpected"):
        load_ruleset(f"pass in on em0 proto tcp to port 22{ch}\n", "pf.conf")


@pytest.mark.parametrize("rule,word", [("pass in all tos 010", "tos"),
                                       ("pass in all prio 01", "prio"),
                                       ("pass in all max-mss 0100", "max-mss"),
                                       ("pass in inet proto icmp icmp-type 08", "icmp-type")])
def test_a_number_with_leading_zeros_is_decimal(rule, word):
    from pflowbsd.rules.load import load_ruleset
    from pflowbsd.rules.model import parse_listing

    rs = load_ruleset(rule + "\n", "pf.conf")
    assert len(rs.rules) == 1
    assert len(parse_listing(f"@0 {rule}\n").rules) == 1


# ---- collector: what dump holds is bounded; a cut .gz capture is one error ----------

def test_the_decoders_tables_are_bounded():
    import struct

    from pflowbsd.collector import decode

    dec = decode.Decoder()
    for n in range(decode.MAX_KEYS + 500):
        # an IPFIX message with one template set (id 256+n) from a new domain each time
        tmpl = struct.pack("!HHHHHH", 2, 12, 256 + n % 60000, 1, 8, 4)
        msg = struct.pack("!HHIII", 10, 16 + len(tmpl), 0, n, n) + tmpl
        dec.feed(msg, "192.0.2.1")
    assert len(dec.templates) <= decode.MAX_KEYS
    assert len(dec._expected) <= decode.MAX_KEYS


def test_a_cut_gzip_capture_is_one_error(tmp_path):
    import gzip

    from pflowbsd.collector.dump import cmd_dump

    path = tmp_path / "cap.pcap.gz"
    path.write_bytes(gzip.compress(b"\xd4\xc3\xb2\xa1" + b"\0" * 200)[:-12])
    out, err = io.StringIO(), io.StringIO()
    assert cmd_dump("127.0.0.1:0", False, str(path), None, out, err) == 1
    assert "cut or corrupt gzip" in err.getvalue() and err.getvalue().count("\n") == 1
