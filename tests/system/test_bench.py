"""The benchmarks run (`--quick`) and print their figure lines; never their timings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.peers import require

BENCH = Path(__file__).resolve().parents[2] / "bench"
RATIO = r" \d+\.\d x floor  cpu_s \d+\.\d{3}  floor_s \d+\.\d{3}"


def run(script: str) -> str:
    out = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return out.stdout


def test_parse() -> None:
    out = run("parse.py")
    assert re.search(r"^# 20000 states, [\d,]+ bytes, 0 errors;", out, re.M)
    for name in ("parse_cold", "parse_warm"):
        assert re.search(f"^{name}{RATIO}  us_per_state ", out, re.M), out


def test_poll() -> None:
    out = run("poll.py")
    assert "steady: 200 new, 200 gone, 200 changed" in out
    assert re.search(f"^first_poll_20000{RATIO}  us_per_state ", out, re.M), out
    assert re.search(f"^steady_poll_20000{RATIO}  datagrams [1-9]", out, re.M), out
    assert re.search(r"^first_poll_20000_rss \d+ B/state peak above before  kept \d+ B/state",
                     out, re.M), out
    assert re.search(r"^bookkeeping_20000 \d+\.\d{3} x steady_poll  cpu_s [\d.]+  state_delta "
                     r"[\d.]+  statistics [\d.]+  control [\d.]+  delta_bytes [1-9]", out, re.M), out
    for name in ("state_file_compaction", "state_file_load", "ctl_states"):
        assert re.search(f"^{name}_20000 \\d+\\.\\d\\d x steady_poll  cpu_s ", out, re.M), out


def test_versus_softflowd() -> None:
    require("softflowd")
    out = run("versus_softflowd.py")
    for name in ("worst", "outlive", "worst_10x", "outlive_10x"):
        assert re.search(f"^{name}_pflowbsd{RATIO}  states 2000", out, re.M), out
        assert re.search(f"^{name}_softflowd{RATIO}  packets [1-9]", out, re.M), out
        assert re.search(f"^{name}_ratio \\d+\\.\\d\\d pflowbsd/softflowd$", out, re.M), out
    assert "# left out: softflowd's capture" in out


def test_daemon() -> None:
    if not Path("/proc/self/status").exists():
        import pytest
        pytest.skip("bench/daemon.py reads /proc")
    out = run("daemon.py")
    assert re.search(r"^empty_table rss_mb \d+  peak_mb \d+  cpu_s ", out, re.M), out
    assert re.search(r"^daemon_20000 rss_mb \d+ \(\d+\.\d x empty\)  peak_mb \d+ \(\d+\.\d x empty\)"
                     f"  cpu{RATIO}  table_mb \\d+$", out, re.M), out
