"""The cold parse of a pfctl -ss -vv table, as a ratio to the floor (bench/common.py)
measured in the same run: python bench/parse.py [--quick] [--states N] [FILE(.gz)]

Strategy.  Cold means a fresh process: pf.states keeps memo caches, so a second parse in
the same process is cheaper than what a daemon pays for new states.  Each round runs one
child per scanner (pf/fastscan.py: the C extension, and the regex under PFLOWBSD_PURE=1)
that loads the table's bytes, times the floor (decode + split into lines), then
parse_states(decode) once (cold), then again (warm), then the scanner's findall alone,
then the steady poll's scans (fastscan.tails and fastscan.layout, best of three each).
Best of three rounds; every figure is against the least floor of all the children of
the run.  The table must parse with 0 errors.  The figures of the scanner fastscan
picks by default (C when it is built) are parse_cold, parse_warm, findall, tails and
layout; the pure ones', when C is there too, end in _pure.  Default: the 200,000-state
golden table; `--states N` takes its first N records (replicated past 200k, see
common.replicate).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # bench/ is not a package: its own directory is on sys.path

from pflowbsd.pf import fastscan
from pflowbsd.pf.states import parse_states

PATHS = {"c": "", "pure": "1"}  # PFLOWBSD_PURE for each scanner's child


def child(path: Path, n: int) -> None:
    data = common.read_golden(path)
    if n:
        data = "".join(common.table(n, path)).encode()
    t_floor, _ = common.cpu(lambda: common.floor(data))
    t_cold, table = common.cpu(lambda: parse_states(data.decode("utf-8", "replace")))
    states, errors = len(table.states), len(table.errors)  # type: ignore[attr-defined]
    del table
    t_warm, _ = common.cpu(lambda: parse_states(data.decode("utf-8", "replace")))
    text = data.decode("utf-8", "replace")
    t_findall, found = common.cpu(lambda: fastscan.findall("vv", text))
    n_found = len(found)
    del found
    t_tails = min(common.cpu(lambda: fastscan.tails(text))[0] for _ in range(3))
    t_layout = min(common.cpu(lambda: fastscan.layout(text))[0] for _ in range(3))
    tails, (_, heads) = fastscan.tails(text), fastscan.layout(text)
    print(json.dumps({"floor": t_floor, "cold": t_cold, "warm": t_warm, "findall": t_findall,
                      "tails": t_tails, "layout": t_layout, "n_tails": len(tails),
                      "heads": heads,
                      "found": n_found, "accelerated": fastscan.ACCELERATED,
                      "states": states, "errors": errors, "bytes": len(data)}))


def rounds_of(path: str, args: list[str], runs: int) -> dict[str, list[dict[str, object]]]:
    """`runs` rounds, each one child per scanner, taking turns."""
    out: dict[str, list[dict[str, object]]] = {name: [] for name in PATHS}
    saved = os.environ.get("PFLOWBSD_PURE")
    try:
        for _ in range(runs):
            for name, pure in PATHS.items():
                os.environ["PFLOWBSD_PURE"] = pure
                out[name].append(common.in_child(__file__, args))
    finally:
        os.environ.pop("PFLOWBSD_PURE", None)
        if saved is not None:
            os.environ["PFLOWBSD_PURE"] = saved
    return out


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
    by_path = rounds_of(__file__, [str(args.file), "--states", str(n)], args.runs)
    if not by_path["c"][0]["accelerated"]:
        print("# pflowbsd.pf._fastscan is not built: the regex's figures only")
        del by_path["c"]
    r = by_path["pure"][0]
    if r["errors"]:
        raise SystemExit(f"{args.file}: {r['errors']} parse errors")
    floor = min(float(x["floor"]) for rounds in by_path.values() for x in rounds)  # type: ignore[arg-type]
    states = int(r["states"])  # type: ignore[call-overload]
    print(f"# {states} states, {r['bytes']:,} bytes, 0 errors; best of {args.runs} fresh"
          f" processes per scanner; {common.interpreter()}")
    for name, rounds in by_path.items():
        assert {x["found"] for x in rounds} == {states} and len({x["accelerated"] for x in rounds}) == 1
        assert {x["n_tails"] for x in rounds} == {x["heads"] for x in rounds} == {states}
        best = {k: min(float(x[k]) for x in rounds)  # type: ignore[arg-type]
                for k in ("cold", "warm", "findall", "tails", "layout")}
        suffix = "_pure" if name == "pure" and "c" in by_path else ""  # plain: the default scanner
        scanner = "c" if name == "c" else "regex"
        for what in ("cold", "warm"):
            print(common.figure(f"parse_{what}{suffix}", best[what], floor,
                                us_per_state=f"{best[what] / states * 1e6:.2f}", scanner=scanner))
        print(common.figure(f"findall{suffix}", best["findall"], floor, scanner=scanner))
        for what in ("tails", "layout"):
            print(common.figure(f"{what}{suffix}", best[what], floor, scanner=scanner))

if __name__ == "__main__":
    main()
