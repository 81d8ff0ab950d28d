"""The active timeout (tracker.py): random state histories in, the exported spans out.

Each history is a few UDP states, each born at one poll, gaining random packets and
bytes (past 2^32 too) at each later poll, and gone at another.  Whatever the timeout,
the spans of a state sum exactly to its last counters per direction, carry no record
without bytes, never overlap, and decode so from the v5 and IPFIX bytes (v5's split
records repeat the packet count, as the kernel does: counted once per export).
"""

from __future__ import annotations

import struct
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as hs

from pflowbsd import flows
from pflowbsd.export import ipfix, v5
from pflowbsd.export.exporter import Exporter
from pflowbsd.flows import Clock
from pflowbsd.tracker import Tracker
from tests.support.pftext import record, sid

STEP = 10  # seconds between polls
BOOT_WALL = 1_700_000_000


def hms(s: int) -> str:
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def head(n: int) -> str:
    return f"all udp 10.0.0.{n}:{40000 + n} -> 192.0.2.1:53       MULTIPLE:MULTIPLE"


def gains() -> hs.SearchStrategy[tuple[int, int, int, int]]:
    """One poll's gain: packets, and bytes only with packets (every packet has bytes)."""
    def with_bytes(p: tuple[int, int]) -> hs.SearchStrategy[tuple[int, int, int, int]]:
        b = [hs.just(0) if not x else hs.integers(x * 20, x * 20 + 3 * 2**32) for x in p]
        return hs.tuples(hs.just(p[0]), hs.just(p[1]), *b)
    return hs.tuples(hs.sampled_from([0, 0, 1, 7, 5000]),
                     hs.sampled_from([0, 1, 3, 9000])).flatmap(with_bytes)


@hs.composite
def histories(draw: hs.DrawFn) -> list[tuple[int, int, list[tuple[int, int, int, int]]]]:
    """Per state: (born at poll, gone at poll, counters at each poll it is seen)."""
    out = []
    for _ in range(draw(hs.integers(1, 3))):
        born = draw(hs.integers(0, 3))
        gone = draw(hs.integers(born + 1, born + 9))
        total, seen = (0, 0, 0, 0), []
        for _ in range(born, gone):
            g = draw(gains())
            total = tuple(a + b for a, b in zip(total, g, strict=True))
            seen.append(total)
        out.append((born, gone, seen))
    return out


def run(history, secs: int) -> dict[int, list[bytes]]:
    """Every entry the tracker hands out, per state number, in order."""
    tracker = Tracker(select=lambda st: True, active_timeout=secs)
    polls = max(g for _b, g, _s in history) + 1
    got: dict[int, list[bytes]] = {}
    for k in range(polls):
        up_s = 1000 + k * STEP
        text = ""
        for n, (born, gone, seen) in enumerate(history, 1):
            if born <= k < gone:
                c = seen[k - born]
                text += record(head(n), age=hms((k - born) * STEP), expires="00:01:30",
                               pkts=f"{c[0]}:{c[1]}", bytes=f"{c[2]}:{c[3]}",
                               extra=", rule 3, pflow", id=sid(n))
        up = tracker.update(text, up_s)
        for entry in up.active + up.expired:
            n = flows.ENTRY.unpack_from(entry)[2] - 40000
            got.setdefault(n, []).append(entry)
    return got


@settings(max_examples=60, deadline=None)
@given(histories(), hs.sampled_from([0, 5, 15, 25, 60]))
def test_spans_sum_to_the_final_counters_and_never_overlap(history, secs):
    got = run(history, secs)
    for n, (_born, _gone, seen) in enumerate(history, 1):
        entries = got.get(n, [])
        final = seen[-1]
        sums = [sum(flows.entry_counters(e)[i] for e in entries) for i in range(4)]
        assert tuple(sums) == final
        spans = [flows.entry_times(e) for e in entries]
        for (f, last) in spans:
            assert f <= last
        for (_f1, l1), (f2, _l2) in pairwise(spans):
            assert f2 > l1
        for e in entries:
            c = flows.entry_counters(e)
            # no span without bytes; a state exported once and whole may have none
            # (the exporter then makes no record, as pflow_pack_flow)
            assert c[2] or c[3] or len(entries) == 1
            assert (c[2] > 0) <= (c[0] > 0) and (c[3] > 0) <= (c[1] > 0)  # no zero-packet record
        if secs == 0:
            assert len(entries) == 1


def decode_v5(datagrams: list[bytes]) -> list[tuple[int, int, int]]:
    """(src_port, packets, octets) of every v5 record."""
    out = []
    for d in datagrams:
        count = struct.unpack_from("!H", d, 2)[0]
        for i in range(count):
            r = v5.RECORD.unpack_from(d, v5.HEADER.size + i * v5.RECORD.size)
            out.append((r[9], r[5], r[6]))
    return out


def decode_ipfix(datagrams: list[bytes]) -> list[tuple[int, int, int]]:
    out = []
    for d in datagrams:
        set_id, length = ipfix.SET_HEADER.unpack_from(d, ipfix.HEADER.size)
        if set_id != ipfix.TMPL_IPV4_ID:
            continue
        for o in range(ipfix.HEADER.size + 4, ipfix.HEADER.size + length, ipfix.FLOW4.size):
            r = ipfix.FLOW4.unpack_from(d, o)
            out.append((r[8], r[4], r[5]))
    return out


@settings(max_examples=25, deadline=None)
@given(histories(), hs.sampled_from([5, 25]))
def test_v5_and_ipfix_records_sum_exactly(history, secs):
    got = run(history, secs)
    now = Clock(BOOT_WALL + 2000.0, 2000.0)
    for n, (_born, _gone, seen) in enumerate(history, 1):
        final = seen[-1]
        fwd, rev = 40000 + n, 53
        for proto, decode in ((5, decode_v5), (10, decode_ipfix)):
            ex = Exporter(proto=proto)
            pkts, octets = [0, 0], [0, 0]
            for entry in got.get(n, []):
                recs = decode(ex.export_state(*flows.flow_pair(entry), now) + ex.flush(now))
                for d, port in enumerate((fwd, rev)):
                    mine = [r for r in recs if r[0] == port]
                    assert all(r[1] > 0 for r in mine)  # no zero-packet record
                    octets[d] += sum(r[2] for r in mine)
                    if mine:  # v5 repeats the count on every split record
                        assert len({r[1] for r in mine}) == 1
                        pkts[d] += mine[0][1]
            assert octets == [final[2], final[3]], proto
            assert pkts == [final[0] % 2**32, final[1] % 2**32], proto


def test_exported_at_the_first_poll_past_the_timeout_and_the_rest_at_removal():
    # polls at 1000, 1010, ...; born at 1000 (age 0), due at 1025: the poll at 1030
    # exports what it has; the next span starts at 1031, due 1056, but the state is
    # gone at 1060: only the rest, at removal
    history = [(0, 6, [(1, 1, 100, 100), (2, 1, 200, 100), (3, 2, 300, 200), (3, 2, 300, 200),
                       (4, 2, 400, 200), (5, 3, 500, 300)])]
    got = run(history, 25)[1]
    assert [flows.entry_times(e)[0] for e in got] == [1000, 1031]
    assert [flows.entry_counters(e) for e in got] == [(3, 2, 300, 200), (2, 1, 200, 100)]


def test_a_due_state_with_nothing_new_waits_for_its_next_change():
    # exported at 1030 (300 bytes); due again at 1056: the poll at 1060 finds nothing
    # new; the poll at 1070 sees it change and exports then, not 25 s later; the
    # removal finds nothing left and makes no record
    c = [100, 100, 200, 300, 300, 300, 300, 500, 500]
    history = [(0, 9, [(b // 100, 0, b, 0) for b in c])]
    got = run(history, 25)[1]
    assert [flows.entry_times(e)[0] for e in got] == [1000, 1031]
    assert [flows.entry_counters(e) for e in got] == [(3, 0, 300, 0), (2, 0, 200, 0)]


def test_turned_on_later_schedules_the_states_already_tracked():
    tracker = Tracker(select=lambda st: True)
    text = record(head(1), age="00:01:00", pkts="3:0", bytes="300:0", id=sid(1))
    tracker.update(text, 1000)
    tracker.set_active_timeout(30)
    up = tracker.update(text, 1010)  # created at 940: due since 970
    assert [flows.entry_counters(e) for e in up.active] == [(3, 0, 300, 0)]
    assert tracker.stats["active_exports"] == 1
