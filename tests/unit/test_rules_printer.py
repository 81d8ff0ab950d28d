"""pflowbsd.rules.printer (print_rule) and pftables (pfctl_parser.c's
tables): each construct as the regress pfN.ok files print it, read back from
that line and from a pf.conf statement, and the cases printed as None."""
import re

import pytest

from pflowbsd.rules import pftables
from pflowbsd.rules.pfconf import parse_pfconf
from pflowbsd.rules.printer import print_spec
from pflowbsd.rules.shapes import parse_rule_cached
from tests.support.regress import cases, expanded, printed, reachable


def reprinted(line: str) -> str | None:
    return print_spec(parse_rule_cached(line))


def pfconf_printed(text: str) -> list[str | None]:
    return [r.printed for r in parse_pfconf(text, "stdin").rules]


# Lines of the regress .ok files, one or two per construct.
OK_LINES = [
    # return-rst(ttl), return-icmp / return-icmp6 by af (pf10, pf2)
    "block return-rst(ttl 10) in inet proto tcp all",
    "block return-icmp(port-unr) in inet proto icmp all",
    "block return-icmp6(noroute-unr) in inet6 proto ipv6-icmp all",
    "block return-icmp(srcfail, admin-unr) in all",
    "block return-icmp(port-unr, port-unr) out log on tun1000000 proto udp all",
    # set ( prio, queue, tos ), tos, prio, allow-opts (pf101, pf103, pf15, pf39)
    "pass all flags S/SA set (prio 3)",
    "pass out on lo1000000 proto tcp from any to any port = 22 flags S/SA "
    "set (prio(5, 2))",
    "pass all flags S/SA set (queue def)",
    "match out all set (tos 0x08) tagged THROUGHPUT",
    "pass in log quick on lo0 inet proto tcp all user = 3 group = 32767 "
    "flags S/SA tos 0x08 set (prio 2) allow-opts label \"blah\"",
    "pass in inet proto igmp from 10.0.0.0/8 to 10.1.1.1 allow-opts",
    # fragment: no flags at all (pf39)
    "pass in log quick on lo0 inet proto tcp all tos 0x08 fragment "
    "label \"blah\"",
    # scrub ( ) in print_rule's order (pf44, pf68, pf73)
    "match in on lo0 all scrub (no-df min-ttl 15 reassemble tcp max-mss 224)",
    "match proto tcp all scrub (random-id)",
    "pass proto tcp all flags S/SA scrub (reassemble tcp)",
    # probability, rtable (pf34, pf93)
    "pass in inet6 proto tcp from ::1 to any flags S/SA probability 0.8%",
    "pass in all flags S/SA rtable 0",
    # numeric icmp types and codes with no name (pf11)
    "pass in inet proto icmp all icmp-type 1 code 1",
    "block drop in inet6 proto ipv6-icmp all icmp6-type 0 code 0",
    # divert (pf104, pf97)
    "pass in inet6 proto tcp from any to any port = 25 flags S/SA "
    "divert-to ::1 port 8025",
    "pass out on em0 inet proto tcp from any to any port 220:230 flags S/SA "
    "divert-reply",
    "pass in on em0 inet proto pim all divert-to 127.0.0.1 port 103",
    # route-to / reply-to / dup-to (pf13, pf46)
    "pass out quick on tun1000000 inet all flags S/SA "
    "route-to (tun1000001:peer) round-robin",
    "pass in on tun1000000 inet6 proto tcp from any to any port = 21 "
    "flags S/SA dup-to fec0::1",
    "pass in on lo0 inet all flags S/SA route-to <__automatic_0> round-robin",
    "pass in on lo0 inet all flags S/SA reply-to 169.254.0.0/28 "
    "source-hash 0x0123456789abcdef0123456789abcdef",
    "pass out on lo0 inet all flags S/SA dup-to 169.254.0.0/24 random",
    # overload in the state options (pf89)
    "pass in on lo1000000 inet proto tcp from any to 10.0.0.1 port = 8080 "
    "flags S/SA synproxy state (source-track rule, max-src-conn 1000, "
    "max-src-conn-rate 1000/5, overload <bad> flush global, src.track 5)",
]


@pytest.mark.parametrize("line", OK_LINES)
def test_ok_lines_print_back(line):
    assert reprinted(line) == line


@pytest.mark.parametrize("text, want", [
    # parse.y's defaults: return-icmp is port-unr for both afs
    ("block return-icmp in proto udp all",
     "block return-icmp(port-unr, port-unr) in proto udp all"),
    ("block return-icmp6 in inet6 all", "block return-icmp6(port-unr) in inet6 all"),
    ("block return-icmp(3) in inet all", "block return-icmp(port-unr) in inet all"),
    ("block return-rst(ttl 0) in proto tcp all",
     "block return-rst in proto tcp all"),
    # print_flags() orders the letters; flags are dropped off tcp
    ("block in proto tcp from any to any flags SF/SFRA",
     "block drop in proto tcp all flags FS/FSRA"),
    ("pass in proto { udp, tcp } from any to any flags S/SA",
     "pass in proto udp all"),
    ("pass in from any to any flags any no state", "pass in all no state"),
    ("pass in from any to any flags any", "pass in all flags any"),
    # names: tos names, a shared icmp6 number prints its first name
    ("match out all set tos lowdelay", "match out all set (tos 0x10)"),
    ("pass in inet6 proto ipv6-icmp all icmp6-type listqry keep state",
     "pass in inet6 proto ipv6-icmp all icmp6-type groupqry"),
    ("pass in inet proto icmp all icmp-type echoreq code 0 keep state",
     "pass in inet proto icmp all icmp-type echoreq code 0"),
    # a number with a name in pfctl_parser.c's tables prints as the name
    ("pass in inet proto icmp all icmp-type 8", "pass in inet proto icmp all icmp-type echoreq"),
    # probability as a fraction, and its floor/round trip
    ("pass in probability 0.5", "pass in all flags S/SA probability 50%"),
    # binat-to's outbound half is a static-port nat-to
    ("match on lo0 from 192.168.1.1 to any binat-to 10.0.0.1",
     "match out on lo0 inet from 192.168.1.1 to any nat-to 10.0.0.1 "
     "static-port"),
    # an interface of several addresses gets round-robin, :0 does not
    ("match out on lo0 inet from any to 127.0.0.1 nat-to (lo0)",
     "match out on lo0 inet from any to 127.0.0.1 nat-to (lo0) round-robin"),
    ("match in on lo0 inet from any to 127.0.0.1 rdr-to (lo0:0)",
     "match in on lo0 inet from any to 127.0.0.1 rdr-to (lo0:0)"),
    # rdr-to port N:* follows the destination's range; lo:lo prints once
    ("match in on lo0 proto tcp from any to 192.168.0.0/24 port ftp:ssh "
     "rdr-to 127.0.0.1 port bgp:*",
     "match in on lo0 inet proto tcp from any to 192.168.0.0/24 port 21:22 "
     "rdr-to 127.0.0.1 port 179:180"),
    ("match in on lo0 proto tcp from any to 192.168.0.0/24 port 1000:3000 "
     "rdr-to 127.0.0.1 port 22",
     "match in on lo0 inet proto tcp from any to 192.168.0.0/24 "
     "port 1000:3000 rdr-to 127.0.0.1 port 22"),
    ("match out on lo0 proto udp from 192.168.1.4 nat-to 10.0.0.4 "
     "port 50000:50000",
     "match out on lo0 inet proto udp from 192.168.1.4 to any "
     "nat-to 10.0.0.4 port 50000"),
    # a key as pfctl prints it: lower case hex
    ("match out on lo0 inet all nat-to 127.0.0.1/24 source-hash "
     "0x0123456789ABCDEF0123456789abcdef",
     "match out on lo0 inet all nat-to 127.0.0.0/24 source-hash "
     "0x0123456789abcdef0123456789abcdef"),
    # a key given as a string is its MD5, as parse.y makes it (pf36.ok)
    ("match out on lo0 inet all nat-to 127.0.0.1/24 source-hash foobarlicious",
     "match out on lo0 inet all nat-to 127.0.0.0/24 source-hash "
     "0x4da8e393fd22f577426cfdf7fe52d3b0"),
    # $nr in a label is the rule's number, filled in once the rules are numbered
    ('pass in on lo0 all label "$nr"', 'pass in on lo0 all flags S/SA label "0"'),
    # an inet interface mask past 32 is cut (gen_dynnode)
    ("pass inet from 1.1.1.1 to (self)/40",
     "pass inet from 1.1.1.1 to (self) flags S/SA"),
])
def test_pfconf_statements_print_as_pfctl(text, want):
    """The statement's first rule (binat-to loads its inbound half too)."""
    assert pfconf_printed(text)[0] == want


@pytest.mark.parametrize("text", [
    "match out on lo0 inet all nat-to 127.0.0.1/24 source-hash",  # random
    "match out on lo0 inet all nat-to { 10.0.0.1, 10.0.0.2 }",
    "pass out on lo0 route-to { 10.0.0.1, 10.0.0.2 } round-robin",
    'pass in proto tcp from any os "OpenBSD" to any',
    "pass in proto tcp to port 25 divert-to localhost port 8025",
    "match in all scrub (fragment reassemble)",
    "pass in probability 150%",
    "pass out on lo0 route-to (em0 10.0.0.1)",      # 10.0.0.1@em0
    "pass out on lo0 route-to 10.0.0.1@em0",
    "pass in inet from any to any af-to inet6 from 2001:db8::1",
    "pass in all keep state (floating)",
])
def test_unsure_clauses_give_none(text):
    assert pfconf_printed(text) == [None]


def test_leading_overload_takes_no_comma_as_in_print_rule():
    """print_rule leaves ropts set after overload: the next option follows
    it without ', '."""
    assert reprinted("pass in all flags S/SA keep state (overload <bad>, "
                     "if-bound)") == \
        "pass in all flags S/SA keep state (overload <bad>if-bound)"


def test_tables_match_pfctl_parser():
    """The lookups the printer makes: first name of a number, codes by
    type, and None where pfctl has no name."""
    assert pftables.icmp_type_name(130, "inet6") == "groupqry"
    assert pftables.icmp_type_name(0, "inet") == "echorep"
    assert pftables.icmp_type_name(1, "inet") is None
    assert pftables.icmp_code_name(1, 2, "inet6") == "beyond-unr"
    assert pftables.icmp_code_name(3, 13, "inet") == "filter-prohib"
    assert pftables.icmp_code_number(5, "redir-tos-host", "inet") == 3
    assert pftables.unreach_code_name("admin-unr", "inet6") == "admin-unr"
    assert pftables.unreach_code_name("99", "inet") == "99"
    assert pftables.tos_number("0x1F") == 0x1F
    assert pftables.tos_number(256) is None
    names = [n for n, _ in pftables.ICMP_TYPES]
    assert len(names) == len(set(names)) == 25


AUTOMATIC = re.compile(r"<__automatic_[\d_]*>")
# Lines our pf.conf path prints wrong, each with its cause: the test fails
# when the list goes stale (fixed, or a new wrong line).
KNOWN_WRONG: dict[tuple[str, str], str] = {}


def test_pfconf_path_prints_what_pfctl_printed():
    """Every regress pfN.in rule the printer covers, read from pf.conf and
    expanded, is the line of pfN.ok pfctl printed for it."""
    covered, wrong = 0, set()
    for stem in (c for c in cases("pf[0-9]*.in") if "." not in c):
        try:
            rs = expanded(stem)
        except Exception:   # test_regress reports these
            continue
        ours, theirs = reachable(rs.rules, rs.loaded), printed(stem).rules
        if len(ours) != len(theirs):
            continue
        for a, b in zip(ours, theirs, strict=True):
            line = b.text.strip()
            if a.printed is None or not line.startswith(
                    ("pass", "block", "match")):
                continue
            covered += 1
            if AUTOMATIC.sub("<__automatic_>", a.printed) != \
                    AUTOMATIC.sub("<__automatic_>", line):
                wrong.add((stem, line))
    assert wrong == set(KNOWN_WRONG)
    assert covered >= 858


def test_printed_lines_read_back_to_themselves():
    """A line the printer made from a pf.conf (pfN.in, pfoptN.in) parses
    as pfctl's listing and prints the same again."""
    count = 0
    for stem in (c for c in cases("pf*.in") if "." not in c):
        try:
            rules = expanded(stem).rules
        except Exception:   # pfailN cases: test_regress reports these
            continue
        for rule in rules:
            if rule.printed is not None:
                count += 1
                assert reprinted(rule.printed) == rule.printed, stem
    assert count >= 891


def test_set_block_policy_is_taken_by_later_plain_blocks():
    """parse.y's blockpolicy (pf31): a block naming no policy after `set
    block-policy return` returns; one naming drop, or before it, drops."""
    from pflowbsd.rules.pfconf import parse_pfconf
    rs = parse_pfconf("block in all\nset block-policy return\nblock in all\n"
                      "block drop in all\nset block-policy drop\nblock in all\n")
    assert [r.printed for r in rs.rules] == [
        "block drop in all", "block return in all", "block drop in all", "block drop in all"]
