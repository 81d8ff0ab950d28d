"""`pflowbsd dump` as a listening process: datagrams in over loopback, SIGTERM out."""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys

import pytest

from pflowbsd.collector.dump import cmd_dump
from tests.support import ROOT
from tests.support.datagrams import V5_FLOWS, v5_datagram


def _spawn(listen):
    code = ("import sys; from pflowbsd.collector.dump import cmd_dump; "
            f"sys.exit(cmd_dump({listen!r}, True, None, None, sys.stdout, sys.stderr))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stderr.readline()
    assert "listening on" in first, first + proc.stderr.read()
    return proc, int(first.rsplit(":", 1)[1])


@pytest.mark.parametrize("listen, family, addr", [
    ("127.0.0.1:0", socket.AF_INET, "127.0.0.1"), ("[::1]:0", socket.AF_INET6, "::1")])
def test_listener_until_sigterm(listen, family, addr):
    proc, port = _spawn(listen)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.sendto(b"junk", (addr, port))  # first: it is handled before the flows print
            s.sendto(v5_datagram(V5_FLOWS[:2]), (addr, port))
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert [f["src_port"] for f in lines] == [40000, 80] and lines[0]["exporter"] == addr
    assert "malformed datagram" in err and "2 flows, 1 malformed" in err


def test_listener_bad_address():
    err = io.StringIO()
    assert cmd_dump("localhost", False, None, None, io.StringIO(), err) == 1
    assert "cannot listen on localhost" in err.getvalue()
