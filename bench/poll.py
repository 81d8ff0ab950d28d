"""CPU of one steady-state poll (scan + diff + parse of what is new + encode of what
expired) with 1 % of the states new and 1 % expired since the last poll, and the
tracker's bytes per state.  Targets: 200k states in < 0.4 s CPU, < 300 B per state.

    python bench/poll.py [FILE]    (default: the 200,000-state golden table)
"""

from __future__ import annotations

import gc
import gzip
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pflowbsd.export.exporter import Exporter
from pflowbsd.flows import Clock, flow_pair
from pflowbsd.pf import states
from pflowbsd.tracker import Tracker

DEFAULT = Path(__file__).resolve().parent.parent / "tests/fixtures/golden/openbsd-big-vv.txt.gz"


def load(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        text = f.read()
    sc = states.scan(text)
    return [text[a:b] for _k, _h, _c, a, b in sc.records]


def one(records: list[str], n: int, changed: float) -> tuple[float, float, int]:
    step = max(1, n // 100)
    before = "".join(records[:n])
    # 1 % expired (the first ones), 1 % new: further records, or, past the table's end,
    # copies of the expired ones under another creatorid
    fresh = records[n:n + step]
    fresh += [r[:r.rindex("creatorid: ") + 11] + "fffffff0" + r[r.rindex("creatorid: ") + 19:]
              for r in records[:step - len(fresh)]]
    after_recs = records[step:n] + fresh
    # a share of the surviving states moved their counters: bump their byte count text
    k = int(n * changed)
    for i in range(0, k):
        r = after_recs[i]
        after_recs[i] = r.replace(" bytes", "1 bytes", 1)
    after = "".join(after_recs)
    tracker = Tracker(select=lambda st: True)
    exporter = Exporter(proto=5)
    tracker.update(before, 1000.0)
    gc.collect()
    t0 = time.process_time()
    up = tracker.update(after, 1010.0)
    now = Clock(1e9, 1010.0)
    for entry in up.expired:
        exporter.export_state(*flow_pair(entry), now)
    exporter.flush(now)
    cpu = time.process_time() - t0
    assert up.new == step and up.gone == step, (up.new, up.gone)
    # bytes per tracked state, the tracker alone
    tracemalloc.start()
    t2 = Tracker(select=lambda st: True)
    t2.update(before, 1000.0)
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(s.size for s in snap.statistics("filename")
               if "/pflowbsd/" in s.traceback[0].filename)
    del t2
    return cpu, n / cpu, size // n


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    records = load(path)
    sizes = [n for n in (10_000, 100_000, 200_000) if n <= len(records)] or [len(records)]
    for changed in (0.0, 0.10):
        for n in sizes:
            cpu, rate, per_state = one(records, n, changed)
            print(f"poll_{n}_changed{int(changed * 100)}pct_cpu_s {cpu:.3f}  "
                  f"states_per_s {rate:,.0f}  bytes_per_state {per_state}")


if __name__ == "__main__":
    main()
