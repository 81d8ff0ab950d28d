"""timeouts: pf's timeout class from the state pair, and the last packet from `expires in`."""

import pytest

from pflowbsd.pf.states import parse_states
from pflowbsd.pf.timeouts import (
    DEFAULTS,
    Policy,
    effective,
    parse_boottime,
    parse_info,
    parse_timeouts,
    timeout_class,
)
from tests.support.pftext import record

ST_OPENBSD = """tcp.first                   120s
tcp.opening                  30s
tcp.established            3600s
tcp.closing                 900s
tcp.finwait                  45s
tcp.closed                   90s
tcp.tsdiff                   30s
udp.first                    60s
udp.single                   30s
udp.multiple                 60s
icmp.first                   20s
icmp.error                   10s
other.first                  60s
other.single                 30s
other.multiple               60s
frag                         60s
interval                     10s
adaptive.start             6000 states
adaptive.end              12000 states
src.track                     0s
"""

SI = """Status: Enabled for 3 days 04:05:06              Debug: err

Hostid:   0x1a2b3c4d
Checksum: 0x3bd1e0f5c24a7a54b1e2c0a7f6a4e9d1

State Table                          Total             Rate
  current entries                       42               
  half-open tcp                          0               
  searches                          123456           24.6/s
"""


def one(head, **kw):
    table = parse_states(record(head, **kw))
    assert not table.errors, table.errors
    return table.states[0]


def test_parse_timeouts_over_defaults():
    t = parse_timeouts(ST_OPENBSD)
    assert t["tcp.established"] == 3600 and t["adaptive.start"] == 6000
    assert t["sctp.first"] == DEFAULTS["sctp.first"]  # not printed by OpenBSD: default
    assert parse_timeouts("") == DEFAULTS


def test_parse_info():
    info = parse_info(SI)
    assert (info.hostid, info.checksum, info.states) == (
        "1a2b3c4d", "3bd1e0f5c24a7a54b1e2c0a7f6a4e9d1", 42)
    assert parse_info("Status: Disabled\n").hostid is None


@pytest.mark.parametrize("text,want", [
    ("1700000000\n", 1700000000),
    ("{ sec = 1700000123, usec = 456 } Tue Nov 14 22:15:23 2023\n", 1700000123),
    ("garbage", None),
])
def test_boottime(text, want):
    assert parse_boottime(text) == want


OUT = "all tcp 10.0.0.5:50000 -> 93.184.216.34:443       "
IN = "em0 tcp 192.0.2.1:22 <- 198.51.100.7:53311       "


@pytest.mark.parametrize("head,pkts,want", [
    (OUT + "SYN_SENT:CLOSED", "1:0", "tcp.first"),
    (OUT + "SYN_SENT:CLOSED", "1:1", "tcp.first"),  # SYN answered by an ICMP error
    (OUT + "SYN_SENT:CLOSED", "2:0", "tcp.opening"),
    (OUT + "ESTABLISHED:SYN_SENT", "2:1", "tcp.opening"),
    (OUT + "ESTABLISHED:ESTABLISHED", "9:9", "tcp.established"),
    (OUT + "FIN_WAIT_1:ESTABLISHED", "9:9", "tcp.established"),
    (OUT + "CLOSING:ESTABLISHED", "9:9", "tcp.closing"),
    (OUT + "CLOSING:CLOSING", "9:9", "tcp.finwait"),
    (OUT + "FIN_WAIT_2:CLOSING", "9:9", "tcp.finwait"),
    (OUT + "FIN_WAIT_2:FIN_WAIT_2", "9:9", "tcp.closed"),
    (OUT + "TIME_WAIT:TIME_WAIT", "9:9", "tcp.closed"),
    (OUT + "PROXY:SRC", "1:0", "tcp.first"),
    (OUT + "<BAD STATE LEVELS 14:4>", "1:0", None),
    # in states print responder:initiator
    (IN + "CLOSED:SYN_SENT", "1:0", "tcp.first"),
    (IN + "CLOSING:ESTABLISHED", "9:9", "tcp.closing"),
    ("all udp 10.0.0.5:41000 -> 9.9.9.9:53       SINGLE:NO_TRAFFIC", "1:0", "udp.first"),
    ("all udp 10.0.0.5:41000 -> 9.9.9.9:53       SINGLE:NO_TRAFFIC", "1:1", "udp.first"),
    ("all udp 10.0.0.5:41000 -> 9.9.9.9:53       SINGLE:NO_TRAFFIC", "2:0", "udp.single"),
    ("all udp 10.0.0.5:41000 -> 9.9.9.9:53       MULTIPLE:SINGLE", "1:1", "udp.single"),
    ("all udp 10.0.0.5:41000 -> 9.9.9.9:53       MULTIPLE:MULTIPLE", "2:2", "udp.multiple"),
    ("all udp 172.17.1.255:1947 <- 172.17.1.47:52339       NO_TRAFFIC:SINGLE", "1:0", "udp.first"),
    ("all icmp 10.0.0.5:47829 -> 8.8.8.8:8       0:0", "1:0", "icmp.first"),
    ("all icmp 10.0.0.5:47829 -> 8.8.8.8:8       0:0", "1:1", "icmp.error"),
    ("all gre 10.0.0.5 -> 198.51.100.9       MULTIPLE:MULTIPLE", "5:5", "other.multiple"),
    ("all sctp 10.0.0.5:5000 -> 10.0.0.9:5001       ESTABLISHED:ESTABLISHED", "5:5", "sctp.established"),
    ("all sctp 10.0.0.5 -> 10.0.0.9       MULTIPLE:MULTIPLE", "5:5", "other.multiple"),
])
def test_timeout_class(head, pkts, want):
    assert timeout_class(one(head, pkts=pkts)) == want


def test_effective_adaptive():
    assert effective(86400, 100, 60000, 120000) == 86400
    assert effective(86400, 90000, 60000, 120000) == 43200
    assert effective(86400, 120000, 60000, 120000) == 0
    assert effective(30, 10, 0, 0) == 30


def test_last_packet_from_expires_in():
    policy = Policy(dict(DEFAULTS))
    st = one(OUT + "ESTABLISHED:ESTABLISHED", expires="23:59:00")  # 60 s idle
    assert policy.last_packet(st, 10_000.0, 10) == (10_000.0 - 60, True)
    st = one("all udp 10.0.0.5:41000 -> 9.9.9.9:53       MULTIPLE:MULTIPLE", expires="00:00:45")
    assert policy.last_packet(st, 500.0, 10) == (485.0, True)


def test_last_packet_scales_adaptively():
    t = parse_timeouts(ST_OPENBSD)  # adaptive 6000..12000, established 3600
    st = one(OUT + "ESTABLISHED:ESTABLISHED", expires="00:29:00")
    # 9000 states: T_eff = 3600 * 3000 / 6000 = 1800; 1740 left -> 60 s idle
    assert Policy(t).last_packet(st, 10_000.0, 9000) == (9940.0, True)


class Rule:
    def __init__(self, **timeouts):
        self.timeouts = timeouts


def test_last_packet_uses_the_rules_own_timeout():
    st = one(OUT + "ESTABLISHED:ESTABLISHED", expires="00:09:00")
    policy = Policy(dict(DEFAULTS), rule_of=lambda s: Rule(**{"tcp.established": 600}))
    assert policy.last_packet(st, 1000.0, 10) == (940.0, True)


def test_unknown_class_falls_back_to_the_poll():
    st = one(OUT + "<BAD STATE LEVELS 14:4>")
    assert Policy(dict(DEFAULTS)).last_packet(st, 1234.0, 1) == (1234.0, False)


def test_freebsd_netlink_expire_quirk_reads_as_expired():
    # past expiry, not yet purged: FreeBSD prints the absolute uptime (10 days here)
    st = one("all udp 10.0.0.5:41000 -> 9.9.9.9:53       MULTIPLE:MULTIPLE", expires="240:00:03")
    assert Policy(dict(DEFAULTS)).last_packet(st, 864_003.0, 10) == (864_003.0 - 60, True)


def test_icmp_first_when_more_left_than_icmp_error_allows():
    st = one("all icmp 10.0.0.5:47829 -> 8.8.8.8:8       0:0", pkts="1:1", expires="00:00:15")
    assert Policy(dict(DEFAULTS)).last_packet(st, 100.0, 1) == (95.0, True)
