"""The daemon as an operator sizes it: its process's RSS and CPU over the first poll of
N states, as ratios to floors measured in the same run:
python bench/daemon.py [--states N ...] [--quick]

Strategy.  The table is bench/common.table(N) (the golden 200k-state table, replicated
past it) in a file; a stand-in pfctl cats it for `-ss -vv`, prints its count as `current
entries` for `-si -v` (so the daemon reads the table as it streams in, as on a real pf)
and nothing else.
`pflowbsd -d -v -a` runs against it (no collector needed: flowdst is a discard port on
127.0.0.1, the control socket off), and once its log says the first poll is done, its
/proc/PID/status (VmRSS now, VmHWM the peak) and /proc/PID/stat (user + system CPU)
are read, then it is stopped.  The floors: the same daemon over an empty table (its
RSS: the interpreter and the modules), and common.floor() of the table's bytes (CPU).
The first poll is the dear one: every state is new and parsed in full; later polls
parse only what changed (bench/poll.py).  Linux only (/proc).
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # bench/ is not a package: its own directory is on sys.path

STANDIN = """#!/bin/sh
case "$*" in
  "-ss -vv") cat "{table}" ;;
  "-si -v") printf 'State Table                          Total             Rate\n'
            printf '  current entries                 %10d\n' {entries} ;;
esac
"""


def _proc(pid: int) -> tuple[int, int, float]:
    """(VmRSS, VmHWM) in bytes and user + system CPU seconds of process pid."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields["VmRSS"][0]) * 1024, int(fields["VmHWM"][0]) * 1024,
            (int(stat[11]) + int(stat[12])) / ticks)


def first_poll(folder: Path, text: bytes) -> tuple[int, int, float]:
    """The daemon's (RSS, peak RSS, CPU seconds) once its first poll of `text` is done."""
    table = folder / "table.txt"
    table.write_bytes(text)
    pfctl = folder / "pfctl"
    pfctl.write_text(STANDIN.format(table=table, entries=text.count(b"   id: ")))
    pfctl.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(common.ROOT), "PFLOWBSD_USER": "root"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pflowbsd", "-d", "-v", "-a", "-t", "3600", "--pfctl", str(pfctl),
         "control", "none", "stats-file", "none", "flowdst", "127.0.0.1:9"],
        stderr=subprocess.PIPE, text=True, env=env, cwd=common.ROOT)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "poll: " in line and " states, " in line:
                time.sleep(0.2)  # the stats after the poll: let it settle in its sleep
                return _proc(proc.pid)
        raise SystemExit(f"the daemon ended before its first poll: {proc.wait()}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--states", type=int, nargs="+", default=[50_000, 200_000, 1_000_000])
    ap.add_argument("--quick", action="store_true", help="20,000 states (a smoke run)")
    args = ap.parse_args()
    sizes = [20_000] if args.quick else args.states
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rss0, peak0, cpu0 = first_poll(folder, b"")
        print(f"# the daemon's process, first poll; {common.interpreter()}")
        print(f"empty_table rss_mb {rss0 / 2**20:.0f}  peak_mb {peak0 / 2**20:.0f}  cpu_s {cpu0:.2f}")
        for n in sizes:
            text = "".join(common.table(n)).encode()
            floor_s, _ = common.cpu(functools.partial(common.floor, text))
            rss, peak, cpu = first_poll(folder, text)
            print(f"daemon_{n} rss_mb {rss / 2**20:.0f} ({rss / rss0:.1f} x empty)  "
                  f"peak_mb {peak / 2**20:.0f} ({peak / peak0:.1f} x empty)  "
                  f"{common.figure('cpu', cpu - cpu0, floor_s)}  "
                  f"table_mb {len(text) / 2**20:.0f}")


if __name__ == "__main__":
    main()
