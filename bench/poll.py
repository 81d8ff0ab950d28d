"""CPU and memory of a poll, as ratios to the floor (bench/common.py) measured in the
same run: python bench/poll.py [--states N] [--new F] [--gone F] [--changed F] [--whole]
[--quick]

Strategy.  Table A is the first N records of the golden 200k-state table, replicated
with other ids and addresses past 200k (`--states 1000000`: the table x 5).  Table B is
A ten seconds later: a share of A gone, as many records new (the next records of the
replicated table), a share of the survivors with more packets and bytes, and every
survivor's `age` ten seconds older and, unless it changed, its `expires in` ten seconds
nearer: what moves every poll while the counters stay.  A poll starts from pfctl's bytes,
as the daemon reads them: 1 MiB blocks cut before state lines and decoded one chunk at a
time (pf.snapshot.record_chunks; `--whole`: the text decoded at once), Tracker.update,
Exporter.export_entries (NetFlow v5) of the expired states, flush.  Interleaved best of
three: floor(A), first poll (a new tracker sees A), then
steady poll (the same tracker sees B), and floor(B).  The tracker's counts are checked
against the workload (new, gone, changed, 0 parse errors) before any figure is printed.
Peak RSS during the first poll above the RSS before it is measured in a child process
that holds only A's bytes, per state; so is what the tracker keeps once the poll is done.

Bookkeeping (#16 point 5: at most 0.10 of a steady poll), in the same rounds: after the
first poll the state file's base (StateKeeper's first save: the compaction's cost), after
the steady poll its delta (StateKeeper.save, fsync'd), the statistics (Meter.polled and
the stats file) and one `ctl statistics` request (control.dispatch: the daemon's side);
bookkeeping_N is their sum over the steady poll, with_compaction adds the base's cost
shared over the polls like this one that fit in COMPACT_SHARE.  Load: decoding the file
of one base and one delta, and of the most deltas the keeper lets it hold.  ctl_states:
`pflowbsd ctl states` of the whole table, on demand.

The lines before #16's rewrite (poll_N_changedP_cpu_s, states_per_s, bytes_per_state by
tracemalloc) came from a steady poll with 1 % new / 1 % gone / 0 or 10 % changed and no
age moving, and absolute CPU; `--states N --changed 0` (or 0.1) is that workload with
ages moving, as a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # bench/ is not a package: its own directory is on sys.path

from pflowbsd import control, statefile, stats
from pflowbsd.config import Config
from pflowbsd.export.exporter import Exporter
from pflowbsd.flows import Clock
from pflowbsd.pf import snapshot
from pflowbsd.pipeline import PfSide, Pipeline
from pflowbsd.shell import statewriter
from pflowbsd.shell.statewriter import StateKeeper
from pflowbsd.shell.statsfile import Meter, StatsFile
from pflowbsd.tracker import Tracker, Update

COUNTERS = re.compile(r"   age (\d+):(\d\d):(\d\d), expires in (\d+):(\d\d):(\d\d), "
                      r"(\d+):(\d+) pkts, (\d+):(\d+) bytes")
UP_A, UP_B, WALL = 1000.0, 1010.0, 1.7e9


def _hms(s: int) -> str:
    s = max(0, s)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def later(rec: str, changed: bool) -> str:
    """The record ten seconds on: older, and either nearer expiry or with more traffic."""
    def move(m: re.Match[str]) -> str:
        g = [int(x) for x in m.groups()]
        age, exp = g[0] * 3600 + g[1] * 60 + g[2], g[3] * 3600 + g[4] * 60 + g[5]
        pk0, pk1, by0, by1 = g[6:]
        if changed:
            pk0, pk1, by0, by1 = pk0 + 3, pk1 + 2, by0 + 180, by1 + 1460
        else:
            exp -= 10
        return (f"   age {_hms(age + 10)}, expires in {_hms(exp)}, "
                f"{pk0}:{pk1} pkts, {by0}:{by1} bytes")
    return COUNTERS.sub(move, rec, count=1)


def workload(n: int, new: float, gone: float, changed: float
             ) -> tuple[bytes, bytes, tuple[int, int, int]]:
    """Tables A and B as pfctl's bytes, and the (new, gone, changed) counts of A -> B."""
    n_new, n_gone, n_changed = int(n * new), int(n * gone), int(n * changed)
    recs = common.table(n + n_new)
    rng = random.Random(16)
    dropped = set(rng.sample(range(n), n_gone))
    survivors = [i for i in range(n) if i not in dropped]
    moved = set(rng.sample(survivors, min(n_changed, len(survivors))))
    b = [later(recs[i], i in moved) for i in survivors] + recs[n:]
    return "".join(recs[:n]).encode(), "".join(b).encode(), (n_new, n_gone, len(moved))


WHOLE = False  # --whole: decode the table into one str first (the daemon streams it)
BLOCK = 1 << 20  # what shell/pfctl.py reads at a time


def poll(tracker: Tracker, exporter: Exporter, data: bytes, up: float,
         entries: int | None = None) -> tuple[Update, int]:
    """One poll from pfctl's bytes to datagrams, as the daemon makes it: the bytes in
    1 MiB blocks, cut before state lines and parsed as they come (pf.snapshot.
    record_chunks), with pf's `current entries` (entries_of()); with --whole the text
    decoded at once.  The Update and the datagrams."""
    if WHOLE:
        u = tracker.update(data.decode("utf-8", "replace"), up)
    else:
        blocks = (data[i:i + BLOCK] for i in range(0, len(data), BLOCK))
        u = tracker.update(snapshot.record_chunks(blocks), up, states_hint=entries)
    now = Clock(WALL + up, up)
    sent = len(exporter.export_entries(u.expired, now))  # as the pipeline exports
    return u, sent + len(exporter.flush(now))


def check(u: Update, what: str, states: int, new: int, gone: int, changed: int) -> None:
    got = (u.states, u.new, u.gone, u.changed, len(u.errors), len(u.expired))
    want = (states, new, gone, changed, 0, gone)
    if got != want:
        raise SystemExit(f"{what}: the tracker counted (states, new, gone, changed, errors,"
                         f" expired) {got}, the workload made {want}")


def entries_of(data: bytes) -> int:
    """The table's records, as `pfctl -si -v` says them (another call: not timed)."""
    return data.count(b"   id: ")


def child(path: str) -> None:
    """In a fresh process that holds only table A's bytes (read from the file the parent
    wrote, so no garbage of building it is left to reuse): the first poll's peak RSS
    above the RSS before it, and what stays once it is done (the tracker), as JSON."""
    a = Path(path).read_bytes()
    entries = entries_of(a)
    holder: list[Tracker] = []

    def run() -> object:
        holder.append(Tracker(select=lambda st: True))
        return poll(holder[0], Exporter(proto=5), a, UP_A, entries)

    before, peak = common.peak_above(run)
    kept = common.rss() - before
    print(json.dumps({"before": before, "peak": peak, "kept": kept, "states": len(holder[0])}))


class Bookkeeping:
    """#16 point 5: what the daemon does beside a poll, as shell/daemon.py calls it: the
    state file (StateKeeper.save: a base after the first poll, a delta after the steady
    one, each fsync'd), the statistics (Meter.polled, the stats file) and the control
    socket (one `ctl statistics` request, as a monitoring script would ask every poll:
    control.dispatch, the daemon's side of it)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.cfg = Config(instance="pflow0", flowdst=[("127.0.0.1", 9)], pflowproto=5)
        self.pipe = Pipeline(self.cfg, PfSide(self.cfg), 0)
        self.path = os.path.join(folder, "pflow0.state")
        self.keeper = StateKeeper(self.path)
        self.meter = Meter("pflow0", WALL)
        self.meter.collectors(self.cfg.flowdst)
        self.stats = StatsFile(os.path.join(folder, "pflow0.prom"))
        self.handlers: dict[str, control.Handler] = {
            "statistics": lambda r: stats.netstat(self.meter.statistics(self.pipe))}
        self.wall = {"delta": 0.0, "statistics": 0.0}
        self.base_bytes = self.delta_bytes = self.worst_deltas = self.worst_bytes = 0

    def base(self, tracker: Tracker) -> Callable[[], object]:
        """The compaction: a new keeper's first save, a base of the first poll's table."""
        self.pipe.tracker = tracker
        self.keeper = StateKeeper(self.path)
        tracker.take_changes()  # the daemon's tracker has kept its changes since start

        def run() -> object:
            self.keeper.save(self.pipe)
            self.base_bytes = self.keeper.base_size
            return self.base_bytes
        return run

    def delta(self, exporter: Exporter) -> Callable[[], object]:
        self.pipe.exporter = exporter

        def run() -> object:
            t0 = time.perf_counter()
            self.keeper.save(self.pipe)
            self.wall["delta"] = time.perf_counter() - t0
            if self.keeper.deltas != 1:
                raise SystemExit("the steady poll's save was not a delta")
            self.delta_bytes = self.keeper.delta_bytes
            return self.delta_bytes
        return run

    def statistics(self) -> object:
        """The daemon's _polled(): counted, and the stats file written (fsync'd)."""
        t0 = time.perf_counter()
        self.meter.polled("ok", 0.1, 1 << 20, WALL)
        st = self.meter.statistics(self.pipe)
        self.stats.write(st)
        self.wall["statistics"] = time.perf_counter() - t0
        return st

    def control(self) -> object:
        return control.dispatch(b"statistics\n", self.handlers)

    def load(self, path: str | None = None) -> object:
        with open(path or self.path, "rb") as f:
            return len(statefile.decode(f.read()).entries)

    def worst_file(self) -> str:
        """The file as large as it grows: the base and the steady delta again and again,
        up to the share at which the keeper writes a new base."""
        with open(self.path, "rb") as f:
            data = f.read()
        base = data[:self.keeper.base_size]
        body = data[self.keeper.base_size + statefile.DELTA.size:]
        crc, out, k = statefile.base_crc(base), [base], 0
        while (k + 1) * len(body) <= statewriter.COMPACT_SHARE * len(base):
            k += 1
            head = statefile.DELTA.pack(statefile.DELTA_MAGIC, k, crc, len(body), 0)[:-4]
            out += [head, struct.pack("<I", zlib.crc32(body, zlib.crc32(head))), body]
        path = os.path.join(self.folder, "worst.state")
        with open(path, "wb") as f:
            f.write(b"".join(out))
        self.worst_deltas, self.worst_bytes = k, os.path.getsize(path)
        return path

    def ctl_states(self) -> object:
        return control.states_text(self.pipe.tracker)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--states", type=int, default=200_000)
    ap.add_argument("--new", type=float, default=0.01, help="share of B new (default 0.01)")
    ap.add_argument("--gone", type=float, default=0.01, help="share of A gone (default 0.01)")
    ap.add_argument("--changed", type=float, default=0.01,
                    help="share of A's survivors with new counters (default 0.01)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="20,000 states (a smoke run)")
    ap.add_argument("--whole", action="store_true",
                    help="decode each table into one str first (the daemon streams it)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global WHOLE
    WHOLE = args.whole
    if args.child:
        return child(args.child)
    n = 20_000 if args.quick else args.states
    a, b, (n_new, n_gone, n_changed) = workload(n, args.new, args.gone, args.changed)
    entries_a, entries_b = entries_of(a), entries_of(b)
    trackers: list[Tracker] = []

    def first() -> object:
        trackers[:] = [Tracker(select=lambda st: True)]
        return poll(trackers[0], Exporter(proto=5), a, UP_A, entries_a)

    exporters: list[Exporter] = []

    def steady() -> object:
        exporters[:] = [Exporter(proto=5)]
        return poll(trackers[0], exporters[0], b, UP_B, entries_b)

    folder = tempfile.TemporaryDirectory(prefix="pflowbsd-bench-")
    keep = Bookkeeping(folder.name)
    best, last = common.interleaved({
        "floor_a": lambda: lambda: common.floor(a),
        "first": lambda: first,
        "compaction": lambda: keep.base(trackers[0]),
        "steady": lambda: steady,
        "state_delta": lambda: keep.delta(exporters[0]),
        "statistics": lambda: keep.statistics,
        "control": lambda: keep.control,
        "load": lambda: keep.load,
        "floor_b": lambda: lambda: common.floor(b),
    }, args.runs)
    worst = keep.worst_file()
    best_worst, _ = common.interleaved({"load_worst": lambda: lambda: keep.load(worst)}, args.runs)
    states_cpu, states_text = common.cpu(keep.ctl_states)
    check(last["first"][0], "first poll", n, n, 0, 0)  # type: ignore[index]
    check(last["steady"][0], "steady poll", n - n_gone + n_new, n_new, n_gone, n_changed)  # type: ignore[index]
    with tempfile.NamedTemporaryFile(prefix="poll-", suffix=".txt") as f:
        f.write(a)
        f.flush()
        mem = common.in_child(__file__, [f.name, *(["--whole"] if WHOLE else [])])
    print(f"# {n} states, {len(a):,} bytes of pfctl -ss -vv; steady: {n_new} new, {n_gone} gone,"
          f" {n_changed} changed; best of {args.runs}; {common.interpreter()}")
    print(common.figure(f"first_poll_{n}", best["first"], best["floor_a"],
                        us_per_state=f"{best['first'] / n * 1e6:.1f}"))
    print(common.figure(f"steady_poll_{n}", best["steady"], best["floor_b"],
                        datagrams=last["steady"][1]))  # type: ignore[index]
    print(f"first_poll_{n}_rss {int(mem['peak']) / n:.0f} B/state peak above before"  # type: ignore[call-overload]
          f"  kept {int(mem['kept']) / n:.0f} B/state"  # type: ignore[call-overload]
          f"  before_mb {int(mem['before']) / 2**20:.0f}  peak_above_mb {int(mem['peak']) / 2**20:.0f}")  # type: ignore[call-overload]
    steady_s = best["steady"]
    parts = {k: best[k] for k in ("state_delta", "statistics", "control")}
    total = sum(parts.values())
    per_poll = keep.delta_bytes / (statewriter.COMPACT_SHARE * keep.base_bytes)
    print(f"bookkeeping_{n} {total / steady_s:.3f} x steady_poll  cpu_s {total:.4f}  "
          + "  ".join(f"{k} {v / steady_s:.3f}" for k, v in parts.items())
          + f"  delta_bytes {keep.delta_bytes}"
          f"  with_compaction {(total + best['compaction'] * per_poll) / steady_s:.3f}"
          f"  wall_s {keep.wall['delta'] + keep.wall['statistics']:.4f}")
    print(f"state_file_compaction_{n} {best['compaction'] / steady_s:.2f} x steady_poll"
          f"  cpu_s {best['compaction']:.3f}  bytes {keep.base_bytes}"
          f"  every {1 / per_poll:.0f} polls like this one (share {statewriter.COMPACT_SHARE})"
          f"  amortized {best['compaction'] * per_poll / steady_s:.3f} x steady_poll")
    print(f"state_file_load_{n} {best['load'] / steady_s:.2f} x steady_poll"
          f"  cpu_s {best['load']:.3f}  (base + 1 delta)"
          f"  worst {best_worst['load_worst'] / steady_s:.2f} x steady_poll"
          f"  (base + {keep.worst_deltas} deltas, {keep.worst_bytes} bytes)")
    print(f"ctl_states_{n} {states_cpu / steady_s:.2f} x steady_poll  cpu_s {states_cpu:.3f}"
          f"  bytes {len(str(states_text))}  (on demand, not per poll)")
    folder.cleanup()


if __name__ == "__main__":
    main()
