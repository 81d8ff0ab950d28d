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
CHECK = re.compile(r"^check: +collector decoded (\d+) flows in (\d+) datagrams \((\d+) template "
                   r"messages\), exporter sent (\d+) in (\d+) \((\d+)\): (\w+)$", re.M)
EXPORTER = re.compile(r"^exporter: .* \((\d+) template messages\)", re.M)
COLLECTOR = re.compile(r"^collector: .* (\d+) template records in (\d+) template messages", re.M)


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
    assert m and m[7] == "OK"
    decoded, dgrams, tmpl, sent, sent_dgrams, sent_tmpl = map(int, m.groups()[:6])
    assert decoded == sent == len(rows) > 50 and dgrams == sent_dgrams > 0
    assert tmpl == sent_tmpl and (tmpl == 0) == (which == "v5")
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
    assert m and m[7] == "OK" and int(m[1]) > 0


def test_template_counts_agree_in_one_unit():
    """The exporter counts template messages (pflow_sendout_ipfix_tmpl: all templates in
    one), the collector the same messages and the records they held: 4 with nat."""
    rc, text, _ = run(10, rate=10, duration=7)  # 70 simulated s: tmpl-interval 30 fires twice
    exporter, collector = EXPORTER.search(text), COLLECTOR.search(text)
    assert rc == 0 and exporter and collector, text
    assert int(exporter[1]) == int(collector[2]) == 3
    assert int(collector[1]) == 4 * 3


class _Listener:
    """A plain UDP socket standing in for someone's collector: counts what arrives."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]

    def datagrams(self) -> list[bytes]:
        got = []
        try:
            while True:
                got.append(self.sock.recv(65535))
        except TimeoutError:
            return got


def test_flowdst_sends_there_and_starts_no_collector():
    a, b = _Listener(), _Listener()
    out = io.StringIO()
    rc = cmd_demo(rate=30, duration=2, proto=5, port=0, seed=1, out=out,
                  params=["flowdst", f"127.0.0.1:{a.port}", "pflowproto", "10", "nat", "off",
                          "flowdst", f"127.0.0.1:{b.port}", "domain", "7"])
    text = out.getvalue()
    assert rc == 0, text
    assert (f"pflowproto 10 -> flowdst 127.0.0.1:{a.port}, 127.0.0.1:{b.port}"
            in text.splitlines()[0])
    assert "collector:" not in text and "check:" not in text
    sent = re.search(r"^exporter: +(\d+) flows in (\d+) datagrams", text, re.M)
    got_a, got_b = a.datagrams(), b.datagrams()
    assert got_a == got_b and len(got_a) == int(sent[2]) > 0
    from pflowbsd.collector.decode import Decoder
    dec = Decoder()
    flows = [f for d in got_a for f in dec.feed(d, "127.0.0.1")]
    assert len(flows) == int(sent[1]) and {f["domain"] for f in flows} == {7}
    assert not any("nat_src" in f for f in flows)  # nat off, though pflowproto 10
    assert dec.stats.templates == 2  # plain v4 and v6 only


@pytest.mark.parametrize("params, message", [
    (["carp", "carp0"], "'carp': not a demo word"),
    (["select", "all"], "'select': not a demo word"),
    (["flowdst", "127.0.0.1"], "a port is required"),
    (["pflowproto", "9"], "pflowproto '9': want one of 5, 10"),
    (["flowdst", "[::1]:9995", "flowsrc", "127.0.0.1"], "different address families"),
])
def test_demo_words_refused_as_usage_errors(params, message):
    out = io.StringIO()
    assert cmd_demo(rate=5, duration=1, proto=5, port=0, seed=1, out=out, params=params) == 2
    assert message in out.getvalue() and out.getvalue().count("\n") == 1


def test_port_and_flowdst_do_not_mix():
    out = io.StringIO()
    assert cmd_demo(rate=5, duration=1, proto=5, port=9995, seed=1, out=out,
                    params=["flowdst", "127.0.0.1:9995"]) == 2
    assert "--port" in out.getvalue()
