"""`pflowbsd demo flowdst ADDR:PORT [pflowproto 5|10]` against a real nfcapd.

The demo runs as a process, as a newcomer would run it against their own collector; it
starts no collector of its own.  nfdump's flows are counted against the demo's exporter
line, and their bytes against an independent run of the same simulation (simpf is
deterministic for a seed whatever the start time)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support import replaydata as rd
from tests.support.peers import require
from tests.system.test_demo import simulated_bytes

EXPORTER = re.compile(r"^exporter: +(\d+) flows in (\d+) datagrams \((\d+) template messages\)",
                      re.M)
RATE, DURATION, SEED = 40, 2, 3


def demo(port: int, *words: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pflowbsd", "demo", "--rate", str(RATE),
                           "--duration", str(DURATION), "--seed", str(SEED),
                           "flowdst", f"127.0.0.1:{port}", *words],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("proto", [5, 10])
def test_demo_exports_to_nfcapd(proto, tmp_path):
    nfdump = require("nfdump")
    rows, log, proc = rd.nfcapd_collect(tmp_path / "flows",
                                        lambda port: demo(port, "pflowproto", str(proto)), nfdump)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"pflowproto {proto}" in proc.stdout.splitlines()[0]
    assert "collector:" not in proc.stdout and "check:" not in proc.stdout  # none of its own
    m = EXPORTER.search(proc.stdout)
    assert m, proc.stdout
    flows, _, templates = map(int, m.groups())
    assert flows > 50 and len(rows) == flows
    assert templates == (1 if proto == 10 else 0)
    assert "Sequence Errors: 0" in log and "Bad Packets: 0" in log, log
    assert sum(int(r["byt"]) for r in rows) == simulated_bytes(SEED, RATE, DURATION,
                                                               inet6=proto == 10)
    v6 = [r for r in rows if ":" in r["sa"]]
    assert bool(v6) == (proto == 10)
    if proto == 10:  # nat follows pflowproto 10, as `demo --proto 10` does
        assert any(r["nsa"] not in ("0.0.0.0", "") for r in rows)
