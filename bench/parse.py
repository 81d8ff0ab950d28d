"""Speed of the pfctl -ss -vv parser: python bench/parse.py [FILE(.gz)].

Prints states_per_s (parse_states, every state fully parsed),
floor_states_per_s (a bare str.splitlines() of the same text, per state),
peak_rss_mb, scan_states_per_s (the tracker's scan()), then
parse_record_us (the tracker's full parse of one new record, per call, over
the first 50,000 records), and the interpreter. CPU time (time.process_time),
best of three runs.
"""

from __future__ import annotations

import gzip
import os
import resource
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pflowbsd.pf.states import parse_record, parse_states, scan

DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                       "fixtures", "golden", "openbsd-big-vv.txt.gz")


def best(f: Callable[[], object], runs: int = 3) -> float:
    """The least CPU time of `runs` calls of f."""
    out = None
    best_t = float("inf")
    for _ in range(runs):
        t0 = time.process_time()
        out = f()
        best_t = min(best_t, time.process_time() - t0)
        del out
    return best_t


def main(argv: list[str]) -> None:
    path = argv[1] if len(argv) > 1 else DEFAULT
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    n = len(parse_states(text).states)
    t_parse = best(lambda: parse_states(text))
    t_floor = best(lambda: text.splitlines())
    t_scan = best(lambda: scan(text))
    spans = [(r[3], r[4]) for r in scan(text).records[:50_000]]
    t_rec = best(lambda: [parse_record(text, s, e) for s, e in spans])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"states_per_s {n / t_parse:.0f}")
    print(f"floor_states_per_s {n / t_floor:.0f}")
    print(f"peak_rss_mb {rss:.0f}")
    print(f"scan_states_per_s {n / t_scan:.0f}")
    if spans:
        print(f"parse_record_us {t_rec / len(spans) * 1e6:.2f}")
    # An unoptimized CPython (pyenv's default build: no PGO/LTO, shared libpython)
    # parses ~20 % slower than a distribution's python3: say which one this was.
    print(f"interpreter {sys.executable} {sys.version.split()[0]}")


if __name__ == "__main__":
    main(sys.argv)
