"""The `pfctl -sr -vv` listing reader, the Rule model and Ruleset.lookup."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pflowbsd.rules.hosts import Host, Port
from pflowbsd.rules.load import load_ruleset
from pflowbsd.rules.model import RuleSyntaxError, parse_listing

OPENBSD = """\
@0 match in all scrub (no-df)
  [ Evaluations: 1520384   Packets: 1520384   Bytes: 1129463120  States: 0     ]
  [ Inserted: uid 0 pid 40632 State Creations: 0     ]
@1 block return all
  [ Evaluations: 2231      Packets: 2231      Bytes: 150380      States: 0     ]
  [ Inserted: uid 0 pid 40632 State Creations: 0     ]
@2 pass out all flags S/SA keep state (pflow)
  [ Evaluations: 1518153   Packets: 1497560   Bytes: 1118043345  States: 113   ]
  [ Inserted: uid 0 pid 40632 State Creations: 40211 ]
@3 pass in on em0 inet proto tcp from any to 192.0.2.1 port = 22 flags S/SA keep state (max 100, pflow, tcp.established 600, adaptive.start 60, adaptive.end 120)
  [ Evaluations: 48        Packets: 40        Bytes: 6234        States: 2     ]
  [ Inserted: uid 0 pid 40632 State Creations: 31    ]
@4 anchor "relayd/*" all {
@0 pass in quick on em1 proto tcp from <web:3> to (em1:1) port = 80 flags S/SA label "netflow-web"
}
@5 anchor "sub" in on em0 all {
@0 anchor "inner" all {
@0 block drop in quick all tag "bad"
}
@1 pass in all flags S/SA keep state (if-bound, sloppy)
}
"""

FREEBSD = """\
@0 scrub in all fragment reassemble
  [ Evaluations: 10        Packets: 10        Bytes: 600         States: 0     ]
  [ Source Nodes: 0      Limit: 0      NAT/RDR: 0      Route: 0      ]
  [ Inserted: uid 0 pid 1 State Creations: 0     ]
  [ Last Active Time: N/A ]
@0 pass in on em0 inet proto tcp from any to 192.0.2.1 port = ssh flags S/SA keep state (max 100, pflow)
  [ Evaluations: 48        Packets: 40        Bytes: 6234        States: 2     ]
  [ Source Nodes: 0      Limit: 0      NAT/RDR: 0      Route: 0      ]
  [ Inserted: uid 0 pid 40632 State Creations: 31    ]
  [ Last Active Time: Tue Jul 15 10:31:02 2025 ]
@334(0) anchor "tftp-proxy/*" all
  [ Evaluations: 7112201   Packets: 0         Bytes: 0           States: 0     ]
  [ Inserted: pid 3540 State Creations: 0     ]
"""


def test_openbsd_listing_numbers_and_options():
    rs = parse_listing(OPENBSD)
    assert rs.source == "pfctl" and rs.warnings == []
    assert [(r.anchor, r.nr, r.action) for r in rs.rules] == [
        ("", 0, "match"), ("", 1, "block"), ("", 2, "pass"), ("", 3, "pass"),
        ("", 4, "anchor"), ("relayd/*", 0, "pass"), ("", 5, "anchor"),
        ("sub", 0, "anchor"), ("sub/inner", 0, "block"), ("sub", 1, "pass")]
    r3 = rs.rules[3]
    assert r3.pflow and r3.ifname == "em0" and r3.af == "inet"
    assert r3.proto == ("tcp",) and r3.keep_state == "keep"
    assert r3.state_opts == {"max": 100, "pflow": True}
    assert r3.timeouts == {"tcp.established": 600, "adaptive.start": 60,
                           "adaptive.end": 120}
    assert r3.dst.host == Host(False, "addr", "192.0.2.1", "inet")
    assert r3.dst.port == Port("=", 22)
    web = rs.rules[5]
    assert web.src.host.kind == "table" and web.src.host.value == "web"
    assert web.dst.host.value == "em1" and web.label == "netflow-web"
    assert rs.rules[8].tag == "bad" and rs.rules[8].quick


def test_lookup_main_and_anchor():
    rs = parse_listing(OPENBSD)
    assert rs.lookup(None, 2).nr == 2 and rs.lookup(None, 2).pflow
    assert rs.lookup(5, 1).anchor == "sub"
    assert rs.lookup(4, 0).label == "netflow-web"   # wildcard anchor
    assert rs.lookup(None, 99) is None and rs.lookup(7, 0) is None
    assert rs.lookup(None, None) is None


def test_freebsd_listing_scrub_first_and_pfsense_numbers():
    rs = parse_listing(FREEBSD)
    assert [(r.nr, r.action) for r in rs.rules] == [
        (0, "scrub"), (0, "pass"), (334, "anchor")]
    # scrub rules have their own numbering; states point at filter rules
    assert rs.lookup(None, 0).action == "pass"
    assert rs.rules[1].dst.port == Port("=", 22)


def test_unreadable_rule_is_skipped_with_warning_naming_line():
    rs = parse_listing("@0 pass all\n@1 pass all frobnicate 3\n@2 block all\n")
    assert [r.nr for r in rs.rules] == [0, 2]
    assert rs.warnings and rs.warnings[0].startswith("pfctl -sr:2:")


def test_unbalanced_braces_are_errors():
    with pytest.raises(RuleSyntaxError) as exc:
        parse_listing("@0 pass all\n}\n", "saved")
    assert str(exc.value) == "saved:2: unbalanced '}'"
    assert exc.value.line == 2 and exc.value.file == "saved"
    with pytest.raises(RuleSyntaxError):
        parse_listing('@0 anchor "a" all {\n@0 pass all\n')


def test_load_ruleset_tells_listing_from_pfconf():
    assert load_ruleset("@0 pass all\n", "x").source == "pfctl"
    assert load_ruleset("pass all\n", "x").source == "pf.conf"


@given(st.lists(st.tuples(st.sampled_from(["pass", "block", "match"]),
                          st.sampled_from(["in", "out", None]),
                          st.booleans()), min_size=1, max_size=30))
def test_numbers_come_from_the_listing(rules):
    text = "".join(f"@{i * 2} {a}{' ' + d if d else ''}{' quick' if q else ''}"
                   f" all\n  [ Evaluations: 0 ]\n"
                   for i, (a, d, q) in enumerate(rules))
    rs = parse_listing(text)
    assert [r.nr for r in rs.rules] == [i * 2 for i in range(len(rules))]
    assert [(r.action, r.direction, r.quick) for r in rs.rules] == rules


def test_lookup_decides_from_both_numbers_and_reports_ambiguity():
    """`anchor 0, rule 1`: anchor rule 0 of main calls "a", anchor rule 0
    inside "a" calls "a/b"; only "a/b" has a rule 1, so it is that one.
    `anchor 0, rule 0` fits both: reported, no guess (main used to win)."""
    from pflowbsd.rules.pfconf import parse_pfconf
    rs = parse_pfconf('anchor "a" {\n anchor "b" {\n  pass label "x"\n'
                      '  pass label "y"\n }\n}\n', "f")
    assert rs.lookup(0, 1).label == "y"
    rule, why = rs.resolve(0, 0)
    assert rule is None and why == "anchor 0, rule 0 is ambiguous (a, a/b)"
    assert rs.resolve(0, 7) == (None, "no rule 7 in anchor 0")


def test_shape_cache_gives_what_the_grammar_gives():
    """Every rule line of the regress listings, twice (so shapes are built,
    checked and then trusted), and rules whose literals the grammar changes."""
    from pflowbsd.rules.grammar import parse_rule_text
    from pflowbsd.rules.model import LIVE_TABLE, RULE_LINE
    from pflowbsd.rules.shapes import ShapeCache
    from tests.support.regress import REGRESS
    texts = []
    for path in sorted(REGRESS.glob("pf*.loaded"))[::3]:   # a third: speed
        for line in path.read_text().splitlines():
            m = RULE_LINE.match(line)
            if m:
                texts.append(LIVE_TABLE.sub(r"<\1>", m.group(3)))
    texts += [f"pass proto {p} from 10.0.{p}.0/24 port {p + 1}"
              for p in (6, 17, 6, 17)]
    texts += [f'pass in on em0 proto tcp to 192.0.2.{i} port {1000 + i} '
              f'keep state (max {i + 7}) label "r{i}"' for i in range(1, 9)]
    wants = {}
    for text in texts:
        try:
            wants[text] = parse_rule_text(text)
        except Exception:
            pass
    cache = ShapeCache()
    ok = [cache.parse(t) == w for t, w in [*wants.items(), *wants.items()]]
    assert ok and all(ok)
    assert sum(v is not None and v[2] for v in cache.shapes.values()) > 10


def test_printer_prints_rules_as_pfctl_nv_does():
    """Every rule line of the regress pfN.ok files the printer covers comes
    out as pfctl printed it; the others (translation, routing, ...) give
    None, never a wrong line.  Read through the shape cache (the product's
    path, checked against the grammar above; test_regress warms it)."""
    from pflowbsd.rules.printer import print_spec
    from pflowbsd.rules.shapes import parse_rule_cached
    from tests.support.regress import REGRESS
    same = covered = 0
    for path in sorted(REGRESS.glob("pf[0-9]*.ok")):
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line.startswith(("pass", "block", "match")):
                continue
            try:
                spec = parse_rule_cached(line)
            except Exception:
                continue
            got = print_spec(spec)
            if got is not None:
                covered += 1
                same += got == line
    assert covered >= 869 and same == covered


def test_printer_falls_back_where_pfctl_would_rename():
    """A number pfctl prints by name prints as that name (icmp-type 0 is
    echorep, unreach's code 0 is net-unr: pfctl_parser.c's tables); a pool of
    several addresses (pfctl makes a table of them) is not printed (None: the
    statement's text is shown); a single nat-to/rdr-to address is."""
    from pflowbsd.rules.printer import print_spec
    from pflowbsd.rules.shapes import parse_rule_cached
    assert print_spec(parse_rule_cached("pass in inet proto icmp all icmp-type 0")) == \
        "pass in inet proto icmp all icmp-type echorep"
    assert print_spec(parse_rule_cached("pass in inet proto icmp all icmp-type unreach code 0")) \
        == "pass in inet proto icmp all icmp-type unreach code net-unr"
    assert print_spec(parse_rule_cached("pass in inet6 proto ipv6-icmp all icmp6-type 1 code 1")) \
        == "pass in inet6 proto ipv6-icmp all icmp6-type unreach code admin-unr"
    for text in ("match out on lo0 inet all nat-to { 10.0.0.1, 10.0.0.2 }",):
        assert print_spec(parse_rule_cached(text)) is None, text
    for text in ("match out on lo0 inet all nat-to 10.0.0.1 port 1000:2000",
                 "match out on lo0 inet all nat-to 10.0.0.1 static-port",
                 "match in on lo0 inet all rdr-to 10.0.0.0/24 random"
                 " sticky-address",
                 "pass log (all, user, to pflog2) all flags S/SA",
                 "pass in inet proto icmp all icmp-type echoreq code 0"):
        assert print_spec(parse_rule_cached(text)) == text
    assert print_spec(parse_rule_cached("block log (to pflog0) all")) == \
        "block drop log all"    # logif 0 is not printed


def test_ifconfig_a_of_both_systems():
    """tests/fixtures/ifconfig: OpenBSD's and FreeBSD's formats (index line,
    groups, netmask in hex, inet6 %scope and prefixlen, point-to-point)."""
    import pytest

    from pflowbsd.pf.ifaces import IfconfigError, groups, parse_ifconfig
    from tests.support import FIXTURES
    obsd = parse_ifconfig((FIXTURES / "ifconfig" / "openbsd.txt").read_text())
    lo0, em0 = obsd[0], obsd[1]
    assert (lo0.name, lo0.index, lo0.loopback) == ("lo0", 3, True)
    assert [(a.addr, a.prefixlen, a.af, a.link_local) for a in lo0.addresses] == [
        ("::1", 128, "inet6", False), ("fe80::1", 64, "inet6", True),
        ("127.0.0.1", 8, "inet", False)]
    assert em0.groups == ["egress", "all"] and not em0.loopback
    assert em0.addresses[0].broadcast == "192.0.2.255"
    assert [m.name for m in groups(obsd)["egress"]] == ["em0"]
    assert len(groups(obsd)["all"]) == len(obsd) == 7
    tun0 = next(i for i in obsd if i.name == "tun0")
    assert (tun0.addresses[0].peer, tun0.addresses[0].prefixlen) == ("10.9.0.2", 32)
    fbsd = parse_ifconfig((FIXTURES / "ifconfig" / "freebsd.txt").read_text())
    assert [(i.name, i.index) for i in fbsd][:2] == [("em0", None), ("em1", None)]
    assert fbsd[1].addresses[0].network == "172.16.0.0/20"
    with pytest.raises(IfconfigError, match=r"^ifconfig -a:1: not ifconfig"):
        parse_ifconfig("garbage\n")


# --- the optimizer's table pass (pflowbsd.rules.optimize) --------------------

def _optimized(conf):
    from pflowbsd.rules.pfconf import parse_pfconf
    return parse_pfconf(conf, "f", optimize=True).rules


def _addrs(n, base="10.0.0."):
    return "{ " + " ".join(f"{base}{i}" for i in range(1, n + 1)) + " }"


def test_six_rules_differing_in_one_address_become_a_table():
    """TABLE_THRESHOLD is 6: five stay rules, six are one rule on a table,
    numbered from 0 again, and `$nr` is the number after merging."""
    five = _optimized(f"pass from {_addrs(5)}\npass label \"r$nr\"\n")
    assert [r.src.host.value for r in five][:5] == [
        f"10.0.0.{i}" for i in range(1, 6)]
    six = _optimized(f"pass from {_addrs(6)}\npass label \"r$nr\"\n")
    assert [(r.nr, r.src.host.kind, r.src.host.value) for r in six] == [
        (0, "table", "__automatic_0"), (1, "any", "any")]
    assert six[0].printed == "pass inet from <__automatic_0> to any flags S/SA"
    assert six[1].label == "r1"


def test_tables_are_named_by_the_runs_table_counter():
    """add_opt_table() numbers every table it starts, small ones too: the
    two-address list takes __automatic_0 and stays two rules."""
    rules = _optimized(f"pass in from {_addrs(2)}\n"
                       f"pass out to {_addrs(6, '10.1.0.')}\n")
    assert [r.dst.host.value for r in rules] == [
        "any", "any", "__automatic_1"]


def test_barriers_and_breaks_keep_rules_apart():
    """A label puts each rule in its own superblock; a differing port
    (NOMERGE) lets rules share a superblock but not a table, so each port
    gets its own; a differing action (BREAK) splits superblocks."""
    labelled = _optimized(f'pass from {_addrs(6)} label "x"\n')
    assert len(labelled) == 6
    ports = _optimized(f"pass proto tcp from {_addrs(6)} to port {{ 22 80 }}\n")
    assert [(r.src.host.value, r.dst.port.lo) for r in ports] == [
        ("__automatic_0", 22), ("__automatic_1", 80)]
    lines = "".join(f"{'pass' if i % 2 else 'block'} from 10.0.0.{i}\n"
                    for i in range(12))
    assert len(_optimized(lines)) == 12


def test_optimizer_off_by_default_and_in_each_anchor():
    from pflowbsd.rules.pfconf import parse_pfconf
    conf = f"pass from {_addrs(6)}\nanchor a {{\n pass to {_addrs(6)}\n}}\n"
    assert len(parse_pfconf(conf, "f").rules) == 13
    rules = _optimized(conf)
    assert [(r.anchor, r.nr, r.src.host.value, r.dst.host.value)
            for r in rules] == [
        ("", 0, "__automatic_0", "any"), ("", 1, "any", "any"),
        ("a", 0, "any", "__automatic_1")]


def test_covered_rules_go_before_tables_are_made():
    """remove_identical_rules() runs first: six hosts inside 10/8 next to
    `pass from 10/8` leave that one rule and make no table; a rule the other
    covers only partly (another direction) stays."""
    rules = _optimized(f"pass from {_addrs(6)}\npass from 10.0.0.0/8\n")
    assert [r.printed for r in rules] == [
        "pass inet from 10.0.0.0/8 to any flags S/SA"]
    rules = _optimized("pass in from 10.0.0.1\npass out from 10.0.0.0/8\n")
    assert len(rules) == 2


def test_states_command_skips_a_state_whose_addresses_are_not_of_its_family():
    """`pflowbsd states` (rules/show.cmd_states) checks addresses as pf/states does."""
    import io

    from pflowbsd.rules.select import Selector
    from pflowbsd.rules.show import cmd_states
    text = ("all tcp 10.0.0.1:1 -> 2001:db8::1:2       ESTABLISHED:ESTABLISHED\n"
            "   age 00:00:01, expires in 00:00:10, 1:1 pkts, 1:1 bytes\n"
            "   id: 0000000000000001 creatorid: 00000001\n")
    out, err = io.StringIO(), io.StringIO()
    assert cmd_states(text, None, Selector(), False, out, err) == 1
    assert out.getvalue() == "" and "bad address" in err.getvalue()
