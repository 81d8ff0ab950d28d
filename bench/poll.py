"""CPU and memory of a poll, as ratios to the floor (bench/common.py) measured in the
same run: python bench/poll.py [--states N] [--new F] [--gone F] [--changed F] [--quick]

Strategy.  Table A is the first N records of the golden 200k-state table, replicated
with other ids and addresses past 200k (`--states 1000000`: the table x 5).  Table B is
A ten seconds later: a share of A gone, as many records new (the next records of the
replicated table), a share of the survivors with more packets and bytes, and every
survivor's `age` ten seconds older and, unless it changed, its `expires in` ten seconds
nearer: what moves every poll while the counters stay.  A poll starts from pfctl's bytes:
decode, Tracker.update, flow_pair and Exporter (NetFlow v5) for every expired state,
flush.  Interleaved best of three: floor(A), first poll (a new tracker sees A), then
steady poll (the same tracker sees B), and floor(B).  The tracker's counts are checked
against the workload (new, gone, changed, 0 parse errors) before any figure is printed.
Peak RSS during the first poll above the RSS before it is measured in a child process
that holds only A's bytes, per state; so is what the tracker keeps once the poll is done.

The lines before #16's rewrite (poll_N_changedP_cpu_s, states_per_s, bytes_per_state by
tracemalloc) came from a steady poll with 1 % new / 1 % gone / 0 or 10 % changed and no
age moving, and absolute CPU; `--states N --changed 0` (or 0.1) is that workload with
ages moving, as a ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # bench/ is not a package: its own directory is on sys.path

from pflowbsd import statefile
from pflowbsd.export.exporter import Exporter
from pflowbsd.flows import Clock, flow_pair
from pflowbsd.shell.statsfile import write_atomically
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


def poll(tracker: Tracker, exporter: Exporter, data: bytes, up: float) -> tuple[Update, int]:
    """One poll from pfctl's bytes to datagrams; the Update and the datagram count."""
    u = tracker.update(data.decode("utf-8", "replace"), up)
    now = Clock(WALL + up, up)
    sent = 0
    for entry in u.expired:
        sent += len(exporter.export_state(*flow_pair(entry), now))
    return u, sent + len(exporter.flush(now))


def check(u: Update, what: str, states: int, new: int, gone: int, changed: int) -> None:
    got = (u.states, u.new, u.gone, u.changed, len(u.errors), len(u.expired))
    want = (states, new, gone, changed, 0, gone)
    if got != want:
        raise SystemExit(f"{what}: the tracker counted (states, new, gone, changed, errors,"
                         f" expired) {got}, the workload made {want}")


def child(path: str) -> None:
    """In a fresh process that holds only table A's bytes (read from the file the parent
    wrote, so no garbage of building it is left to reuse): the first poll's peak RSS
    above the RSS before it, and what stays once it is done (the tracker), as JSON."""
    a = Path(path).read_bytes()
    holder: list[Tracker] = []

    def run() -> object:
        holder.append(Tracker(select=lambda st: True))
        return poll(holder[0], Exporter(proto=5), a, UP_A)

    before, peak = common.peak_above(run)
    kept = common.rss() - before
    print(json.dumps({"before": before, "peak": peak, "kept": kept, "states": len(holder[0])}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--states", type=int, default=200_000)
    ap.add_argument("--new", type=float, default=0.01, help="share of B new (default 0.01)")
    ap.add_argument("--gone", type=float, default=0.01, help="share of A gone (default 0.01)")
    ap.add_argument("--changed", type=float, default=0.01,
                    help="share of A's survivors with new counters (default 0.01)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="20,000 states (a smoke run)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    n = 20_000 if args.quick else args.states
    a, b, (n_new, n_gone, n_changed) = workload(n, args.new, args.gone, args.changed)
    trackers: list[Tracker] = []

    def first() -> object:
        trackers[:] = [Tracker(select=lambda st: True)]
        return poll(trackers[0], Exporter(proto=5), a, UP_A)

    def steady() -> object:
        return poll(trackers[0], Exporter(proto=5), b, UP_B)

    state = tempfile.NamedTemporaryFile(prefix="pflowbsd-bench-", suffix=".state")  # noqa: SIM115

    def save() -> object:
        """#12: the state file after the steady poll, encoded and written as the daemon
        does (temporary file, fsync, rename, folder fsync)."""
        entries, exported = trackers[0].snapshot()
        data = statefile.encode(statefile.Saved("pflow0", 0, "", entries, exported,
                                                *Exporter(proto=5).snapshot()))
        write_atomically(state.name, data, 0o600)
        return len(data)

    def load() -> object:
        with open(state.name, "rb") as f:
            return len(statefile.decode(f.read()).entries)

    best, last = common.interleaved({
        "floor_a": lambda: lambda: common.floor(a),
        "first": lambda: first,
        "steady": lambda: steady,
        "state_save": lambda: save,
        "state_load": lambda: load,
        "floor_b": lambda: lambda: common.floor(b),
    }, args.runs)
    check(last["first"][0], "first poll", n, n, 0, 0)  # type: ignore[index]
    check(last["steady"][0], "steady poll", n - n_gone + n_new, n_new, n_gone, n_changed)  # type: ignore[index]
    with tempfile.NamedTemporaryFile(prefix="poll-", suffix=".txt") as f:
        f.write(a)
        f.flush()
        mem = common.in_child(__file__, [f.name])
    print(f"# {n} states, {len(a):,} bytes of pfctl -ss -vv; steady: {n_new} new, {n_gone} gone,"
          f" {n_changed} changed; best of {args.runs}; {common.interpreter()}")
    print(common.figure(f"first_poll_{n}", best["first"], best["floor_a"],
                        us_per_state=f"{best['first'] / n * 1e6:.1f}"))
    print(common.figure(f"steady_poll_{n}", best["steady"], best["floor_b"],
                        datagrams=last["steady"][1]))  # type: ignore[index]
    print(f"first_poll_{n}_rss {int(mem['peak']) / n:.0f} B/state peak above before"  # type: ignore[call-overload]
          f"  kept {int(mem['kept']) / n:.0f} B/state"  # type: ignore[call-overload]
          f"  before_mb {int(mem['before']) / 2**20:.0f}  peak_above_mb {int(mem['peak']) / 2**20:.0f}")  # type: ignore[call-overload]
    print(f"state_file_save_{n} {best['state_save'] / best['steady']:.2f} x steady_poll"
          f"  cpu_s {best['state_save']:.3f}  bytes {last['state_save']}"
          f"  load {best['state_load'] / best['steady']:.2f} x steady_poll"
          f"  load_cpu_s {best['state_load']:.3f}")


if __name__ == "__main__":
    main()
