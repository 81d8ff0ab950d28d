"""What the benchmarks share: the floor, interleaved best-of-N CPU timing, a child
process's peak RSS, and the golden table, whole or replicated.

Strategy.  Every figure is a ratio to a floor measured in the same run: the same python
decoding the same bytes as UTF-8 and splitting them into lines, the least a poll can
cost.  `interleaved` runs the floor and the measured cases in turn, round after round,
and keeps each one's least CPU time (time.process_time), so a busy neighbour or a
frequency step hurts both alike.  Memory is measured in a fresh child process
(`in_child`): it loads its input, resets its peak (/proc/self/clear_refs, Linux),
reads VmRSS, runs the case and reads VmHWM, so one measurement cannot pollute another.
`replicate` makes a bigger table from the golden one in exact pfctl text: copy k XORs
each id with k << 60 and each address with k (IPv4: the second octet; IPv6: the first
group), so ids and addresses differ from every other copy's.
"""

from __future__ import annotations

import gc
import gzip
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests/fixtures/golden/openbsd-big-vv.txt.gz"
sys.path.insert(0, str(ROOT))

# A record: its first line starts in column 0, its continuation lines with a space.
RECORD = re.compile(r"^\S.*\n(?:[ \t].*\n)*", re.M)
ID = re.compile(r"(   id: )([0-9a-f]{16})( creatorid: )")
IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})(\.\d{1,3}\.\d{1,3}(?::\d+)?)$")
IPV6 = re.compile(r"^([0-9a-f]{1,4})(:[0-9a-f]{0,4}:[0-9a-f:]*(?:\[\d+\])?)$")
WRAP = "(){}"


def read_golden(path: Path = GOLDEN) -> bytes:
    """The table's bytes, as pfctl wrote them."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        return f.read()


def records(text: str) -> list[str]:
    return RECORD.findall(text)


def floor(data: bytes) -> object:
    """The least a poll can cost: read the text as UTF-8 and split it into lines."""
    return data.decode("utf-8").splitlines()


def _host(tok: str, k: int) -> str:
    core = tok.strip(WRAP)
    m = IPV4.match(core)
    if m:
        new = f"{m[1]}.{int(m[2]) ^ k}{m[3]}"
    else:
        m = IPV6.match(core)
        if not m or int(m[1], 16) ^ k == 0:
            return tok
        new = f"{int(m[1], 16) ^ k:x}{m[2]}"
    return tok.replace(core, new)


def replicate(recs: Sequence[str], k: int) -> list[str]:
    """Copy k (k >= 1) of the records: other ids, other addresses, the same text."""
    out = []
    for r in recs:
        nl = r.index("\n")
        head = " ".join(_host(t, k) for t in r[:nl].split(" "))
        body = ID.sub(lambda m: f"{m[1]}{int(m[2], 16) ^ (k << 60):016x}{m[3]}", r[nl:])
        out.append(head + body)
    return out


def table(n: int, path: Path = GOLDEN) -> list[str]:
    """n records: the golden table's, then its copies 1, 2, ... as far as needed."""
    base = records(read_golden(path).decode("utf-8"))
    out = base[:n]
    k = 1
    while len(out) < n:
        out += replicate(base[:n - len(out)], k)
        k += 1
    return out


def cpu(f: Callable[[], object]) -> tuple[float, object]:
    gc.collect()
    t0 = time.process_time()
    out = f()
    return time.process_time() - t0, out


Case = Callable[[], Callable[[], object]]  # untimed setup, returning the timed call


def interleaved(cases: dict[str, Case], runs: int = 3) -> tuple[dict[str, float], dict[str, object]]:
    """Each case's least CPU time over `runs` rounds, the cases taking turns in every
    round; and each case's last result (for the caller's checks)."""
    best = dict.fromkeys(cases, float("inf"))
    last: dict[str, object] = {}
    for _ in range(runs):
        for name, case in cases.items():
            timed = case()
            t, last[name] = cpu(timed)
            best[name] = min(best[name], t)
            del timed
    return best, last


def figure(name: str, seconds: float, floor_s: float, **more: object) -> str:
    """One figure line: the name, the ratio to the floor, then the absolute figures."""
    extra = "".join(f"  {k} {v}" for k, v in more.items())
    return f"{name} {seconds / floor_s:.1f} x floor  cpu_s {seconds:.3f}  floor_s {floor_s:.3f}{extra}"


# In the child process.

def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss() -> int:
    """This process's resident set now, in bytes, after a collection."""
    gc.collect()
    return _status("VmRSS")


def interpreter() -> str:
    return f"{sys.executable} {sys.version.split()[0]}"


def peak_above(run: Callable[[], object]) -> tuple[int, int]:
    """(RSS before, peak RSS during run() above it), in bytes: in this process, so call it
    in a child that holds nothing else (see in_child)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = _status("VmRSS")
    out = run()
    peak = _status("VmHWM")
    del out
    return before, peak - before


def in_child(script: str, args: list[str]) -> dict[str, object]:
    """Run `python script --child ARGS` and return the JSON object on its last line."""
    run = subprocess.run([sys.executable, script, "--child", *args], capture_output=True,
                         text=True, check=False)
    if run.returncode:
        raise SystemExit(f"{script} child failed: {run.stderr.strip().splitlines()[-1:]}")
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))
