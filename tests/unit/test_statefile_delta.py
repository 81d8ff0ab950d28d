"""The state file's deltas (issue 16, point 5): a base and the changes of each step after
it, appended; compaction; torn and garbage deltas; a restart through them that loses
and repeats nothing."""

import functools
import itertools
import logging
import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pflowbsd import statefile
from pflowbsd.config import Config
from pflowbsd.pipeline import PfSide, Pipeline
from pflowbsd.shell.statewriter import StateKeeper
from pflowbsd.statefile import StateFileError
from tests.support import replaydata as rd
from tests.support.datagrams import decode_all
from tests.support.pftext import record, sid

N, POLLS, STEP = 300, 14, 10
SENT_AT = ("sequence", "export_ms", "uptime")


def pipeline(proto=5, active=0):
    cfg = Config(instance="pflow0", flowdst=[("127.0.0.1", 9)], pflowproto=proto,
                 active_timeout=active)
    return Pipeline(cfg, PfSide(cfg), rd.BOOT)


def alive(i, p, n=N):
    """The first two thirds of n states are born at poll 0, the others later; state i
    lives 3 + i % 9 polls, except every seventh, which stays."""
    first = 2 * n // 3
    born = 0 if i < first else i % 5 + (i - first) * 15 // n
    return born <= p and (i % 7 == 0 or p < born + 3 + i % 9), born


def table(p, n=N):
    """Poll p's `pfctl -ss -vv`: the states alive then, each third of them moving."""
    out = []
    for i in range(n):
        live, born = alive(i, p, n)
        if not live:
            continue
        k = (p - born + i % 3) // 3  # how often it moved so far: a third each poll
        age = 30 + (p - born) * STEP
        out.append(record(f"all udp 10.{i >> 8}.{i & 255}.1:{1000 + i} -> 192.0.2.53:53"
                          "       MULTIPLE:MULTIPLE", age=rd.hms(age), expires="00:00:50",
                          pkts=f"{1 + k}:{1 + k // 2}", bytes=f"{60 + 40 * k}:{100 + 90 * k}",
                          extra=", rule 3, pflow" if i % 11 else ", rule 3",
                          id=sid(i + 1)))
    return "".join(out)


TABLES = [table(p) for p in range(POLLS)]


def at(p):
    return rd.T0 + STEP * p


def step(pipe, p, sent, keeper=None):
    """Poll p as the daemon does it: poll, save, send; then what fell due, alike."""
    _up, out = pipe.poll(TABLES[p], at(p))
    for o in (out, pipe.due(at(p) + STEP / 2)):
        if keeper:
            keeper.save(pipe)
        sent += o.datagrams[("127.0.0.1", 9)]


def flows(datagrams, leave=SENT_AT):
    dec, got = decode_all(datagrams)
    return sorted(tuple(sorted((k, v) for k, v in f.items() if k not in leave))
                  for f in got), sum(dec.stats.gaps.values())


def same(a: statefile.Saved, pipe):
    b = statefile.capture(pipe)
    assert a.entries == b.entries
    assert a.exported == b.exported
    assert a.signature == b.signature
    assert (a.gcounter, a.sequence, a.tmpl_deadline, a.buffers) == \
        (b.gcounter, b.sequence, b.tmpl_deadline, b.buffers)


def with_deltas(proto=10, active=25, polls=POLLS):
    """A base after poll 0, then a delta after each later poll: the file's bytes, where
    each delta ends, and what the pipeline held after each (as capture() takes it)."""
    pipe = pipeline(proto, active)
    pipe.start(at(0))
    pipe.poll(TABLES[0], at(0))
    pipe.tracker.take_changes()
    data = statefile.encode(statefile.capture(pipe))
    crc, ends = statefile.base_crc(data), [len(data)]
    held = [statefile.decode(statefile.encode(statefile.capture(pipe)))]
    for p in range(1, polls):
        pipe.poll(TABLES[p], at(p))
        pipe.due(at(p) + 5)
        tails, keys = pipe.tracker.take_changes()
        data += statefile.encode_delta(statefile.changes(pipe, tails, keys), p, crc)
        ends.append(len(data))
        held.append(statefile.decode(statefile.encode(statefile.capture(pipe))))
    return pipe, data, ends, held


def test_the_workload_moves_everything_a_delta_holds():
    pipe, data, ends, held = with_deltas()
    assert pipe.tracker.stats["active_exports"] and pipe.tracker.stats["expired"]
    assert any(len(h.exported) < len(held[k - 1].exported) for k, h in enumerate(held) if k)
    assert any(h.buffers for h in held)
    # a delta holds what changed: smaller than the base of the same moment
    assert all(b - a < len(statefile.encode(h)) for a, b, h in zip(ends, ends[1:], held[1:]))


@pytest.mark.parametrize("proto", [5, 10])
@pytest.mark.parametrize("active", [0, 25])
def test_base_and_deltas_decode_to_what_the_pipeline_holds(proto, active):
    pipe, data, ends, _held = with_deltas(proto, active)
    saved = statefile.decode(data)
    assert saved.deltas == POLLS - 1 and saved.torn is None
    same(saved, pipe)
    fresh = pipeline(proto, active)
    assert statefile.restore(fresh, saved)
    assert fresh.tracker.entries == pipe.tracker.entries
    assert fresh.exporter.snapshot() == pipe.exporter.snapshot()


def test_a_cut_anywhere_in_the_deltas_keeps_every_whole_one():
    _pipe, data, ends, held = with_deltas(polls=6)
    h = statefile.DELTA.size
    cuts = {e + d for e, n in zip(ends, [*ends[1:], ends[-1]], strict=True)
            for d in (0, 1, h - 1, h, h + 1, (n - e) // 2, n - e - 1) if e + d <= len(data)}
    for cut in sorted(cuts):
        saved = statefile.decode(data[:cut])
        whole = max(k for k, e in enumerate(ends) if e <= cut)
        assert saved.deltas == whole
        assert (saved.torn is None) == (cut == ends[whole])
        assert saved.entries == held[whole].entries
        assert saved.exported == held[whole].exported
        assert saved.buffers == held[whole].buffers


def test_a_flipped_byte_in_the_last_delta_drops_it_and_earlier_is_refused():
    _pipe, data, ends, held = with_deltas(polls=5)
    last = ends[-2] + statefile.DELTA.size + 30
    bad = data[:last] + bytes([data[last] ^ 1]) + data[last + 1:]
    saved = statefile.decode(bad)
    assert saved.torn == "delta 4 fails its checksum" and saved.entries == held[3].entries
    mid = ends[1] + statefile.DELTA.size + 30
    with pytest.raises(StateFileError, match="delta 2: checksum mismatch"):
        statefile.decode(data[:mid] + bytes([data[mid] ^ 1]) + data[mid + 1:])


def test_zeros_after_the_deltas_are_a_torn_write():
    _pipe, data, ends, held = with_deltas(polls=3)
    saved = statefile.decode(data + bytes(100))
    assert saved.torn == "delta 3 zeros" and saved.deltas == 2
    assert saved.entries == held[2].entries


@pytest.mark.parametrize("how", ["swapped", "other base", "garbage"])
def test_a_delta_out_of_place_is_refused(how):
    _pipe, data, ends, _held = with_deltas(polls=4)
    d1, d2 = data[ends[0]:ends[1]], data[ends[1]:ends[2]]
    if how == "swapped":
        bad = data[:ends[0]] + d2 + d1 + data[ends[2]:]
    elif how == "other base":
        other = statefile.encode(statefile.capture(pipeline()))
        bad = other + d1
    else:
        bad = data[:ends[1]] + b"#!/bin/sh\n" * 10 + data[ends[1]:]
    with pytest.raises(StateFileError, match="not a delta of this file"):
        statefile.decode(bad)


@functools.cache
def _good():
    _pipe, data, ends, held = with_deltas(polls=4)
    return data, ends, held


@settings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_garbage_in_the_deltas_is_refused_or_a_whole_prefix(data):
    """Whatever the bytes after the base: StateFileError, or the state after some whole
    delta, never one half applied."""
    good, ends, held = _good()
    how = data.draw(st.sampled_from(["cut", "flip", "splice", "append"]))
    k = data.draw(st.integers(ends[0], len(good) - 1))
    junk = data.draw(st.binary(max_size=40))
    if how == "cut":
        blob = good[:k]
    elif how == "append":
        blob = good + junk
    else:
        blob = good[:k] + junk + good[k + (how == "flip"):]
    try:
        saved = statefile.decode(blob)
    except StateFileError:
        return
    assert saved.deltas < len(held)
    want = held[saved.deltas]
    assert (saved.entries, saved.exported, saved.buffers, saved.sequence) == \
        (want.entries, want.exported, want.buffers, want.sequence)
    pipe = pipeline(10, 25)
    statefile.restore(pipe, saved)
    pipe.poll(TABLES[5], at(5))
    pipe.flush(at(6))


# --- the writer: deltas appended, a base when due, a torn last write ------------------

def test_the_keeper_appends_deltas_and_compacts(tmp_path):
    path = str(tmp_path / "pflow0.state")
    keeper = StateKeeper(path, share=0.5, whole_below=0)
    pipe, sent = pipeline(10, 25), []
    sizes, bases = [], 0
    for p in range(POLLS):
        step(pipe, p, sent, keeper)
        bases += keeper.deltas == 0
        sizes.append(os.path.getsize(path))
        assert keeper.delta_bytes <= 0.5 * keeper.base_size
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        same(statefile.decode(open(path, "rb").read()), pipe)
    assert 1 < bases < POLLS  # bases and deltas both written
    assert any(b < a for a, b in itertools.pairwise(sizes))  # a compaction shrank the file
    assert sorted(os.listdir(tmp_path)) == ["pflow0.state"]


def test_a_small_table_is_written_whole(tmp_path):
    path = str(tmp_path / "s")
    keeper = StateKeeper(path)  # WHOLE_BELOW: a few hundred states are a small file
    pipe, sent = pipeline(), []
    for p in range(4):
        step(pipe, p, sent, keeper)
        assert keeper.deltas == 0
        assert statefile.decode(open(path, "rb").read()).deltas == 0


def test_nothing_changed_writes_nothing(tmp_path):
    path = str(tmp_path / "s")
    keeper = StateKeeper(path, whole_below=0)
    pipe, sent = pipeline(), []
    step(pipe, 0, sent, keeper)
    step(pipe, 1, sent, keeper)
    before = os.stat(path)
    keeper.save(pipe)
    keeper.save(pipe)
    assert os.stat(path).st_size == before.st_size and os.stat(path).st_ino == before.st_ino


def test_a_failed_append_is_logged_once_and_the_next_write_is_a_base(tmp_path, caplog):
    path = str(tmp_path / "s")
    keeper = StateKeeper(path, share=10, whole_below=0)
    pipe, sent = pipeline(), []
    step(pipe, 0, sent, keeper)
    os.unlink(path)  # the append finds no file (an operator removed it)
    with caplog.at_level(logging.INFO, logger="pflowbsd"):
        pipe.poll(TABLES[1], at(1))
        keeper.save(pipe)
        assert keeper.tracker is None and not os.path.exists(path)
        step(pipe, 2, sent, keeper)
    lines = [r.getMessage() for r in caplog.records]
    assert len([x for x in lines if "No such file" in x]) == 1, lines
    assert any("written again" in x for x in lines), lines
    same(statefile.decode(open(path, "rb").read()), pipe)  # poll 1's changes included


# --- restarts through deltas: nothing lost, nothing twice ------------------------------

def uninterrupted(proto, active):
    pipe, sent = pipeline(proto, active), []
    sent += pipe.start(at(0)).datagrams[("127.0.0.1", 9)]
    for p in range(POLLS):
        step(pipe, p, sent)
    return sent + pipe.flush(at(POLLS)).datagrams[("127.0.0.1", 9)]


def restarted(tmp_path, proto, active, kill_at, torn=False, caplog=None):
    """Run one to poll kill_at, killed (no flush), then run two on the same file."""
    path = str(tmp_path / "pflow0.state")
    pipe, sent = pipeline(proto, active), []
    keeper = StateKeeper(path, share=3, whole_below=0)
    keeper.save(pipe)
    sent += pipe.start(at(0)).datagrams[("127.0.0.1", 9)]
    for p in range(kill_at):
        step(pipe, p, sent, keeper)
    assert keeper.deltas > 0
    if torn:  # killed while poll kill_at's delta was being appended: not sent
        size = os.path.getsize(path)
        pipe.poll(TABLES[kill_at], at(kill_at))
        keeper.save(pipe)
        assert keeper.deltas > 1
        with open(path, "r+b") as f:
            f.truncate(size + (os.path.getsize(path) - size) // 2)
    pipe2, keeper2 = pipeline(proto, active), StateKeeper(path, whole_below=0)
    assert keeper2.load(pipe2)
    keeper2.save(pipe2)
    assert statefile.decode(open(path, "rb").read()).deltas == 0  # compacted at start
    sent += pipe2.start(at(kill_at)).datagrams[("127.0.0.1", 9)]
    for p in range(kill_at, POLLS):  # torn: poll kill_at again (the same table)
        step(pipe2, p, sent, keeper2)
    return sent + pipe2.flush(at(POLLS)).datagrams[("127.0.0.1", 9)]


@pytest.mark.parametrize("proto", [5, 10])
@pytest.mark.parametrize("active", [0, 25])
@pytest.mark.parametrize("kill_at", [3, 9])
def test_a_restart_through_deltas_loses_and_repeats_nothing(tmp_path, proto, active, kill_at):
    want, gaps_one = flows(uninterrupted(proto, active))
    got, gaps = flows(restarted(tmp_path, proto, active, kill_at))
    assert len(want) > N
    assert got == want
    assert gaps == gaps_one == 0


@pytest.mark.parametrize("proto", [5, 10])
def test_a_torn_last_delta_is_dropped_and_its_poll_done_again(tmp_path, proto, caplog):
    """The delta of poll 9 torn: its datagrams were never sent, and the file is as poll
    8 left it; started again at once, the daemon polls the same table: each flow once."""
    want, _ = flows(uninterrupted(proto, 25))
    with caplog.at_level(logging.INFO, logger="pflowbsd"):
        got, gaps = flows(restarted(tmp_path, proto, 25, 9, torn=True))
    lines = [r.getMessage() for r in caplog.records if "state file" in r.getMessage()]
    assert len(lines) == 1 and "torn (delta" in lines[0] and "restored" in lines[0], lines
    assert got == want
    assert gaps == 0


def test_expire_all_is_in_the_next_delta():
    """`ctl expire-all` sets every state's exported record: the next delta has them."""
    pipe = pipeline(10, 0)
    pipe.poll(TABLES[0], at(0))
    pipe.tracker.take_changes()
    data = statefile.encode(statefile.capture(pipe))
    n, _out = pipe.expire_all(at(0) + 5)
    assert n > 100
    tails, keys = pipe.tracker.take_changes()
    data += statefile.encode_delta(statefile.changes(pipe, tails, keys), 1,
                                   statefile.base_crc(data))
    same(statefile.decode(data), pipe)
