"""Which states are exported, and `pflowbsd rules` output."""
import io
import json
import shlex
from types import SimpleNamespace

import pytest

from pflowbsd.config import Config, apply_words
from pflowbsd.rules.model import parse_listing
from pflowbsd.rules.select import Selector, SelectTest
from pflowbsd.rules.show import cmd_rules

LISTING = """\
@0 block return all
@1 pass out all flags S/SA keep state (pflow)
@2 pass in on em0 proto tcp from any to any port = 22 flags S/SA label "netflow-ssh"
@3 match out on em0 all keep state (pflow)
@4 anchor "a" all {
@0 pass in on em1 all flags S/SA
}
"""


def state(pflow=False, ifname="all", rule=None, anchor=None, orig=None):
    return SimpleNamespace(pflow=pflow, ifname=ifname, rule=rule,
                           anchor=anchor, orig_ifname=orig)


def from_lines(lines):
    """A Selector from `select` lines, read as the configuration reads them."""
    cfg = apply_words(Config(), [w for line in lines
                                 for w in ["select", *shlex.split(line)]])
    return Selector.from_config(cfg.select)


@pytest.fixture
def rs():
    return parse_listing(LISTING)


def test_default_exports_pflow_states_and_pflow_pass_rules(rs):
    sel = Selector()
    assert sel.decide(state(pflow=True), None) == (True, "state has pflow")
    assert sel.decide(state(rule=1), rs.lookup(None, 1))[0]
    assert not sel.decide(state(rule=2), rs.lookup(None, 2))[0]
    # a match rule's pflow option does not reach the state (parse.y)
    assert not sel.decide(state(rule=3), rs.lookup(None, 3))[0]
    assert sel.decide(state(), None) == (False, "rule unknown, no pflow")


@pytest.mark.parametrize("lines, rule, st, expected", [
    (['label "netflow*"'], (None, 2), {}, True),
    (['label "other*"'], (None, 2), {}, False),
    (["rule 2"], (None, 2), {}, True),
    (['rule "a" 0'], (4, 0), {}, True),
    (['rule "a" 0'], (None, 0), {}, False),
    (["interface em1"], (4, 0), {"ifname": "em1"}, True),
    (["interface em1"], (None, 2), {"orig": "em1"}, True),
    (["interface em1"], (None, 2), {"ifname": "em0"}, False),
    (["all"], (None, 0), {}, True),
    (["label x*", "rule 0"], (None, 0), {}, True),
])
def test_select_lines_or_together(rs, lines, rule, st, expected):
    sel = from_lines(lines)
    ok, why = sel.decide(state(**st), rs.lookup(*rule))
    assert ok is expected and why


def test_bad_select_line():
    with pytest.raises(ValueError):
        from_lines(["rule x y z"])


def test_export_all_is_the_last_test():
    sel = Selector.from_config([SelectTest("label", "x*")], export_all=True)
    assert sel.tests == [("label", "x*"), ("all", None)]
    assert Selector.from_config([]).tests == []


def test_cmd_rules_json():
    out, err = io.StringIO(), io.StringIO()
    assert cmd_rules(LISTING, "saved", True, out, err,
                     selector=from_lines(['label "netflow*"'])) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["anchor"], r["nr"], r["action"], r["export"]) for r in rows] == [
        ("", 0, "block", False), ("", 1, "pass", True), ("", 2, "pass", True),
        ("", 3, "match", False), ("", 4, "anchor", False), ("a", 0, "pass", False)]
    assert rows[1]["pflow"] and rows[1]["why"] == "rule has pflow"
    assert rows[2]["label"] == "netflow-ssh" and rows[0]["label"] is None
    assert all(r["timeouts"] == {} for r in rows)


def test_cmd_rules_pfconf_text_and_syntax_error():
    out, err = io.StringIO(), io.StringIO()
    conf = "set state-defaults pflow\npass out all\npass in all no state\n"
    assert cmd_rules(conf, "pf.conf", False, out, err) == 0
    text = out.getvalue()
    assert "pf.conf" in text and "@0\texport\trule has pflow" in text
    assert "@1\t-\t" in text
    out, err = io.StringIO(), io.StringIO()
    assert cmd_rules("pass all\npass bogus\n", "pf.conf", True, out, err) == 1
    assert err.getvalue().strip() == "pf.conf:2: syntax error"
    assert out.getvalue() == ""


def test_cmd_rules_prints_each_expansion_and_where_numbers_stop():
    out, err = io.StringIO(), io.StringIO()
    conf = ("pass out proto tcp to port { ssh, smtp } label \"netflow-out\"\n"
            "antispoof for em0\npass in all\n")
    assert cmd_rules(conf, "pf.conf", False, out, err,
                     selector=from_lines(['label "netflow*"'])) == 0
    lines = out.getvalue().splitlines()
    assert "numbers derived" in lines[0]
    assert lines[1] == ("@0\texport\tlabel matches netflow*\tpass out proto "
                        "tcp from any to any port = 22 flags S/SA label "
                        '"netflow-out"')
    assert "port = 25" in lines[2]
    assert lines[3].startswith("@? (not derived: numbering stopped at "
                               "pf.conf:2)\t-\t")
    assert "pf.conf:2: rule skipped" in err.getvalue()


def test_cmd_rules_reads_pfconf_against_the_interfaces():
    from pflowbsd.pf.ifaces import parse_ifconfig
    from pflowbsd.rules.ifa import IfTable
    from tests.support import FIXTURES
    table = IfTable(parse_ifconfig(
        (FIXTURES / "ifconfig" / "openbsd.txt").read_text()))
    out, err = io.StringIO(), io.StringIO()
    assert cmd_rules("antispoof for em1\npass in all\n", "pf.conf", True,
                     out, err, interfaces=table) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["nr"], r["rule"]) for r in rows] == [
        (0, "block drop in on ! em1 inet from 10.0.0.0/24 to any"),
        (1, "block drop in on ! em1 inet from 10.0.1.0/24 to any"),
        (2, "block drop in inet from 10.0.0.1 to any"),
        (3, "block drop in inet from 10.0.1.1 to any"),
        (4, "pass in all flags S/SA")]
    assert all(r["derived"] for r in rows) and err.getvalue() == ""


STATES = """\
all tcp 192.0.2.1:22 <- 198.51.100.7:50000       ESTABLISHED:ESTABLISHED
   [1 + 2](+3) wscale 0  [4 + 5](+6) wscale 0
   age 00:00:10, expires in 23:59:50, 5:4 pkts, 500:400 bytes, rule 2
   id: 0000000000000001 creatorid: 00000001
all udp 192.0.2.1:53 <- 198.51.100.7:50001       MULTIPLE:SINGLE
   age 00:00:10, expires in 00:00:50, 1:1 pkts, 60:60 bytes, anchor 4, rule 0
   id: 0000000000000002 creatorid: 00000001
"""


def test_cmd_states_says_whether_each_state_is_exported(rs):
    from pflowbsd.rules.show import cmd_states
    out, err = io.StringIO(), io.StringIO()
    assert cmd_states(STATES, rs, from_lines(['label "netflow*"']), False,
                      out, err) == 0, err.getvalue()
    first, second = out.getvalue().splitlines()
    assert first.endswith("\texport\tlabel matches netflow*")
    assert second.endswith("\t-\tno pflow, not selected")
    out = io.StringIO()
    assert cmd_states(STATES, None, Selector(), True, out, err) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["export"], r["why"]) for r in rows] == [
        (False, "rule unknown, no pflow (no rules)")] * 2
