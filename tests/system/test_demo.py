"""`pflowbsd demo`: the whole pipeline on simpf, over loopback UDP to its own collector.
The rows the collector printed are checked against an independent run of the same
simulation (simpf is deterministic for a seed whatever the start time)."""

from __future__ import annotations

import io
import re
import socket
import subprocess
import sys

import pytest

from pflowbsd.sim import demo
from pflowbsd.sim.demo import cmd_demo
from pflowbsd.sim.simpf import SimPf
from tests.support import ROOT

ROW = re.compile(r"^\+\d\d:\d\d  (\S+) +(\S+) -> (\S+) +(\d+) +(\d+) +(\d+:\d\d:\d\d)(?:  (.*))?$")
CHECK = re.compile(r"^check: +collector decoded (\d+) flows in (\d+) datagrams, exporter "
                   r"sent (\d+) in (\d+): (\w+)$", re.M)


def run(proto: int, rate: float = 50, duration: float = 3, seed: int = 1):
    out = io.StringIO()
    rc = cmd_demo(rate=rate, duration=duration, proto=proto, port=0, seed=seed, out=out)
    text = out.getvalue()
    rows = [m for m in map(ROW.match, text.splitlines()) if m]
    return rc, text, rows


def simulated_bytes(seed, rate, duration, inet6: bool) -> int:
    """What pf counted on the pflow states the demo ran: every one is flushed at the end."""
    sim = SimPf(seed=seed, rate=rate / demo.SPEED)
    sim.advance(sim.now + round(duration * demo.SPEED))
    sim.flush_states()
    return sum(sum(s.bytes) for s in sim.gone.values()
               if s.pflow and (inet6 or s.af == "inet"))


@pytest.fixture(scope="module")
def v5():
    return run(5)


@pytest.fixture(scope="module")
def ipfix():
    return run(10)


@pytest.mark.parametrize("which", ["v5", "ipfix"])
def test_demo_runs_and_collector_agrees(which, request):
    rc, text, rows = request.getfixturevalue(which)
    assert rc == 0
    m = CHECK.search(text)
    assert m and m[5] == "OK"
    decoded, dgrams, sent, sent_dgrams = map(int, m.groups()[:4])
    assert decoded == sent == len(rows) > 50 and dgrams == sent_dgrams > 0
    for word in ("simulated pf:", "tracker:", "exporter:", "sender:", "collector:"):
        assert re.search(rf"^{word}", text, re.M)
    assert "send errors" in text and "0 malformed" in text


def test_v5_rows_are_ipv4_and_ipv6_is_counted_as_skipped(v5):
    rc, text, rows = v5
    assert all("[" not in m[2] and "[" not in m[3] for m in rows)
    skipped = re.search(r"(\d+) IPv6 states skipped", text)
    assert skipped and int(skipped[1]) > 0
    assert not any(m[7] for m in rows)  # no NAT columns without IPFIX
    assert sum(int(m[5]) for m in rows) == simulated_bytes(1, 50, 3, inet6=False)


def test_ipfix_rows_show_ipv6_and_nat(ipfix):
    rc, text, rows = ipfix
    v6 = [m for m in rows if m[2].startswith("[")]
    assert v6 and re.search(rf"\b{len(v6)} IPv6 flows", text)
    assert {m[1] for m in v6} >= {"tcp", "udp", "ipv6-icmp"}
    natted = [m for m in rows if m[7]]
    # outbound nat-to shows the translated source, inbound rdr-to the internal server
    assert any("203.0.113.1:" in m[7].split(" -> ")[0] for m in natted)
    assert any("10.0.0.10:8080" in m[7].split(" -> ")[1] for m in natted)
    assert sum(int(m[5]) for m in rows) == simulated_bytes(1, 50, 3, inet6=True)


def test_long_lived_state_is_exported_once_with_its_age(ipfix):
    rc, text, rows = ipfix
    ssh = [m for m in rows if m[3].endswith(":22") or m[2].endswith(":22")]
    assert len(ssh) == 2 and all(int(m[6].split(":")[0]) >= 26 for m in ssh)


def test_demo_refuses_bad_arguments_and_a_busy_port():
    out = io.StringIO()
    assert cmd_demo(rate=5, duration=1, proto=9, port=0, seed=1, out=out) == 2
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    try:
        out = io.StringIO()
        rc = cmd_demo(rate=5, duration=1, proto=5, port=busy.getsockname()[1], seed=1,
                      out=out)
        assert rc == 1 and "cannot listen" in out.getvalue()
    finally:
        busy.close()


def test_cli_demo():
    proc = subprocess.run([sys.executable, "-m", "pflowbsd", "demo", "--duration", "1",
                           "--rate", "30", "--proto", "10"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    m = CHECK.search(proc.stdout)
    assert m and m[5] == "OK" and int(m[1]) > 0
