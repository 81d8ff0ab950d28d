"""simpf: its text is what OpenBSD pfctl prints, and its states behave as pf's do, so that
what the tracker reconstructs from the text (class, Last) is the simulated truth."""

from __future__ import annotations

import re
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pflowbsd.flows import flow_pair
from pflowbsd.pf.states import parse_states
from pflowbsd.pf.timeouts import (
    DEFAULTS,
    ESTABLISHED,
    MULTIPLE,
    NO_TRAFFIC,
    SINGLE,
    Policy,
    parse_boottime,
    parse_info,
    parse_timeouts,
    timeout_class,
)
from pflowbsd.sim import printer, simpf
from pflowbsd.sim.model import Peer, SimState
from pflowbsd.sim.printer import print_state
from pflowbsd.sim.simpf import SimPf, write_record
from pflowbsd.tracker import Tracker

START = 1_700_000_000
ID_LINE = re.compile(r"^   id: .*\n", re.M)


def polls(seed=1, rate=3.0, n=30, step=10, start=START):
    """(sim, text) at every poll, the sim advanced `step` seconds between them."""
    sim = SimPf(seed=seed, rate=rate, start=start)
    for _ in range(n):
        yield sim, sim.states_text()
        sim.advance(sim.now + step)


# --- the printer, against pfctl's own output ------------------------------------------

def tcp_state(direction, wire, stack, levels, seqs, wscales, **kw):
    peers = tuple(Peer(level=lv, isn=seq, sent=0, window=win, wscale=ws)
                  for lv, (seq, win), ws in zip(levels, seqs, wscales))
    s = SimState(id=0x5F3A1C2B00000A1D, proto=6, af="inet", direction=direction,
                 ifname=kw.pop("ifname", "all"), wire=wire, stack=stack, peers=peers, **kw)
    return s


def test_print_state_outbound_nat_is_reference_example():
    # pfctl-formats.md 1.7, the first worked example
    s = tcp_state("out", (("203.0.113.1", 61234), ("93.184.216.34", 443)),
                  (("10.0.0.5", 50000), ("93.184.216.34", 443)), (ESTABLISHED, ESTABLISHED),
                  ((2310457817, 65792), (1904823365, 64256)), (0x88, 0x87), rule=4,
                  pflow=True, created=START - 761, last=START - 2, klass="tcp.established",
                  packets=[1532, 2210], bytes=[98811, 3015523])
    assert print_state(s, START) == (
        "all tcp 203.0.113.1:61234 (10.0.0.5:50000) -> 93.184.216.34:443       "
        "ESTABLISHED:ESTABLISHED\n"
        "   [2310457817 + 65792] wscale 8  [1904823365 + 64256] wscale 7\n"
        "   age 00:12:41, expires in 23:59:58, 1532:2210 pkts, 98811:3015523 bytes, "
        "rule 4, pflow\n")


def test_print_state_inbound_rdr_prints_responder_first():
    # golden openbsd-small-vv style: in state, stack dst (wire dst) <- stack src
    s = tcp_state("in", (("198.51.100.7", 40000), ("203.0.113.1", 80)),
                  (("198.51.100.7", 40000), ("10.0.0.10", 8080)), (9, 4),
                  ((100, 5), (200, 6)), (0, 0x86), rule=7, pflow=False,
                  created=START - 93784, last=START, klass="tcp.closing",
                  packets=[755, 820], bytes=[52857, 205889], ifname="em0")
    assert print_state(s, START) == (
        "em0 tcp 10.0.0.10:8080 (203.0.113.1:80) <- 198.51.100.7:40000       "
        "ESTABLISHED:FIN_WAIT_2\n"
        "   [200 + 6]  [100 + 5]\n"
        "   age 26:03:04, expires in 00:15:00, 755:820 pkts, 52857:205889 bytes, rule 7\n")


def test_print_state_golden_udp_icmp_and_inet6():
    # records of /work/shared/pfctl-golden/openbsd-small-vv.txt (without their id lines)
    udp = SimState(id=1, proto=17, af="inet", direction="out", ifname="all",
                   wire=(("192.168.1.2", 36022), ("9.9.9.9", 53)),
                   stack=(("192.168.1.2", 36022), ("9.9.9.9", 53)), rule=20, pflow=False,
                   created=START - 2, last=START - 2, klass="udp.single",
                   peers=(Peer(SINGLE), Peer(NO_TRAFFIC)), packets=[1, 0], bytes=[72, 0])
    assert print_state(udp, START) == (
        "all udp 192.168.1.2:36022 -> 9.9.9.9:53       SINGLE:NO_TRAFFIC\n"
        "   age 00:00:02, expires in 00:00:28, 1:0 pkts, 72:0 bytes, rule 20\n")
    icmp = SimState(id=2, proto=1, af="inet", direction="out", ifname="em0",
                    wire=(("203.0.113.2", 60123), ("8.8.4.4", 8)),
                    stack=(("192.168.1.2", 35914), ("8.8.4.4", 8)), rule=0, pflow=False,
                    created=START - 60, last=START, klass="icmp.first",
                    packets=[10, 8], bytes=[1200, 4800])
    assert print_state(icmp, START) == (
        "em0 icmp 203.0.113.2:60123 (192.168.1.2:35914) -> 8.8.4.4:8       0:0\n"
        "   age 00:01:00, expires in 00:00:20, 10:8 pkts, 1200:4800 bytes, rule 0\n")
    syn = SimState(id=3, proto=6, af="inet6", direction="out", ifname="all",
                   wire=(("2001:db8:10::5", 49152), ("2001:db8:ffff::1", 443)),
                   stack=(("2001:db8:10::5", 49152), ("2001:db8:ffff::1", 443)), rule=2,
                   pflow=False, created=START - 1, last=START - 1, klass="tcp.opening",
                   peers=(Peer(2, 3827104993, 0, 64800), Peer()), packets=[1, 0],
                   bytes=[80, 0])
    assert print_state(syn, START) == (
        "all tcp 2001:db8:10::5[49152] -> 2001:db8:ffff::1[443]       SYN_SENT:CLOSED\n"
        "   [3827104993 + 64800]  [0 + 1]\n"
        "   age 00:00:01, expires in 00:00:29, 1:0 pkts, 80:0 bytes, rule 2\n")


# --- the simulated table --------------------------------------------------------------

def test_deterministic_for_a_seed_and_across_start_times():
    a = [t for _, t in polls(seed=5, n=12)]
    b = [t for _, t in polls(seed=5, n=12)]
    c = [t for _, t in polls(seed=6, n=12)]
    later = [t for _, t in polls(seed=5, n=12, start=START + 86400 * 40)]
    assert a == b
    assert a != c
    # only the ids (pf's stateid carries the boot time) depend on when the run starts
    assert [ID_LINE.sub("", t) for t in a] == [ID_LINE.sub("", t) for t in later]
    assert a != later


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32), rate=st.floats(0.5, 6))
def test_text_parses_and_matches_the_simulation(seed, rate):
    for sim, text in polls(seed=seed, rate=rate, n=12, step=7):
        table = parse_states(text)
        assert table.errors == []
        assert len(table.states) == len(sim.states)
        up = sim.now - sim.boot
        for parsed, truth in zip(table.states, sim.states.values()):
            assert int(parsed.id, 16) == truth.id and parsed.creatorid == "1a2b3c4d"
            assert parsed.proto == truth.proto and parsed.direction == truth.direction
            assert list(parsed.packets) == truth.packets
            assert list(parsed.bytes) == truth.bytes
            assert parsed.age_s == sim.now - truth.created
            assert parsed.flags["pflow"] == truth.pflow
            # the timeout class and Last as the tracker will infer them
            assert timeout_class(parsed) == truth.klass
            assert parsed.expires_in_s == DEFAULTS[truth.klass] - (sim.now - truth.last)
            last, known = Policy(dict(DEFAULTS)).last_packet(parsed, up, len(table.states))
            assert known and last == truth.last - sim.boot


def test_counters_only_grow_and_removed_states_stay_gone():
    seen: dict[str, tuple] = {}
    gone: set[str] = set()
    prev_time, prev_expiry = None, {}
    for sim, text in polls(seed=2, rate=4, n=40, step=10):
        table = parse_states(text)
        ids = {s.id for s in table.states}
        assert not ids & gone
        for s in table.states:
            if s.id in seen:
                old = seen[s.id]
                assert all(b >= a for a, b in zip(old, (*s.packets, *s.bytes)))
            seen[s.id] = (*s.packets, *s.bytes)
        vanished = set(prev_expiry) - ids
        for sid in vanished:
            # pf purges a state only once it has expired: never before what it showed
            assert prev_expiry[sid] <= sim.now - prev_time
        gone |= vanished
        prev_time, prev_expiry = sim.now, {s.id: s.expires_in_s for s in table.states}
    assert len(gone) > 100 and {int(i, 16) for i in gone} <= set(sim.gone)


def test_table_has_every_kind_of_state():
    kinds = set()
    long_lived = None
    for sim, text in polls(seed=1, rate=3, n=30):
        table = parse_states(text)
        long_lived = long_lived or table.states[0].id
        assert table.states[0].id == long_lived  # lives across the whole run
        for s in table.states:
            kinds.add((s.proto_name, s.af, s.direction, s.nat, s.flags["pflow"]))
            kinds.add(s.state_text)
            kinds.add(s.ifname)
    assert {("tcp", "inet", "out", True, True), ("tcp", "inet", "in", True, True),
            ("tcp", "inet6", "out", False, True), ("tcp", "inet6", "in", False, True),
            ("udp", "inet", "out", False, False), ("udp", "inet6", "out", False, True),
            ("icmp", "inet", "out", True, True), ("ipv6-icmp", "inet6", "out", False, True),
            } <= kinds
    assert {"SYN_SENT:CLOSED", "ESTABLISHED:ESTABLISHED", "FIN_WAIT_2:FIN_WAIT_2",
            "TIME_WAIT:TIME_WAIT", "SINGLE:NO_TRAFFIC", "MULTIPLE:SINGLE",
            "MULTIPLE:MULTIPLE", "0:0", "all", "em0"} <= kinds


def test_udp_and_tcp_levels_follow_pf():
    sim = SimPf(seed=1, rate=0)
    make = lambda kind: sim._open(kind, *simpf.KINDS[kind][1:])
    dns = make("dns")  # the query and its answer
    assert (dns.peers[0].level, dns.peers[1].level, dns.klass) == (MULTIPLE, SINGLE,
                                                                   "udp.single")
    web = simpf.SimState(9, 6, "inet", "out", "all", (("a", 1), ("b", 2)),
                         (("a", 1), ("b", 2)), 1, True, START)
    steps = [(0, "S", "SYN_SENT:CLOSED", "tcp.first"),
             (1, "SA", "ESTABLISHED:SYN_SENT", "tcp.opening"),
             (0, "A", "ESTABLISHED:ESTABLISHED", "tcp.established"),
             (0, "FA", "CLOSING:ESTABLISHED", "tcp.closing"),
             (1, "A", "FIN_WAIT_2:ESTABLISHED", "tcp.closing"),
             (1, "FA", "FIN_WAIT_2:CLOSING", "tcp.finwait"),
             (0, "A", "FIN_WAIT_2:FIN_WAIT_2", "tcp.closed"),
             (1, "RA", "TIME_WAIT:TIME_WAIT", "tcp.closed")]
    for side, flags, pair, klass in steps:
        sim.packet(web, side, flags, 0)
        names = printer.TCP_NAMES
        assert (f"{names[web.peers[0].level]}:{names[web.peers[1].level]}", web.klass) == (
            pair, klass)


def test_side_texts_parse():
    sim = SimPf(seed=1, rate=2)
    sim.advance(sim.now + 30)
    got = parse_timeouts(sim.timeouts_text())
    assert got == DEFAULTS
    assert all(re.fullmatch(r"\S+ +\d+(s| states)", line) and len(line) in (32, 38)
               for line in sim.timeouts_text().splitlines())
    info = parse_info(sim.info_text())
    assert (info.hostid, info.states) == ("1a2b3c4d", len(sim.states))
    assert re.fullmatch(r"[0-9a-f]{32}", info.checksum)
    assert sim.info_text().startswith("Status: Enabled for 3 days 04:05:36 ")


# --- a --record folder, through the real tracker ------------------------------------------

def test_write_record_replays_to_the_simulated_truth(tmp_path):
    sim = write_record(tmp_path, seed=4, rate=3, duration=200, interval=10)
    names = sorted(int(p.stem) for p in tmp_path.glob("*.states"))
    assert names == list(range(START, START + 201, 10)) + [START + 210]
    assert parse_boottime((tmp_path / "boottime").read_text()) == sim.boot
    assert parse_timeouts((tmp_path / "timeouts").read_text()) == DEFAULTS
    assert parse_info((tmp_path / "info").read_text()).hostid == "1a2b3c4d"
    assert (tmp_path / f"{names[-1]}.states").read_text() == ""  # pfctl -F states

    tracker = Tracker(Policy(dict(DEFAULTS)))
    flows = []
    for t in names:
        up = tracker.update((tmp_path / f"{t}.states").read_text(), t - sim.boot)
        assert up.errors == [] and not up.partial
        flows += [flow_pair(e) for e in up.expired]
    # a state born and purged between two polls is never seen (a limit of polling)
    truth = [s for s in sim.gone.values()
             if s.pflow and any(s.created <= t < s.removed for t in names)]
    unseen = [s for s in sim.gone.values() if not any(s.created <= t < s.removed
                                                      for t in names)]
    assert unseen and all(s.removed - s.created < 10 for s in unseen)
    assert len(flows) == len(truth) == tracker.stats["exported"] > 500
    got = {(f1.src, f1.src_port, f1.dst, f1.dst_port, f1.proto, f1.start // 1000):
           (f1.end // 1000, f1.packets, f2.packets, f1.octets, f2.octets) for f1, f2 in flows}
    assert len(got) == len(flows)
    flushed = 0
    for s in truth:
        a, b = s.stack if s.direction == "out" else s.wire  # pflow's key
        fam = socket.AF_INET6 if s.af == "inet6" else socket.AF_INET
        key = (socket.inet_pton(fam, a[0]), a[1], socket.inet_pton(fam, b[0]), b[1],
               s.proto, s.created - sim.boot)
        want = (s.last - sim.boot, *s.packets, *s.bytes)
        if s.removed < names[-1]:  # purged by pf: the last poll saw its final counters
            assert got[key] == want
        else:  # flushed an interval after the last poll: that interval is not seen
            flushed += 1
            assert all(g <= w for g, w in zip(got[key], want))
    assert 0 < flushed < len(truth) // 2


@pytest.mark.parametrize("seed", [1, 2])
def test_flush_empties_the_table(seed):
    sim = SimPf(seed=seed, rate=2)
    sim.advance(sim.now + 50)
    n = len(sim.states)
    assert sim.flush_states() == n > 0
    assert sim.states_text() == "" and all(s.removed == sim.now for s in
                                           list(sim.gone.values())[-n:])
