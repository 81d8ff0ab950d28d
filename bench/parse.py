"""The cold parse of a pfctl -ss -vv table, as a ratio to the floor (bench/common.py)
measured in the same run: python bench/parse.py [--quick] [--states N] [FILE(.gz)]

Strategy.  Cold means a fresh process: pf.states keeps memo caches, so a second parse in
the same process is cheaper than what a daemon pays for new states.  Each round runs one
child that loads the table's bytes, times the floor (decode + split into lines), then
parse_states(decode) once (cold), then again (warm).  Best of three rounds, each
figure against the floor of the same rounds.  The table must parse with 0 errors.
Default: the 200,000-state golden table; `--states N` takes its first N records
(replicated past 200k, see common.replicate).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # bench/ is not a package: its own directory is on sys.path

from pflowbsd.pf.states import parse_states


def child(path: Path, n: int) -> None:
    data = common.read_golden(path)
    if n:
        data = "".join(common.table(n, path)).encode()
    t_floor, _ = common.cpu(lambda: common.floor(data))
    t_cold, table = common.cpu(lambda: parse_states(data.decode("utf-8", "replace")))
    states, errors = len(table.states), len(table.errors)  # type: ignore[attr-defined]
    del table
    t_warm, _ = common.cpu(lambda: parse_states(data.decode("utf-8", "replace")))
    print(json.dumps({"floor": t_floor, "cold": t_cold, "warm": t_warm, "states": states,
                      "errors": errors, "bytes": len(data)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", type=Path, default=common.GOLDEN)
    ap.add_argument("--states", type=int, default=0, help="the first N records (default: all)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="20,000 states (a smoke run)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    n = 20_000 if args.quick else args.states
    if args.child:
        return child(args.file, n)
    rounds = [common.in_child(__file__, [str(args.file), "--states", str(n)])
              for _ in range(args.runs)]
    r = rounds[0]
    if r["errors"]:
        raise SystemExit(f"{args.file}: {r['errors']} parse errors")
    best = {k: min(float(x[k]) for x in rounds) for k in ("floor", "cold", "warm")}  # type: ignore[arg-type]
    states = int(r["states"])  # type: ignore[call-overload]
    print(f"# {states} states, {r['bytes']:,} bytes, 0 errors; best of {args.runs} fresh"
          f" processes; {common.interpreter()}")
    print(common.figure("parse_cold", best["cold"], best["floor"],
                        us_per_state=f"{best['cold'] / states * 1e6:.2f}"))
    print(common.figure("parse_warm", best["warm"], best["floor"],
                        us_per_state=f"{best['warm'] / states * 1e6:.2f}"))


if __name__ == "__main__":
    main()
