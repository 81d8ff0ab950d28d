"""pipeline: a snapshot sequence in, datagrams per flowdst and deadlines out, no socket.

The scenario is the replay folder of the end-to-end tests (tests/support/replaydata.py),
fed to the Pipeline in-process; the expected records are worked out from the numbers
written into the snapshots, never through the tracker.
"""

import socket

import pytest

from pflowbsd.config import Config
from pflowbsd.export import ipfix, v5
from pflowbsd.pipeline import Output, PfSide, Pipeline
from tests.support import replaydata as rd
from tests.support.pftext import record, sid

DST_A, DST_B = ("127.0.0.1", 9995), ("127.0.0.1", 9996)


def side_of(cfg: Config) -> PfSide:
    side = PfSide(cfg)
    side.load("".join(f"{k} {v}s\n" for k, v in rd.TIMEOUTS.items()), None, rd.INFO)
    return side


def pipeline(**words) -> Pipeline:
    cfg = Config(flowdst=[DST_A], **words)
    return Pipeline(cfg, side_of(cfg), rd.BOOT)


def snapshots() -> list[tuple[int, str]]:
    chosen = rd.states()
    return [(t, "".join(s.text(t) for s in chosen if any(x.t == t for x in s.seen)))
            for t in rd.SNAPS]


def v5_records(datagram: bytes) -> list[tuple]:
    version, count, uptime, secs, _nsecs, seq, *_ = v5.HEADER.unpack_from(datagram)
    assert version == 5 and len(datagram) == v5.HEADER.size + count * v5.RECORD.size
    out = []
    for i in range(count):
        r = v5.RECORD.unpack_from(datagram, v5.HEADER.size + i * v5.RECORD.size)
        src, dst = socket.inet_ntoa(r[0]), socket.inet_ntoa(r[1])
        first = secs - (uptime - r[7]) // 1000
        last = secs - (uptime - r[8]) // 1000
        out.append((src, r[9], dst, r[10], r[13], r[5], r[6], first, last))
    return out


def run(pipe: Pipeline) -> list[tuple[int, Output]]:
    """The daemon's order at each poll: what fell due, then the snapshot; at the end a
    flush.  Returns (wall, output) for every non-empty output."""
    outs = [(rd.SNAPS[0], pipe.start(rd.SNAPS[0]))]
    for t, text in snapshots():
        outs.append((t, pipe.due(t)))
        up, out = pipe.poll(text, t)
        assert not up.partial and not up.errors
        outs.append((t, out))
    last = rd.SNAPS[-1]
    outs.append((last, pipe.due(last)))
    outs.append((last, pipe.flush(last)))
    return [(t, o) for t, o in outs if o.count()]


def test_v5_records_are_the_scenarios_and_leave_on_pflows_timers():
    pipe = pipeline()
    outs = run(pipe)
    got = [r for _t, o in outs for d in o.datagrams[DST_A] for r in v5_records(d)]
    assert sorted(got) == sorted(rd.expected_v5())
    # full at 30 records when the first states go (T0+10); the other 17 on the 30 s hold
    assert [(t, len(o.datagrams[DST_A])) for t, o in outs] == [(rd.T0 + 10, 1), (rd.T0 + 60, 1)]
    assert pipe.exporter.stats["flows"] == len(got)


def test_next_deadline_is_the_hold_of_the_first_held_record():
    pipe = pipeline()
    pipe.start(rd.SNAPS[0])
    for t, text in snapshots()[:2]:
        pipe.due(t)
        _up, out = pipe.poll(text, t)
    # the first records were added at T0+10 and the buffer filled once: the rest is held
    assert out.next_deadline == rd.T0 + 10 + 30
    assert pipe.due(rd.T0 + 39).count() == 0
    assert pipe.due(rd.T0 + 40).count() == 1
    assert pipe.due(rd.T0 + 40).next_deadline is None


def test_every_flowdst_gets_the_same_datagrams_in_order():
    cfg = Config(flowdst=[DST_A, DST_B])
    pipe = Pipeline(cfg, side_of(cfg), rd.BOOT)
    outs = run(pipe)
    assert outs and all(o.datagrams[DST_A] == o.datagrams[DST_B] for _t, o in outs)
    assert all(set(o.datagrams) == {DST_A, DST_B} for _t, o in outs)


def test_ipfix_starts_with_templates_and_rearms_them():
    pipe = pipeline(pflowproto=10, tmpl_interval=30)
    out = pipe.start(rd.T0)
    [tmpl] = out.datagrams[DST_A]
    version, _length, _secs, seq, _dom = ipfix.HEADER.unpack_from(tmpl)
    set_id, _ = ipfix.SET_HEADER.unpack_from(tmpl, ipfix.HEADER.size)
    assert (version, set_id, seq) == (10, ipfix.TMPL_SET_ID, 0)
    assert out.next_deadline == rd.T0 + 30
    assert pipe.due(rd.T0 + 30).count() == 1


A = "all tcp 10.0.0.5:50000 -> 93.184.216.34:443       ESTABLISHED:ESTABLISHED"


def test_a_partial_snapshot_expires_nothing_and_is_counted():
    pipe = pipeline(export_all=True)
    a, b = record(A, id=sid(1)), record(A.replace("50000", "50001"), id=sid(2))
    pipe.poll(a + b, rd.T0)
    up, out = pipe.poll(a + b[:-20], rd.T0 + 10)  # b's id line cut short
    assert up.partial and out.count() == 0 and pipe.skipped_polls == 1
    up, out = pipe.poll(a, rd.T0 + 20)
    assert not up.partial and up.gone == 1
    assert pipe.flush(rd.T0 + 20).count() == 1


def test_a_carp_backup_tracks_but_sends_nothing():
    pipe = pipeline(export_all=True)
    pipe.poll(record(A, id=sid(1)), rd.T0, export=False)
    up, out = pipe.poll("", rd.T0 + 10, export=False)
    assert up.gone == 1 and out.count() == 0 and pipe.not_master == 1
    assert pipe.flush(rd.T0 + 10).count() == 0


def test_reconfigure_flushes_to_the_new_flowdst_and_renews_the_exporter_on_its_words():
    pipe = pipeline(export_all=True)
    pipe.poll(record(A, id=sid(1)), rd.T0)
    pipe.poll("", rd.T0 + 10)  # held: 2 records
    new = Config(flowdst=[DST_B], export_all=True)
    out = pipe.reconfigure(new, side_of(new), rd.T0 + 11)
    assert list(out.datagrams) == [DST_B] and len(out.datagrams[DST_B]) == 1
    exporter = pipe.exporter
    ten = Config(flowdst=[DST_B], export_all=True, pflowproto=10)
    out = pipe.reconfigure(ten, side_of(ten), rd.T0 + 12)
    assert pipe.exporter is not exporter  # new words, new exporter: templates at once
    [tmpl] = out.datagrams[DST_B]
    assert ipfix.HEADER.unpack_from(tmpl)[0] == 10


@pytest.mark.parametrize("failed", [1, 3])
def test_failed_polls_are_counted_in_the_statistics(failed):
    pipe = pipeline()
    for _ in range(failed):
        pipe.failed_poll()
    assert pipe.stats()["skipped_polls"] == failed
