"""pflowbsd.export.v5: the NetFlow v5 layouts and copy_flow_data's field rules."""

import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pflowbsd import flows
from pflowbsd.export import v5
from pflowbsd.flows import Clock, Flow

A = bytes([192, 0, 2, 1])
B = bytes([198, 51, 100, 7])


def flow(**kw):
    base = dict(af=socket.AF_INET, src=A, dst=B, src_port=40001, dst_port=443, proto=6,
                packets=10, octets=1000, start=5000, end=9000)  # fmt: skip
    base.update(kw)
    return Flow(**base)


def unpack_record(data: bytes) -> dict:
    names = ["src_ip", "dest_ip", "nexthop_ip", "if_index_in", "if_index_out", "flow_packets", "flow_octets", "flow_start", "flow_finish", "src_port", "dest_port", "pad1", "tcp_flags", "protocol", "tos", "src_as", "dest_as", "src_mask", "dest_mask", "pad2"]  # fmt: skip
    return dict(zip(names, v5.RECORD.unpack(data)))


def test_layout_sizes_match_the_kernel_structs():
    assert v5.HEADER.size == 24
    assert v5.RECORD.size == 48


def test_record_offsets_match_struct_pflow_flow():
    data = v5.pack_record(flow(if_in=0x0102, if_out=0x0304, packets=0x0A0B0C0D, octets=0x11121314,
                               start=0x21222324, end=0x31323334, src_port=0x4142,
                               dst_port=0x5152, proto=0x61, tos=0x71))  # fmt: skip
    assert data[0:4] == A and data[4:8] == B
    assert data[8:12] == bytes(4)  # nexthop
    assert data[12:14] == b"\x01\x02" and data[14:16] == b"\x03\x04"
    assert data[16:20] == b"\x0a\x0b\x0c\x0d"
    assert data[20:24] == b"\x11\x12\x13\x14"
    assert data[24:28] == b"\x21\x22\x23\x24"
    assert data[28:32] == b"\x31\x32\x33\x34"
    assert data[32:34] == b"\x41\x42" and data[34:36] == b"\x51\x52"
    assert data[36:38] == bytes(2)  # pad1, tcp_flags
    assert data[38] == 0x61 and data[39] == 0x71
    assert data[40:48] == bytes(8)  # AS, masks, pad2


def test_packets_keep_the_low_32_bits_as_htonl_does():
    rec = unpack_record(v5.pack_record(flow(packets=(5 << 32) + 7)))
    assert rec["flow_packets"] == 7


def test_octets_override_is_used_for_split_records():
    rec = unpack_record(v5.pack_record(flow(octets=10**10), octets=123))
    assert rec["flow_octets"] == 123


@pytest.mark.parametrize(
    "start,end,want",
    [
        (5000, 9000, (5000, 9000)),
        (-1000, 9000, (0, 9000)),  # created before this machine booted (pfsync)
        (10000, 9000, (0, 9000)),  # creation after the last packet
        (-5000, -1000, (0, 0)),
        (0, 0, (0, 0)),
        (2**32 + 5000, 2**32 + 9000, (5000, 9000)),  # ms wrap every ~49.7 days
    ],
)
def test_flow_times_apply_the_kernel_guards(start, end, want):
    rec = unpack_record(v5.pack_record(flow(start=start, end=end)))
    assert (rec["flow_start"], rec["flow_finish"]) == want


def test_header_fields():
    now = Clock(wall=1_700_000_123.25, up=86_400.9)
    version, count, uptime, sec, nsec, seq, etype, eid, sampling = v5.HEADER.unpack(
        v5.pack_header(17, now, 4242)
    )
    assert (version, count, seq, etype, eid, sampling) == (5, 17, 4242, 42, 42, 0)
    assert uptime == 86_400_000  # whole seconds only, as getuptime() * 1000
    assert sec == 1_700_000_123
    assert nsec == 250_000_000


def test_header_uptime_and_sequence_wrap_mod_2_32():
    up = 50 * 86400  # past the ~49.7 day wrap
    _, _, uptime, sec, _, seq, *_ = v5.HEADER.unpack(v5.pack_header(1, Clock(2.0**32 + 5, up), 2**32 + 3))
    assert uptime == (up * 1000) % 2**32
    assert sec == 5 and seq == 3


@pytest.mark.parametrize("mtu,want", [(1500, 30), (1492, 30), (1491, 29), (72, 0), (100, 1), (2048, 30), (500, 9)])
def test_maxcount(mtu, want):
    assert v5.maxcount(mtu) == want


def test_split_fast_path_is_one_pack():
    assert list(v5.split_octets(0xFFFFFFFE, 5)) == [(0xFFFFFFFE, 5)]


def test_split_exactly_maxbytes_takes_the_slow_path_with_no_chunk():
    assert list(v5.split_octets(0xFFFFFFFF, 0)) == [(0xFFFFFFFF, 0)]


def test_split_order_is_direction0_chunks_then_direction1_then_remainders():
    M = 0xFFFFFFFF
    assert list(v5.split_octets(2 * M + 10, M + 3)) == [(M, 0), (M, 0), (0, M), (10, 3)]


@given(st.integers(0, 2**40), st.integers(0, 2**40))  # the kernel loops once per 4 GiB
def test_split_conserves_bytes_and_fits_32_bits(b0, b1):
    parts = list(v5.split_octets(b0, b1))
    assert sum(p[0] for p in parts) == b0
    assert sum(p[1] for p in parts) == b1
    assert all(0 <= x <= v5.MAXBYTES for p in parts for x in p)
    # every chunk record carries one direction only; only the last may carry both
    assert all(0 in p for p in parts[:-1])
    # a direction that had bytes still has them in the final pack (so it is emitted)
    assert (parts[-1][0] != 0) == (b0 != 0) and (parts[-1][1] != 0) == (b1 != 0)


U64 = st.integers(0, (1 << 64) - 1)
COUNT = st.one_of(st.integers(0, 3), st.integers(0, 1 << 33), U64)  # zero, split, huge


@st.composite
def entries(draw):
    """A tracker entry as flows.ENTRY packs it: IPv4 or IPv6, NATted or not, any
    counters (zero, past PFLOW_MAXBYTES) and times (before boot, ending before the start,
    as far as an entry holds: their milliseconds wrap at 32 bits)."""
    from pflowbsd.flows import ENTRY, INET6, NAT_PORTS, NATTED, TIME_MAX

    n = 16 if draw(st.booleans()) else 4
    natted = draw(st.booleans())
    flags = (INET6 if n == 16 else 0) | (NATTED if natted else 0) | draw(st.sampled_from([0, 4]))
    head = ENTRY.pack(flags, draw(st.sampled_from([6, 17, 1])), draw(st.integers(0, 65535)),
                      draw(st.integers(0, 65535)), draw(st.integers(-10, TIME_MAX)),
                      draw(st.integers(-10, TIME_MAX)), draw(U64), draw(U64), draw(COUNT),
                      draw(COUNT), draw(st.integers(0, 65535)), draw(st.integers(0, 65535)))
    body = draw(st.binary(min_size=2 * n, max_size=2 * n))
    if natted:
        body += NAT_PORTS.pack(1, 2) + draw(st.binary(min_size=2 * n, max_size=2 * n))
    return head + body


@settings(max_examples=60, deadline=None)
@given(st.lists(entries(), max_size=4), st.sampled_from([5, 10]),
       st.sampled_from([1500, 72, 160, 9000]))
def test_export_entries_sends_what_export_state_of_the_flow_pair_sends(batch, proto, mtu):
    """The pipeline's shortcut (v5.entry_records: no Flow made; a datagram's worth of
    records at a time) is only a shortcut: the same datagrams and the same statistics
    as the flows' own path, at any MTU (at 72 a v5 datagram holds no record: each
    leaves alone)."""
    from pflowbsd.export.exporter import Exporter
    from pflowbsd.flows import flow_pair

    now = Clock(1.7e9, 500.0)
    short, full = Exporter(proto=proto, mtu=mtu), Exporter(proto=proto, mtu=mtu)
    got = short.export_entries(batch, now) + short.flush(now)
    want = [d for e in batch for d in full.export_state(*flow_pair(e), now)] + full.flush(now)
    assert got == want
    assert short.stats == full.stats


def test_entry_records_leaves_ipv6_and_splits_to_the_full_path():
    from pflowbsd.flows import ENTRY, INET6

    def entry(flags: int, b0: int) -> bytes:
        return ENTRY.pack(flags, 6, 1, 2, 0, 1, 1, 1, b0, 5, 0, 0) + bytes(32)

    assert v5.entry_records(entry(INET6, 5)) is None
    assert v5.entry_records(entry(0, v5.MAXBYTES)) is None
    assert len(v5.entry_records(entry(0, v5.MAXBYTES - 1)) or []) == 2


def c_packer() -> None:
    """Skip unless export/_v5pack.c built (fail under PFLOWBSD_REQUIRE_PEERS=1)."""
    if v5.run_c is None:
        if os.environ.get("PFLOWBSD_PURE") == "1":
            pytest.skip("PFLOWBSD_PURE=1")
        message = "pflowbsd.export._v5pack did not build (pip install -e . with a C compiler)"
        if os.environ.get("PFLOWBSD_REQUIRE_PEERS") == "1":
            pytest.fail(message + " (PFLOWBSD_REQUIRE_PEERS=1)")
        pytest.skip(message)


@settings(max_examples=300, deadline=None)
@given(st.lists(entries() | st.binary(max_size=70), max_size=8))
def test_the_c_packer_packs_what_entry_records_packs(batch):
    """run() gives entry_records()' records for each entry it takes, and stops at each
    one entry_records() leaves to the full path (or that is no entry at all)."""
    c_packer()
    out: list[bytes] = []
    want: list[bytes] = []
    i = 0
    while i < len(batch):
        i = v5.run_c(batch, i, out)  # type: ignore[misc]
        if i < len(batch):
            if len(batch[i]) >= flows.ENTRY.size + 8:
                assert v5.entry_records(batch[i]) is None  # IPv6, or a split
            i += 1
    for e in batch:
        if len(e) >= flows.ENTRY.size + 8 and (recs := v5.entry_records(e)) is not None:
            want += recs
    assert out == want
    assert v5.run_c(batch, len(batch), []) == len(batch)


def test_the_c_packer_is_taken_for_the_layouts_it_packs(monkeypatch):
    """The exporter uses run() (else the test above would test an unused path), and
    only while v5.RECORD and flows.ENTRY are the layouts it was written for."""
    c_packer()
    from pflowbsd.export import _v5pack
    from pflowbsd.export.exporter import Exporter

    assert (v5.RECORD.format, flows.ENTRY.format, flows.INET6, v5.MAXBYTES) == _v5pack.LAYOUT
    calls = []
    monkeypatch.setattr(v5, "run_c", lambda *a: calls.append(a[1]) or _v5pack.run(*a))
    e = flows.ENTRY.pack(0, 6, 1, 2, 0, 1, 1, 1, 5, 5, 0, 0) + bytes(8)
    Exporter(proto=5).export_entries([e, e], Clock(1.7e9, 500.0))
    assert calls == [0]


def test_the_c_packer_on_a_golden_table_s_entries(monkeypatch):
    """Every entry a golden table leaves the tracker (IPv4 and IPv6, translated or not),
    exported through both packers: the same datagrams."""
    c_packer()
    from pflowbsd.export.exporter import Exporter
    from pflowbsd.tracker import Tracker
    from tests.unit.test_tracker_paths import golden_polls

    t = Tracker(select=lambda st: True)
    t.update(*golden_polls()[0])
    entries = [e for e in t.entries.values() if e is not None]
    assert len(entries) > 1000 and any(e[0] & flows.INET6 for e in entries)
    now = Clock(1.7e9, 2000.0)
    fast, plain = Exporter(proto=5), Exporter(proto=5)
    got = fast.export_entries(entries, now) + fast.flush(now)
    monkeypatch.setattr(v5, "run_c", None)
    want = plain.export_entries(entries, now) + plain.flush(now)
    assert got == want and fast.stats == plain.stats


def test_the_c_packer_refcounts_do_not_leak():
    import sys

    c_packer()
    e = flows.ENTRY.pack(0, 6, 1, 2, 0, 1, 1, 1, 5, 5, 0, 0) + bytes(8)
    batch = [e, e, b"x"]
    from tests.support.leaks import grown

    before = sys.getrefcount(e)

    def rounds(n: int) -> None:
        for _ in range(n):
            out: list[bytes] = []
            assert v5.run_c(batch, 0, out) == 2 and len(out) == 4  # type: ignore[misc]
    kept = grown(rounds)  # a record left behind each round would be ~0.6 MB
    assert sys.getrefcount(e) == before and kept < 50_000
