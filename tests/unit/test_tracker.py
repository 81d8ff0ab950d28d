"""tracker: which states expired between two polls, and the flows they become."""

import socket

from hypothesis import given, settings
from hypothesis import strategies as hs

from pflowbsd.flows import Flow, flow_pair
from pflowbsd.pf.timeouts import DEFAULTS, Policy
from pflowbsd.tracker import Tracker
from tests.support.pftext import record, sid

A4 = socket.AF_INET


def ip(a):
    return socket.inet_pton(socket.AF_INET6 if ":" in a else A4, a)


TCP_OUT = "all tcp 10.0.0.5:50000 -> 93.184.216.34:443       ESTABLISHED:ESTABLISHED"
NAT_OUT = "em0 tcp 203.0.113.2:57342 (192.168.0.2:50000) -> 198.51.100.7:22       ESTABLISHED:ESTABLISHED"
RDR_IN = "em0 tcp 192.168.1.100:8080 (203.0.113.1:80) <- 198.51.100.5:51234       ESTABLISHED:ESTABLISHED"
UDP = "all udp 10.0.0.5:41000 -> 9.9.9.9:53       MULTIPLE:MULTIPLE"


def pairs(up) -> list[tuple[Flow, Flow]]:
    """The flows of the states an update expired."""
    return [flow_pair(e) for e in up.expired]


def tracker(**kw):
    return Tracker(Policy(dict(DEFAULTS)), **kw)


def test_new_quiet_then_expired_with_last_seen_counters():
    t = tracker()
    a = record(TCP_OUT, id=sid(1), age="00:10:00", expires="23:59:30")
    up = t.update(a, 1000.0)
    assert (up.new, up.changed, up.gone, pairs(up)) == (1, 0, 0, [])
    up = t.update(a, 1010.0)
    assert (up.new, up.changed, up.gone) == (0, 0, 0)
    a2 = record(TCP_OUT, id=sid(1), age="00:10:20", expires="23:59:55", pkts="20:30",
                bytes="5000:60000")
    up = t.update(a2, 1020.0)
    assert up.changed == 1
    up = t.update("", 1030.0)
    assert up.gone == 1 and len(pairs(up)) == 1
    f1, f2 = pairs(up)[0]
    assert (f1.src, f1.dst, f1.src_port, f1.dst_port, f1.proto) == (
        ip("10.0.0.5"), ip("93.184.216.34"), 50000, 443, 6)
    assert (f1.packets, f1.octets, f2.packets, f2.octets) == (20, 5000, 30, 60000)
    assert (f2.src, f2.dst, f2.src_port, f2.dst_port) == (f1.dst, f1.src, 443, 50000)
    # First = poll - age; Last = poll - (timeout - expires in), both in ms of uptime
    assert f1.start == (1000 - 600) * 1000
    assert f1.end == (1020 - 5) * 1000
    assert not f1.natted
    assert len(t) == 0


def test_partial_snapshot_expires_nothing():
    t = tracker()
    two = record(TCP_OUT, id=sid(1)) + record(UDP, id=sid(2))
    t.update(two, 100.0)
    for text, complete in [("", False),                     # pfctl failed
                           (two[:-40], True),               # truncated record
                           (record(UDP, id=sid(2))[:-30], True),
                           (record(UDP, id=sid(2)).replace("   id:", "   xx:"), True),
                           (record(TCP_OUT, id=sid(1)).replace(" pkts,", " pktz,") + record(UDP, id=sid(2)), True),
                           (two + record(UDP, id=sid(2)), True)]:   # a state twice
        up = t.update(text, 110.0, complete)
        assert up.partial and pairs(up) == [] and up.gone == 0, text
        assert len(t) == 2
    up = t.update(record(UDP, id=sid(2)), 120.0)
    assert not up.partial and up.gone == 1 and len(pairs(up)) == 1


def test_a_garbage_line_is_reported_and_skipped_the_table_still_counts():
    t = tracker()
    t.update(record(UDP, id=sid(2)) + record(TCP_OUT, id=sid(4)), 100.0)
    up = t.update("\x00\xffjunk\n" + record(UDP, id=sid(2), pkts="99:99", bytes="9999:9999")
                  + record(TCP_OUT, id=sid(3)) + "No ALTQ support in kernel\n", 110.0)
    assert not up.partial and len(up.errors) == 2 and up.errors[0].line == 1
    assert (up.changed, up.new, up.gone) == (1, 1, 1)  # sid(4) really went
    up = t.update("", 120.0)
    got = sorted((f1.packets, f1.octets) for f1, _ in pairs(up))
    assert got == [(10, 1200), (99, 9999)]


def test_broken_records_do_not_hide_updates_of_good_ones():
    t = tracker()
    t.update(record(UDP, id=sid(2)), 100.0)
    up = t.update(record(TCP_OUT, id=sid(5))[:-20] + "\n" + record(UDP, id=sid(2), bytes="9999:9999"),
                  110.0)
    assert up.partial and up.errors and up.changed == 1


def test_nat_out_exports_the_stack_key_with_post_nat_fields():
    t = tracker()
    t.update(record(NAT_OUT, id=sid(5)), 10.0)
    (f1, f2), = pairs(t.update("", 20.0))
    assert (f1.src, f1.src_port, f1.dst, f1.dst_port) == (ip("192.168.0.2"), 50000, ip("198.51.100.7"), 22)
    assert (f1.nat_src, f1.nat_src_port, f1.nat_dst, f1.nat_dst_port) == (
        ip("203.0.113.2"), 57342, ip("198.51.100.7"), 22)
    assert (f2.src, f2.nat_dst, f2.nat_dst_port) == (ip("198.51.100.7"), ip("203.0.113.2"), 57342)


def test_rdr_in_exports_the_wire_key():
    t = tracker()
    t.update(record(RDR_IN, id=sid(6)), 10.0)
    (f1, _f2), = pairs(t.update("", 20.0))
    # in: stack_dst (wire_dst) <- stack_src (wire_src); pflow takes the wire key
    assert (f1.src, f1.src_port, f1.dst, f1.dst_port) == (ip("198.51.100.5"), 51234, ip("203.0.113.1"), 80)
    assert (f1.nat_dst, f1.nat_dst_port) == (ip("192.168.1.100"), 8080)


def test_same_id_other_connection_exports_the_old_one():
    t = tracker()
    t.update(record(TCP_OUT, id=sid(1), pkts="50:50", bytes="9000:9000"), 10.0)
    other = TCP_OUT.replace("50000", "50001")
    up = t.update(record(other, id=sid(1), pkts="60:60", bytes="9999:9999"), 20.0)
    assert len(pairs(up)) == 1 and pairs(up)[0][0].src_port == 50000
    up = t.update(record(TCP_OUT, id=sid(1), pkts="1:0", bytes="60:0"), 30.0)  # counters went down
    assert len(pairs(up)) == 1 and pairs(up)[0][0].src_port == 50001
    assert t.stats["restarted"] == 2


def test_only_selected_states_are_exported():
    t = tracker()
    text = record(TCP_OUT, id=sid(1), extra=", rule 3") + record(UDP, id=sid(2))
    t.update(text, 10.0)
    up = t.update("", 20.0)
    assert up.gone == 2 and len(pairs(up)) == 1 and pairs(up)[0][0].proto == 17
    t = tracker(select=lambda st: True)
    t.update(text, 10.0)
    assert len(pairs(t.update("", 20.0))) == 2


def test_last_is_clamped_between_first_and_the_poll_that_saw_it_gone():
    t = tracker()
    # expires-in larger than tcp.established and not the FreeBSD quirk: Last = poll
    t.update(record(UDP, id=sid(1), age="00:00:05", expires="00:00:59"), 100.0)
    (f1, _), = pairs(t.update("", 110.0))
    assert f1.start == 95_000 and f1.end == 99_000
    t.update(record(UDP, id=sid(2), age="00:00:01", expires="00:00:00"), 100.0)
    (f1, _), = pairs(t.update("", 110.0))
    assert f1.start == 99_000 and f1.end == 99_000  # Last never before First


def test_ipv6_states_are_tracked_and_exported_as_inet6():
    t = tracker()
    t.update(record("all tcp 2001:db8::10[50022] -> 2001:db8:1::1[443]       ESTABLISHED:ESTABLISHED",
                    id=sid(9)), 10.0)
    (f1, _), = pairs(t.update("", 20.0))
    assert f1.af == socket.AF_INET6 and f1.src == ip("2001:db8::10") and f1.dst_port == 443


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.tuples(hs.sets(hs.integers(0, 12), max_size=8), hs.booleans()),
                min_size=1, max_size=8))
def test_exported_exactly_once_when_gone_from_a_complete_snapshot(polls):
    t = tracker()
    alive, exported = set(), []
    for n, (ids, complete) in enumerate(polls):
        text = "".join(record(UDP.replace("41000", str(1000 + i)), id=sid(i)) for i in sorted(ids))
        up = t.update(text, 100.0 + 10 * n, complete)
        got = [f1.src_port - 1000 for f1, _ in pairs(up)]
        exported += got
        if complete:
            assert sorted(got) == sorted(alive - ids)
            alive = set(ids)
        else:
            assert got == []
            alive |= ids
    assert len(exported) == len(set(exported)) or len(polls) > 1


def test_a_corrupt_2_64_counter_is_clamped_not_looped_on():
    from pflowbsd.export.exporter import SPLIT_CAP, Exporter
    from pflowbsd.flows import Clock

    t = tracker()
    t.update(record(UDP, id=sid(1), bytes="18446744073709551615:0"), 10.0)
    (f1, f2), = pairs(t.update("", 20.0))
    e = Exporter(proto=5)
    out = e.export_state(f1, f2, Clock(1e9, 20.0)) + e.flush(Clock(1e9, 20.0))
    assert e.stats["split_clamped"] == 1
    assert e.stats["flows"] == SPLIT_CAP // 0xFFFFFFFF
    assert len(out) == -(-e.stats["flows"] // 30)


class Rule:
    def __init__(self, **timeouts):
        self.timeouts = timeouts


def test_a_reload_takes_the_rule_number_not_the_rules_timeouts():
    # OpenBSD pf_rm_rule(): after `pfctl -f`, old states print no `rule N`, but keep
    # running on their rule's timeouts; Last must still use them.
    rules = {3: Rule(**{"udp.multiple": 300})}
    t = Tracker(Policy(dict(DEFAULTS), rule_of=lambda st: rules.get(st.rule)))
    t.update(record(UDP, id=sid(1), expires="00:04:50"), 100.0)
    t.update(record(UDP, id=sid(1), expires="00:04:30", pkts="20:20", bytes="2400:9600",
                    extra=", pflow"), 200.0)  # reloaded: no rule number any more
    (f1, _), = pairs(t.update("", 210.0))
    assert f1.end == (200 - 30) * 1000  # 300 - 270; the global 60 s would say 140
    assert t.rules == {}


def test_a_bad_address_is_an_error_selected_or_not():
    """An address pf would not print is the record's error, not an entry, in a first
    poll (every record new: the tight admit loop) and later, whether the state is
    selected for export or not."""
    bad = TCP_OUT.replace("93.184.216.34", "93.184.216.340")
    for select in (lambda st: True, lambda st: False):
        t = Tracker(Policy(dict(DEFAULTS)), select=select)
        good = record(UDP, id=sid(2))
        up = t.update(record(bad, id=sid(1)) + good, 100.0)
        assert (up.new, len(up.errors), up.errors[0].line) == (1, 1, 1), up.errors
        assert "bad address" in up.errors[0].reason and len(t) == 1
        up = t.update(good + record(bad, id=sid(3)), 110.0)
        assert (up.new, len(up.errors), up.errors[0].line) == (0, 1, 4) and len(t) == 1
