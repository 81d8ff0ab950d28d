"""pf.conf front end: macros, lists in pfctl's order, includes, anchors,
options, state-defaults, per-rule timeouts, errors with file:line."""
import pytest

from pflowbsd.rules.load import load_ruleset
from pflowbsd.rules.model import RuleSyntaxError
from pflowbsd.rules.pfconf import parse_pfconf

CONF = """\
ext_if = "em0"
int_if = "{ em1, em2 }"
web = "{ 192.0.2.10, 2001:db8::10 }"
set timeout { tcp.established 3600, udp.single 20 }
set limit states 20000
set optimization aggressive
set state-defaults pflow, no-sync
table <bad> persist
block all
pass out on $ext_if inet proto { tcp udp } to port { 53 80 }
pass in on $int_if proto tcp to $web port 443 keep state \\
    (max 500, tcp.established 600, adaptive.start 300, adaptive.end 600)
pass in on $ext_if no state label "no-state"   # a comment \\
  continued
match out on $ext_if nat-to ($ext_if)
anchor "web" {
    pass in proto tcp to port 8080 label "netflow-web"
    anchor {
        block in quick from <bad>
    }
}
pass out quick label "after-$nr"
"""


def test_expansion_order_and_numbers():
    rs = parse_pfconf(CONF, "pf.conf")
    main = [r for r in rs.rules if r.anchor == ""]
    assert [r.nr for r in main] == list(range(len(main)))
    assert rs.source == "pf.conf" and rs.warnings == []
    # interface, proto, src host, dst host, src port, dst port: pfctl's order
    out = [(r.proto, r.dst.port.lo) for r in main[1:5]]
    assert out == [(("tcp",), 53), (("tcp",), 80), (("udp",), 53),
                   (("udp",), 80)]
    web = main[5:9]
    assert [(r.ifname, r.dst.host.value, r.af) for r in web] == [
        ("em1", "192.0.2.10", "inet"), ("em1", "2001:db8::10", "inet6"),
        ("em2", "192.0.2.10", "inet"), ("em2", "2001:db8::10", "inet6")]
    assert main[-1].label == f"after-{main[-1].nr}"


def test_options_and_timeouts():
    rs = parse_pfconf(CONF, "pf.conf")
    assert rs.timeouts == {"tcp.established": 3600, "udp.single": 20}
    assert rs.state_defaults == {"pflow": True, "no-sync": True}
    web = rs.lookup(None, 5)
    assert web.timeouts == {"tcp.established": 600, "adaptive.start": 300,
                            "adaptive.end": 600}
    assert web.state_opts["max"] == 500


def test_state_defaults_reach_only_implicit_pass_rules():
    rs = parse_pfconf(CONF, "pf.conf")
    by_nr = {r.nr: r for r in rs.rules if r.anchor == ""}
    assert not by_nr[0].pflow                     # block
    assert by_nr[1].pflow                         # implicit keep state
    assert not by_nr[5].pflow                     # explicit keep state (...)
    assert not by_nr[9].pflow and by_nr[9].label == "no-state"
    assert not by_nr[10].pflow                    # match
    inner = [r for r in rs.rules if r.anchor == "web"]
    assert inner[0].pflow and inner[0].label == "netflow-web"


def test_comment_continues_over_backslash():
    rs = parse_pfconf("pass in all # note \\\npass out all\nblock all\n", "f")
    assert [(r.action, r.direction) for r in rs.rules] == [
        ("pass", "in"), ("block", None)]


def test_anchors_number_from_zero_and_lookup():
    rs = parse_pfconf(CONF, "pf.conf")
    anchor_rule = [r for r in rs.rules if r.call == "web"][0]
    assert rs.lookup(anchor_rule.nr, 0).label == "netflow-web"
    nested = [r for r in rs.rules if r.anchor.startswith("web/")]
    assert [(r.nr, r.action) for r in nested] == [(0, "block")]


def test_include_goes_through_read_file():
    files = {"/etc/pf.inc": "pass in proto tcp to port 22 keep state (pflow)\n"}
    rs = load_ruleset('block all\ninclude "/etc/pf.inc"\npass out all\n',
                      "pf.conf", read_file=files.__getitem__)
    assert [(r.nr, r.action, r.pflow) for r in rs.rules] == [
        (0, "block", False), (1, "pass", True), (2, "pass", False)]


def test_defines_win_over_file_macros():
    rs = parse_pfconf('if = "em0"\npass on $if all\n', "f",
                      defines={"if": "vio0"})
    assert rs.rules[0].ifname == "vio0"


@pytest.mark.parametrize("text, line, message", [
    ("pass all\npass in on $nope all\n", 2, "macro 'nope' not defined"),
    ("pass all\n\npass in frm any\n", 3, "syntax error"),
    ("pass in proto icmp from any port 22 to any\n", 1,
     "port only applies to tcp/udp"),
    ("pass in inet from 2001:db8::1 to any\n", 1,
     "rule expands to no valid combination"),
    ("pass all\n}\n", 2, "syntax error"),
    ("pass from 10.0.0.0/33\n", 1, "netmask 33 invalid for IPv4 address"),
    ("pass in proto tcp \\\n  flags S\n", 2, "syntax error"),
    ("pass in proto udp \\\n  flags S/SA\n", 2, "flags only apply to tcp"),
    ("pass in on em0 keep state (max 10, max 20)\n", 1,
     "state option 'max' multiple definitions"),
    ("set timeout tcp.closing 6, tcp.opening 6\n", 1, "syntax error"),
    ("queue q on em0 bandwidth 1M default\npass set queue r\n", 2,
     "queue r is not defined"),
    ("table <t> { <u> }\n", 1, "tables cannot contain tables"),
])
def test_errors_name_file_and_line(text, line, message):
    with pytest.raises(RuleSyntaxError) as exc:
        parse_pfconf(text, "stdin")
    assert str(exc.value) == f"stdin:{line}: {message}"


def test_unmodelled_rule_stops_numbering_with_a_warning():
    rs = parse_pfconf("pass all\nantispoof for em0\npass out all\n", "f")
    assert [r.nr for r in rs.rules] == [0, None]
    assert rs.warnings and rs.warnings[0].startswith("f:2:")


def test_freebsd_translation_and_scrub_rules_number_apart():
    rs = parse_pfconf("scrub in all fragment reassemble\n"
                      "nat on em0 from 10.0.0.0/8 to any -> (em0)\n"
                      "rdr on em0 proto tcp to port 80 -> 10.0.0.5\n"
                      "pass all\n", "f")
    assert [(r.action, r.nr) for r in rs.rules] == [
        ("scrub", 0), ("nat", 0), ("rdr", 0), ("pass", 0)]
    assert rs.lookup(None, 0).action == "pass"


@pytest.mark.parametrize("text", [
    "set limit states\n", "set limit states 1 2\n", "set optimization\n"])
def test_limit_and_optimization_are_checked_not_kept(text):
    """They change no rule number (CONF's are read above); a bad one is refused."""
    with pytest.raises(RuleSyntaxError, match=r"^stdin:1: syntax error$"):
        parse_pfconf(text, "stdin")


@pytest.mark.parametrize("text", [
    "pass in proto { udp tcp } flags S/SA\n",      # tcp in the list
    "pass in proto udp flags any\n",
    "set timeout { tcp.closing 6, tcp.opening 6 }\nset limit states 10\n",
    "pass in label \"88\" tag t57\n",
    "match on em0 from (em0:0) to any binat-to 10.0.0.1\n",
    "pass set queue r\n",                           # no queues: not checked
    "table <t> persist { 10/8 !10.1.0.0/16 lo0 }\n",
    "pass in divert-to 127.0.0.1 port 8025\n",
])
def test_neighbours_of_rejected_rules_still_load(text):
    assert parse_pfconf(text, "stdin").rules is not None
