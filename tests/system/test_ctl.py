"""`pflowbsd ctl` against a running daemon (a stand-in pfctl, a UDP listener): every
command, the socket's mode, a stale socket replaced, a live one refusing a second start,
`pflowbsd stats` through the socket, and the -d log's timestamps and request lines."""

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from tests.support import replaydata as rd
from tests.system.test_live import a, b, c, decode_v5, flows_of, polls, standin


def ctl(sock, *words, timeout=30):
    return rd.pflowbsd("ctl", "--control", str(sock), *words, timeout=timeout)


class Running:
    """A daemon polling every 0.3 s, -v, with its control socket at `sock`."""

    def __init__(self, tmp_path, snaps, last, *words, sock=None, control=True):
        tmp_path.mkdir(exist_ok=True)
        self.script = standin(tmp_path, snaps, last)
        self.sock = sock or tmp_path / "ctl.sock"
        self.listener = rd.listener()
        port = self.listener.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(rd.ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pflowbsd", "-d", "-v", "-t", "0.3", "--pfctl", self.script,
             *(["control", str(self.sock)] if control else []), *words,
             "flowdst", f"127.0.0.1:{port}"],
            stderr=subprocess.PIPE, text=True, cwd=rd.ROOT, env=env)
        for _ in range(200):  # bounded: 10 s
            if (self.sock.exists() and polls(self.script) >= 1) or self.proc.poll() is not None:
                break
            time.sleep(0.05)

    def wait_polls(self, n):
        for _ in range(200):
            if polls(self.script) >= n:
                return
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.listener.fileno() >= 0:
                self.after = rd.drain(self.listener)  # what came until it exited
                self.listener.close()
        return self.proc.returncode, err


@pytest.fixture
def daemon(tmp_path):
    d = Running(tmp_path, [a() + b() + c()], a() + b() + c(), "-a", "pflowproto", "10")
    yield d
    d.stop()


def test_every_command_against_a_running_daemon(daemon):
    sock = daemon.sock
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
    st = ctl(sock, "statistics")
    assert st.returncode == 0, st.stderr
    assert st.stdout.startswith("pflow0:\n") and "poll" in st.stdout and "states tracked" in st.stdout

    cfg = ctl(sock, "config")
    assert cfg.returncode == 0 and "pflowproto 10\n" in cfg.stdout and "export all\n" in cfg.stdout
    assert f"control {sock}\n" in cfg.stdout

    states = ctl(sock, "states").stdout
    assert "tcp 10.0.0.5:50000 -> 93.184.216.34:443 20:30 pkts, 5000:60000 bytes, exported: nothing yet" in states
    assert "3 state(s) selected for export" in states

    rd.drain(daemon.listener)
    ex = ctl(sock, "expire-all")
    assert ex.returncode == 0 and ex.stdout.startswith("3 states exported"), ex
    got = rd.drain(daemon.listener)
    assert got and all(d[:2] == b"\x00\x0a" for d in got)  # IPFIX, sent at once
    assert "exported: 20:30 pkts, 5000:60000 bytes" in ctl(sock, "states").stdout
    again = ctl(sock, "expire-all")  # nothing new since: nothing goes twice
    assert again.stdout.startswith("0 states exported"), again.stdout

    tmpl = ctl(sock, "send-template")
    assert tmpl.returncode == 0 and "templates sent: 1" in tmpl.stdout
    assert ctl(sock, "debug", "off").stdout == "debug off\n"
    assert ctl(sock, "reload").stdout == "reloading\n"

    bad = ctl(sock, "debug", "maybe")
    assert bad.returncode == 2 and "debug on|off" in bad.stderr, bad.stderr
    assert ctl(sock, "shutdown").stdout == "shutting down\n"
    daemon.proc.wait(10)  # it goes by itself
    status, err = daemon.stop()
    assert status == 0, err
    assert not sock.exists()
    assert "SIGHUP: re-reading" in err
    assert "control: 'statistics': ok" in err  # every request logged at debug (-v)
    line = err.strip().splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d pflowbsd\[pflow0\]: ", line), line


def test_stats_asks_the_daemon_when_it_runs(daemon, tmp_path):
    run = rd.pflowbsd("stats", "--control", str(daemon.sock),
                      "--stats-file", str(tmp_path / "none.prom"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("pflow0:\n") and "poll" in run.stdout
    daemon.stop()
    gone = rd.pflowbsd("stats", "--control", str(daemon.sock),
                       "--stats-file", str(tmp_path / "none.prom"))
    assert gone.returncode == 1 and "none.prom" in gone.stderr, gone.stderr  # then the file


def test_a_second_instance_on_the_same_socket_is_refused(daemon, tmp_path):
    run = rd.pflowbsd("-d", "--pfctl", daemon.script, "control", str(daemon.sock),
                      "flowdst", "127.0.0.1:9", timeout=30)
    assert run.returncode == 1
    assert "another pflowbsd answers there" in run.stderr and len(run.stderr.splitlines()) == 1
    assert ctl(daemon.sock, "statistics").returncode == 0  # the first one is untouched


def test_a_socket_left_by_a_killed_daemon_is_replaced(tmp_path):
    sock = tmp_path / "ctl.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(sock))  # bound, never listening: as a SIGKILLed daemon leaves it
    left.close()
    d = Running(tmp_path, [a()], a(), sock=sock)
    try:
        assert ctl(sock, "statistics").returncode == 0
    finally:
        status, err = d.stop()
    assert status == 0, err


def test_expire_all_then_removal_exports_only_the_rest(tmp_path):
    grown = a("25:41", "6100:71234")
    d = Running(tmp_path, [a() + b()], a() + b(), "-a")
    try:
        assert ctl(d.sock, "expire-all").stdout.startswith("2 states exported")
        first = rd.drain(d.listener)
        (tmp_path / "pf" / "last").write_text(grown)  # b gone, a grown
        n = polls(d.script)
        d.wait_polls(n + 2)
    finally:
        status, err = d.stop()
    rest = d.after
    assert status == 0, err
    assert decode_v5(first) == sorted(flows_of("10.0.0.5", "93.184.216.34", 50000, 443, 6, (20, 30), (5000, 60000))
                                      + flows_of("10.0.0.5", "9.9.9.9", 41000, 53, 17, (3, 2), (183, 300)))
    assert decode_v5(rest) == []  # b had nothing more; a is alive and waits for its removal
    assert "exporter: 4 flows in" in err  # the exit line: the exporter's counts ...
    assert re.search(r"sent to 127\.0\.0\.1:\d+: \d+ datagrams", err)  # ... and each collector's


def test_ctl_without_a_daemon_says_so(tmp_path):
    run = ctl(tmp_path / "nothing.sock", "statistics")
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "no pflowbsd answers there" in run.stderr, run.stderr


def test_the_default_socket_and_control_none(tmp_path, run_dir):
    default = run_dir / "pflowbsd.pflow0.sock"  # /var/run/pflowbsd.IF.sock, moved for tests
    d = Running(tmp_path, [a()], a(), sock=default, control=False)
    try:
        assert ctl(default, "statistics").returncode == 0
        assert rd.pflowbsd("ctl", "statistics").returncode == 0  # found by -i alone
    finally:
        d.stop()
    off = Running(tmp_path / "off", [a()], a(), "control", "none", sock=default, control=False)
    try:
        off.wait_polls(2)
        assert not default.exists()
        run = rd.pflowbsd("ctl", "control", "none", "statistics")
        assert run.returncode == 2, run.stderr  # `control` is not a command
    finally:
        off.stop()


def test_under_u_the_socket_is_root_and_the_users_group(tmp_path):
    pytest.importorskip("pflowbsd.shell.privsep")
    import pwd
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    nobody = pwd.getpwnam("nobody")
    tmp_path.chmod(0o755)
    d = Running(tmp_path, [a()], a(), "-u", "nobody")
    try:
        st = os.stat(d.sock)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, nobody.pw_gid, 0o660)
        assert ctl(d.sock, "statistics").returncode == 0  # the daemon answers as nobody
    finally:
        status, err = d.stop()
    assert status == 0, err
    assert "running as nobody" in err
