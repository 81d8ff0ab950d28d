"""pflowbsd.export: pflow(4)'s buffering, counting and timing, checked on our own decode."""

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pflowbsd.export import ipfix
from pflowbsd.export.exporter import Exporter
from tests.support.flowcases import BOOT, M, at, decode_ipfix, decode_v5, ip4, state

# --- NetFlow v5 ------------------------------------------------------------------------


def test_v5_one_state_gives_flow1_then_flow2_in_one_datagram():
    x = Exporter(proto=5)
    f1, f2 = state()
    assert x.start(at(100)) == []
    assert x.export_state(f1, f2, at(100)) == []
    [d] = x.flush(at(101.7))
    head, recs = decode_v5(d)
    assert abs(head.pop("nsec") - 200_000_000) < 1000  # a double holds ~0.2 us at 1.7e9 s
    assert head == dict(count=2, uptime=101_000, sec=BOOT + 102, seq=0)
    assert [(r["src"], r["sport"], r["octets"], r["packets"]) for r in recs] == [
        (f1.src, f1.src_port, 1000, 10),
        (f2.src, f2.src_port, 2000, 20),
    ]
    assert (recs[0]["if_in"], recs[0]["if_out"], recs[1]["if_in"], recs[1]["if_out"]) == (3, 4, 4, 3)
    assert x.stats == dict(flows=2, datagrams=1, templates=0, skipped_v6=0, split_records=0, split_clamped=0)


@pytest.mark.parametrize("b0,b1,p0,p1,want", [
    (1000, 0, 10, 5, [1000]),  # a reply with packets but no bytes is not a record
    (0, 2000, 0, 20, [2000]),
    (0, 0, 3, 3, []),
    (1000, 2000, 0, 0, [1000, 2000]),  # the test is on bytes, not packets
])  # fmt: skip
@pytest.mark.parametrize("proto", [5, 10])
def test_zero_byte_directions_send_nothing(b0, b1, p0, p1, want, proto):
    x = Exporter(proto=proto)
    x.export_state(*state(b0=b0, b1=b1, p0=p0, p1=p1), at(10))
    out = x.flush(at(11))
    octets = [r["octets"] for d in out for r in decode_v5(d)[1]] if proto == 5 else \
        [r[5] for d in out for r in decode_ipfix(d)[1]]  # fmt: skip
    assert octets == want
    assert x.stats["flows"] == len(want)
    if not want:
        assert out == [] and x.next_deadline() is None


def test_v5_skips_ipv6_and_counts_it():
    x = Exporter(proto=5)
    assert x.export_state(*state(af=socket.AF_INET6), at(10)) == []
    assert x.flush(at(11)) == [] and x.next_deadline() is None
    assert x.stats["skipped_v6"] == 1 and x.stats["flows"] == 0


def test_v5_31_records_make_two_datagrams_and_sequence_counts_records():
    x = Exporter(proto=5)
    sent = []
    for i in range(16):  # 32 records
        sent += x.export_state(*state(i), at(10 + i))
    assert len(sent) == 1  # full at record 30, inside the 15th state
    head, recs = decode_v5(sent[0])
    assert head["count"] == 30 and head["seq"] == 0 and head["uptime"] == 24_000
    [rest] = x.flush(at(40))
    head2, recs2 = decode_v5(rest)
    assert head2["count"] == 2 and head2["seq"] == 30
    assert [r["src"] for r in recs2] == [ip4(30), ip4(31)]


def test_v5_state_straddles_two_datagrams():
    x = Exporter(proto=5, mtu=24 + 28 + 3 * 48)  # 3 records a datagram
    assert x.export_state(*state(1), at(1)) == []
    [full] = x.export_state(*state(2), at(2))  # flow1 of state 2 fills the buffer
    [last] = x.flush(at(3))
    assert [r["src"] for r in decode_v5(full)[1]] == [ip4(2), ip4(3), ip4(4)]
    assert [r["src"] for r in decode_v5(last)[1]] == [ip4(5)]
    assert decode_v5(last)[0]["seq"] == 3


@pytest.mark.parametrize("b0,b1,want", [
    (2 * M + 10, 500, [(0, M), (0, M), (0, 10), (1, 500)]),
    (700, M + 1, [(1, M), (0, 700), (1, 1)]),
    (M + 5, 3 * M, [(0, M), (1, M), (1, M), (0, 5), (1, M)]),
    (M, 0, [(0, M)]),
])  # fmt: skip
def test_v5_split_above_4gib(b0, b1, want):
    x = Exporter(proto=5)
    x.export_state(*state(b0=b0, b1=b1, p0=(1 << 32) + 7, p1=9), at(1))
    [d] = x.flush(at(2))
    head, recs = decode_v5(d)
    f1, _ = state()
    got = [(0 if r["src"] == f1.src else 1, r["octets"]) for r in recs]
    assert got == want
    assert all(r["packets"] == (7 if r["src"] == f1.src else 9) for r in recs)  # never split
    assert x.stats["split_records"] == len(want) - (b0 > 0) - (b1 > 0)
    assert x.stats["flows"] == len(want)
    x.export_state(*state(b0=1, b1=0), at(3))
    assert decode_v5(x.flush(at(4))[0])[0]["seq"] == len(want)  # split records count


@pytest.mark.parametrize("mtu,per", [(500, 9), (72, 1), (100, 1), (1491, 29), (5000, 30), (2048, 30)])
def test_v5_mtu_limits(mtu, per):
    x = Exporter(proto=5, mtu=mtu)
    sent = []
    for i in range(20):
        sent += x.export_state(*state(i), at(1))
    sent += x.flush(at(2))
    assert [decode_v5(d)[0]["count"] for d in sent][:-1] == [per] * (40 // per - (40 % per == 0))
    assert sum(decode_v5(d)[0]["count"] for d in sent) == 40
    assert all(len(d) + 28 <= max(mtu, 100) for d in sent[:-1]) or mtu > 2048


@pytest.mark.parametrize("mtu", [0, 71, -5])
def test_mtu_below_the_kernel_minimum_is_refused(mtu):
    with pytest.raises(ValueError):
        Exporter(mtu=mtu)


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError):
        Exporter(proto=9)


def test_v5_hold_is_30_s_of_uptime_from_the_first_record():
    x = Exporter(proto=5)
    x.export_state(*state(1), at(100.25))
    assert x.next_deadline() == 130.25
    x.export_state(*state(2), at(125))  # does not re-arm
    assert x.next_deadline() == 130.25
    assert x.due(at(130.2)) == []
    [d] = x.due(at(131.9))
    head, recs = decode_v5(d)
    assert head["count"] == 4 and head["uptime"] == 131_000
    assert x.next_deadline() is None and x.due(at(500)) == []
    x.export_state(*state(3), at(600))
    assert x.next_deadline() == 630


def test_v5_uptime_ms_wraps_mod_2_32():
    x = Exporter(proto=5)
    up = 4_294_968 + 17  # just past 2^32 ms
    x.export_state(*state(start=(up - 5) * 1000, end=(up - 1) * 1000), at(up))
    [d] = x.flush(at(up))
    head, recs = decode_v5(d)
    assert head["uptime"] == (up * 1000) % 2**32
    assert recs[0]["start"] == ((up - 5) * 1000) % 2**32
    assert recs[0]["finish"] == ((up - 1) * 1000) % 2**32


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * M), st.integers(0, 3 * M)), max_size=40),
       st.sampled_from([72, 300, 1500]))  # fmt: skip
def test_v5_sequence_is_records_before_each_datagram(octets, mtu):
    x = Exporter(proto=5, mtu=mtu)
    sent = []
    for i, (b0, b1) in enumerate(octets):
        sent += x.export_state(*state(i, b0=b0, b1=b1), at(i))
    sent += x.flush(at(1000))
    total = 0
    for d in sent:
        head, _ = decode_v5(d)
        assert head["seq"] == total
        total += head["count"]
    assert total == x.stats["flows"]
    assert x.stats["datagrams"] == len(sent)


# --- IPFIX ----------------------------------------------------------------------------


def test_ipfix_start_sends_templates_and_arms_the_refresh():
    x = Exporter(proto=10, domain=7)
    [t] = x.start(at(50))
    head, _ = decode_ipfix(t)
    assert head == dict(export=BOOT + 50, seq=0, domain=7, set_id=2) and len(t) == 124
    assert x.next_deadline() == 80
    assert x.due(at(79)) == []
    [t2] = x.due(at(80))
    assert t2 == ipfix.message(ipfix.template_set([256, 257]), at(80), 0, 7)
    [t3] = x.due(at(140))  # late: one template, re-armed from now
    assert decode_ipfix(t3)[0]["set_id"] == 2 and x.next_deadline() == 170
    assert x.stats["templates"] == 3 and x.stats["datagrams"] == 3


def test_ipfix_template_interval_is_configurable():
    x = Exporter(proto=10, tmpl_interval=600)
    x.start(at(0))
    assert x.next_deadline() == 600


def test_ipfix_v4_and_v6_have_separate_buffers_timers_and_a_shared_sequence():
    x = Exporter(proto=10)
    x.start(at(0))
    x.export_state(*state(1), at(1))  # 2 IPv4 records, timer at 31
    x.export_state(*state(2, b1=0), at(2))  # 1 more IPv4
    sent = []
    for i in range(9):  # 18 IPv6 records fill the IPv6 message
        sent += x.export_state(*state(10 + i, af=socket.AF_INET6), at(5))
    [v6] = sent
    head, recs = decode_ipfix(v6)
    assert head["set_id"] == 257 and head["seq"] == 0 and len(recs) == 18
    x.export_state(*state(30, af=socket.AF_INET6), at(20))  # new IPv6 buffer, timer at 50
    assert x.next_deadline() == 30  # the template refresh comes first
    tmpl, v4 = x.due(at(31))
    assert decode_ipfix(tmpl)[0] == dict(export=BOOT + 31, seq=18, domain=42, set_id=2)
    head4, recs4 = decode_ipfix(v4)
    assert head4["set_id"] == 256 and head4["seq"] == 18 and len(recs4) == 3
    assert x.next_deadline() == 50
    [v6b] = x.flush(at(40))
    assert decode_ipfix(v6b)[0]["seq"] == 21 and len(decode_ipfix(v6b)[1]) == 2
    [t] = x.due(at(61))
    assert decode_ipfix(t)[0]["seq"] == 23  # templates carry it, never advance it


def test_ipfix_flush_sends_ipv4_before_ipv6_and_nothing_when_empty():
    x = Exporter(proto=10, nat=True)
    x.export_state(*state(1, af=socket.AF_INET6, nat=True), at(1))
    x.export_state(*state(2, af=socket.AF_INET6), at(1))
    x.export_state(*state(3, nat=True), at(1))
    x.export_state(*state(4), at(1))
    assert [decode_ipfix(d)[0]["set_id"] for d in x.flush(at(2))] == [256, 258, 257, 259]
    assert x.flush(at(3)) == [] and x.next_deadline() is None  # start() was not called


@pytest.mark.parametrize("af,per", [(socket.AF_INET, 26), (socket.AF_INET6, 18)])
@pytest.mark.parametrize("mtu", [1500, 700, 2048, 9000])
def test_ipfix_records_per_message(af, per, mtu):
    per = min(30, (min(mtu, 2048) - 44) // (54 if af == socket.AF_INET else 78))
    x = Exporter(proto=10, mtu=mtu)
    sent = []
    for i in range(per):
        sent += x.export_state(*state(i, af=af, b1=0), at(1))
    assert len(sent) == 1 and len(decode_ipfix(sent[0])[1]) == per


def test_ipfix_counters_are_64_bit_and_never_split():
    x = Exporter(proto=10)
    x.export_state(*state(b0=5 * M, b1=2**63 + 1, p0=2**40), at(1))
    [d] = x.flush(at(2))
    recs = decode_ipfix(d)[1]
    assert [(r[4], r[5]) for r in recs] == [(2**40, 5 * M), (20, 2**63 + 1)]
    assert x.stats["split_records"] == 0


def test_ipfix_record_times_are_taken_at_export_not_at_send():
    x = Exporter(proto=10)
    x.export_state(*state(start=5_000, end=9_000), at(100))
    [d] = x.due(at(130))
    head, recs = decode_ipfix(d)
    assert head["export"] == BOOT + 130
    assert (recs[0][6], recs[0][7]) == ((BOOT + 5) * 1000, (BOOT + 9) * 1000)


def test_nat_uses_its_own_templates_buffers_and_timers():
    x = Exporter(proto=10, nat=True)
    [t] = x.start(at(0))
    assert ipfix.SET_HEADER.unpack_from(t, 16) == (2, 244)
    x.export_state(*state(1), at(1))
    x.export_state(*state(2, nat=True), at(5))
    x.export_state(*state(3, nat=True, af=socket.AF_INET6), at(6))
    assert [decode_ipfix(d)[0]["set_id"] for d in x.due(at(31))] == [2, 256]
    assert x.next_deadline() == 35
    out = x.due(at(36))
    assert [decode_ipfix(d)[0]["set_id"] for d in out] == [258, 259]
    nat4 = decode_ipfix(out[0])[1]
    f1, f2 = state(2, nat=True)
    assert nat4[0][8:12] == (f1.nat_src, f1.nat_dst, f1.nat_src_port, f1.nat_dst_port)
    assert nat4[1][8:12] == (f2.nat_src, f2.nat_dst, f2.nat_src_port, f2.nat_dst_port)


def test_without_nat_translated_states_use_the_plain_templates():
    x = Exporter(proto=10)
    [t] = x.start(at(0))
    assert len(t) == 124
    x.export_state(*state(2, nat=True), at(5))
    [d] = x.flush(at(6))
    assert decode_ipfix(d)[0]["set_id"] == 256
