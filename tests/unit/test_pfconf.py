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


# --- the host's interfaces (tests/fixtures/ifconfig), macros as yylex reads them

def _host(system):
    from pflowbsd.pf.ifaces import parse_ifconfig
    from pflowbsd.rules.ifa import IfTable
    from tests.support import FIXTURES
    return IfTable(parse_ifconfig((FIXTURES / "ifconfig" / f"{system}.txt")
                                  .read_text()))


def test_glued_macro_is_read_with_the_text_after_it():
    """The FreeBSD Handbook's `localnet = $int_if:network`."""
    conf = ('int_if = "em1"\nlocalnet = $int_if:network\n'
            "pass in on $int_if from $localnet to any\n")
    rs = parse_pfconf(conf, "f", interfaces=_host("openbsd"))
    assert [(r.ifname, r.src.host.value) for r in rs.rules] == [
        ("em1", "10.0.0.0/24"), ("em1", "10.0.1.0/24")]


def test_dollar_inside_a_word_is_a_plain_character():
    """`$a$b`: pfctl expands a, and b only when a's value ends a word.

    yylex() (OpenBSD sbin/pfctl/parse.y 1.718) expands a macro only where a
    token starts, and never inside a value being read:
        if (c == '$' && !expanding) {
    the value is pushed back between START_EXPAND and DONE_EXPAND, and
    igetc() clears `expanding` as it reads past the value:
        else if (c == DONE_EXPAND)
                expanding = 0;
    but the word loop that reads the value's last word goes on through the
    `$` that follows, which it takes as a letter:
        } while ((c = lgetc(0)) != EOF && (allowed_in_string(c)));
    (allowed_in_string() is isalnum() or any ispunct() but ( ) { } < > ! =
    / # ,).  FreeBSD's yylex() has `if (c == '$' && parsebuf == NULL)` and
    reads the value from parsebuf, cleared at its NUL: the same outcome.
    So `$a$b` is a's value glued to the text `$b`, unless a's value is
    empty or ends in white space or one of those specials, where the `$`
    starts the next token and b is expanded.
    """
    rs = parse_pfconf('a = "em"\nb = "0"\npass on $a$b\n', "f")
    assert rs.rules[0].ifname == "em$b"
    rs = parse_pfconf('a = "{ 22,"\nb = "80 }"\n'
                      "pass proto tcp to port $a$b\n", "f")
    assert [r.dst.port.lo for r in rs.rules] == [22, 80]
    # an empty value: nothing is read before the `$`, which starts a token
    rs = parse_pfconf('a = ""\nb = "em0"\npass on $a$b\n', "f")
    assert rs.rules[0].ifname == "em0"
    # a value ending in a blank ends its word there
    rs = parse_pfconf('a = "in "\nb = "on em0"\npass $a$b\n', "f")
    assert (rs.rules[0].direction, rs.rules[0].ifname) == ("in", "em0")


def test_macro_in_quotes_is_not_expanded():
    rs = parse_pfconf('a = "x"\npass label "$a"\n', "f")
    assert rs.rules[0].label == "$a"


def test_antispoof_expands_per_interface_and_address():
    rs = parse_pfconf("antispoof for { lo0 em0 } inet\npass all\n", "f",
                      interfaces=_host("openbsd"))
    got = [(r.ifname, r.af, r.src.host.value, r.nr) for r in rs.rules]
    assert got == [("!lo0", "inet", "127.0.0.0/8", 0),
                   ("!em0", "inet", "192.0.2.0/24", 1),
                   (None, "inet", "192.0.2.10", 2),
                   (None, None, "any", 3)]
    assert rs.warnings == []


def test_antispoof_skips_link_local_networks_and_keeps_label():
    rs = parse_pfconf('antispoof quick for em0 label "spoof"\n', "f",
                      interfaces=_host("freebsd"))
    got = [(r.ifname, r.src.host.value, r.quick, r.label) for r in rs.rules]
    assert got == [
        ("!em0", "198.51.100.0/24", True, "spoof"),
        ("!em0", "2001:db8:1::/64", True, "spoof"),
        (None, "198.51.100.2", True, "spoof"),
        (None, "fe80::a00:27ff:fe8a:1b2c", True, "spoof"),
        (None, "2001:db8:1::2", True, "spoof")]


@pytest.mark.parametrize("host, want", [
    ("egress", ["192.0.2.10", "fe80::5054:ff:fe12:3456", "2001:db8::10"]),
    ("em", ["192.0.2.10", "fe80::5054:ff:fe12:3456", "2001:db8::10",
            "10.0.0.1", "10.0.1.1"]),
    ("em1:0", ["10.0.0.1"]),
    ("em0:broadcast", ["192.0.2.255"]),
    ("tun0:peer", ["10.9.0.2"]),
    ("em0/16", ["192.0.0.0/16", "fe80::/16", "2001::/16"]),
    ("egress:network", ["192.0.2.0/24", "2001:db8::/64"]),
])
def test_interface_names_groups_and_modifiers(host, want):
    rs = parse_pfconf(f"pass from {host}\n", "f", interfaces=_host("openbsd"))
    assert [r.src.host.value for r in rs.rules] == want


def test_self_is_every_address_of_the_host():
    rs = parse_pfconf("pass to self\n", "f", interfaces=_host("freebsd"))
    assert len(rs.rules) == 7 and rs.rules[-1].dst.host.value == "fe80::1"


def test_inline_anchors_are_numbered_by_every_brace():
    """parse.y's pf->bn counts named inline anchors too."""
    rs = parse_pfconf('anchor "a" {\n pass\n}\nanchor {\n pass\n}\n'
                      "anchor in {\n anchor out {\n  pass\n }\n}\n", "f")
    calls = [r.call for r in rs.rules if r.action == "anchor"]
    assert calls == ["a", "_2", "_3", "_3/_4"]


def test_list_expanded_anchor_body_follows_its_first_rule():
    rs = parse_pfconf("anchor on { em0 em1 } {\n pass\n}\npass\n", "f")
    assert [(r.anchor, r.action, r.ifname, r.nr) for r in rs.rules] == [
        ("", "anchor", "em0", 0), ("_1", "pass", None, 0),
        ("", "anchor", "em1", 1), ("", "pass", None, 2)]
    assert rs.rules[0].call == rs.rules[2].call == "_1"


def test_listing_counts_named_inline_anchors_like_pfctl():
    from pflowbsd.rules.model import parse_listing
    rs = parse_listing('@0 anchor "a" all {\n@0 pass all\n}\n'
                       '@1 anchor "b" all {\n}\n@2 anchor all {\n@0 pass all\n}\n')
    assert [r.call for r in rs.rules if r.action == "anchor"] == \
        ["a", "b", "_2"]


def test_antispoof_for_an_unknown_interface_gives_no_rule_and_says_so():
    rs = parse_pfconf("antispoof for em9\npass all\n", "f",
                      interfaces=_host("openbsd"))
    assert [r.nr for r in rs.rules] == [0]
    assert rs.warnings == ["f:1: antispoof for em9: no such interface on "
                           "this host, no rules (as pfctl)"]


def test_non_ascii_outside_quotes_is_a_syntax_error():
    """pfctl reads pf.conf in the C locale: allowed_in_string()'s isalnum()
    and ispunct() take no byte above 0x7e, so `²` or `é` is a byte yylex()
    returns alone, which no rule takes; inside quotes anything goes."""
    for word in ("²", "é", "em0²"):
        with pytest.raises(RuleSyntaxError, match="syntax error"):
            parse_pfconf(f"pass from {word}\n", "f")
    assert parse_pfconf('pass label "é²"\n', "f").rules[0].label == "é²"
