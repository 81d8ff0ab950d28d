"""Privilege separation for real (issue 12, point 2): started as root with -u USER, the
daemon's UDP socket belongs to a process of USER, pfctl runs as root (through the
helper), the state, statistics and --record files are USER's; a missing USER is one
line and exit 1; -u root runs as before, with a warning.  Run as root only (CI is).

The interpreter here lives under /root (mode 0700), which USER cannot read: every
import after the drop would fail, so these runs also check that everything is loaded
before it."""

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pflowbsd.shell import privsep
from tests.support import replaydata as rd
from tests.system import test_live as live
from tests.system import test_restart as restart

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop needs root")
USER = "nobody"


def socket_owner(port: int) -> tuple[int, int]:
    """(pid, uid) of the process holding the UDP socket connected to 127.0.0.1:port."""
    inode = None
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        f = line.split()
        if f[2].upper() == f"0100007F:{port:04X}":
            inode = f[9]
    assert inode, f"no UDP socket to port {port}"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" for fd in fds):
                return int(pid), os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
    raise AssertionError(f"no process holds socket inode {inode}")


def children(pid: int) -> list[tuple[int, int]]:
    """(pid, uid) of pid's children."""
    out = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append((int(p), os.stat(f"/proc/{p}").st_uid))
        except (OSError, ValueError, IndexError):
            continue
    return out


@pytest.fixture
def state_dir():
    """A folder USER owns (as the rc.d scripts make /var/db/pflowbsd)."""
    d = Path(tempfile.mkdtemp(prefix="pflowbsd-privsep-", dir="/tmp"))
    pw = pwd.getpwnam(USER)
    os.chown(d, pw.pw_uid, pw.pw_gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def logged_uid(script: str) -> str:
    """The stand-in pfctl, saying which uid runs it (into `uids`)."""
    text = Path(script).read_text()
    Path(script).write_text(text.replace("\n", '\nid -u >> "$(dirname "$0")/uids"\n', 1))
    return script


@as_root
def test_the_daemon_runs_as_user_and_pfctl_as_root(tmp_path, state_dir):
    # a copy of the package under tmp_path, a folder USER cannot read (0700 root)
    home = tmp_path / "home"
    shutil.copytree(rd.ROOT / "pflowbsd", home / "pflowbsd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    assert not os.access(home, os.R_OK, effective_ids=False) or os.stat(tmp_path).st_mode & 0o077 == 0
    script = logged_uid(live.standin(tmp_path, [live.a() + live.b()], last=live.a()))
    with rd.listener() as s:
        port = s.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(home), "PFLOWBSD_USER": ""}
        proc = subprocess.Popen([sys.executable, "-m", "pflowbsd", "-d", "-t", "0.3", "-u", USER,
                                 "--pfctl", script, "--state-file", str(state_dir / "pflow0.state"),
                                 "--stats-file", str(state_dir / "pflow0.prom"),
                                 "--record", str(state_dir / "rec"),
                                 "flowdst", f"127.0.0.1:{port}"],
                                stderr=subprocess.PIPE, text=True, cwd=home, env=env)  # fmt: skip
        try:
            restart.wait_polls(script, 4, proc)
            time.sleep(0.3)
            owner = socket_owner(port) if proc.poll() is None else None
            kids = children(proc.pid)
            for sig in (signal.SIGHUP, signal.SIGUSR1):  # what runs later, as USER
                proc.send_signal(sig)
                time.sleep(0.5)
        finally:
            err = restart.stopped(proc)
        got = live.decode_v5(rd.drain(s))
    nobody = pwd.getpwnam(USER).pw_uid
    assert proc.returncode == 0, err
    assert owner == (proc.pid, nobody), err  # the UDP socket: the main process, as USER
    assert [uid for _pid, uid in kids] == [0], (kids, err)  # one helper, root
    assert "Traceback" not in err and f"running as {USER}" in err, err
    assert "re-reading" in err and "not reloaded" not in err and "statistics: " in err, err
    assert set((tmp_path / "pf" / "uids").read_text().split()) == {"0"}  # pfctl ran as root
    assert got == live.flows_of("10.0.0.5", "9.9.9.9", 41000, 53, 17, (3, 2), (183, 300)), err
    for f in ("pflow0.state", "pflow0.prom", "rec", *(f"rec/{n}" for n in os.listdir(state_dir / "rec"))):
        assert (state_dir / f).stat().st_uid == nobody, f
    assert any(n.endswith(".states") for n in os.listdir(state_dir / "rec"))


@as_root
def test_the_table_streams_through_the_helper(tmp_path, state_dir):
    """Without --record the daemon reads -ss -vv as the helper forwards it, frame by
    frame (neither side holds the whole table), and exports what it would otherwise."""
    script = logged_uid(live.standin(tmp_path, [live.a() + live.b()], last=live.a()))
    with rd.listener() as s:
        port = s.getsockname()[1]
        env = {**os.environ, "PFLOWBSD_USER": ""}
        proc = subprocess.Popen([sys.executable, "-m", "pflowbsd", "-d", "-v", "-t", "0.3",
                                 "-u", USER, "--pfctl", script,
                                 "--state-file", str(state_dir / "pflow0.state"),
                                 "flowdst", f"127.0.0.1:{port}"],
                                stderr=subprocess.PIPE, text=True, cwd=rd.ROOT, env=env)  # fmt: skip
        try:
            restart.wait_polls(script, 4, proc)
            time.sleep(0.3)
        finally:
            err = restart.stopped(proc)
        got = live.decode_v5(rd.drain(s))
    assert proc.returncode == 0, err
    assert f"running as {USER}" in err and "(streamed)" in err and "Traceback" not in err, err
    assert set((tmp_path / "pf" / "uids").read_text().split()) == {"0"}  # pfctl ran as root
    assert got == live.flows_of("10.0.0.5", "9.9.9.9", 41000, 53, 17, (3, 2), (183, 300)), err


@as_root
def test_a_missing_user_is_one_line_and_exit_1(tmp_path):
    script = live.standin(tmp_path, [], last=live.a())
    run = rd.pflowbsd("-d", "-u", "no_such_user_pflowbsd", "--pfctl", script,
                      "flowdst", "127.0.0.1:9", timeout=30)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "no_such_user_pflowbsd: no such user" in lines[0], run.stderr
    assert live.polls(script) == 0


@as_root
def test_u_root_keeps_running_as_root_with_a_warning(tmp_path):
    script = live.standin(tmp_path, [live.a() + live.b()], last=live.a())
    status, _before, after, err = live.run_live(script, until=3, words=("-u", "root"))
    assert status == 0, err
    assert err.count("running as root, without privilege separation") == 1, err
    assert len(live.decode_v5(after)) == 2


def test_the_helper_runs_only_the_fixed_commands():
    for argv in (["pfctl", "-ss", "-vv"], ["pfctl", "-si", "-v"], ["pfctl", "-st"],
                 ["pfctl", "-a", "*", "-sr", "-vv"], ["sysctl", "-n", "kern.boottime"],
                 ["ifconfig", "-a"], ["ifconfig", "carp0"]):
        assert privsep.allowed(argv, "pfctl"), argv
    for argv in (["pfctl", "-F", "all"], ["/bin/sh", "-c", "id"], ["pfctl", "-ss"],
                 ["sysctl", "-w", "kern.x=1"], ["ifconfig", "em0", "down"],
                 ["ifconfig", "-a; id"], ["/tmp/pfctl", "-ss", "-vv"], []):
        assert not privsep.allowed(argv, "pfctl"), argv


@pytest.mark.parametrize("system", ["openbsd", "freebsd"])
def test_the_rc_scripts_make_the_state_folder_for_the_user(tmp_path, system):
    """A stand-in install(1) on PATH: what the start runs to make /var/db/pflowbsd."""
    from tests.peers import test_rcd as rcd

    script = (rcd.install(rcd.OPENBSD, "/etc/rc.d/rc.subr", "openbsd.rc.subr", tmp_path)
              if system == "openbsd" else
              rcd.install(rcd.FREEBSD, "/etc/rc.subr", "freebsd.rc.subr", tmp_path))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "install").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/installed\n')
    (bin_dir / "install").chmod(0o755)
    conf = tmp_path / "rc.conf"
    config = tmp_path / "pflow0.conf"
    config.write_text("flowdst 127.0.0.1:9995\n")
    conf.write_text(f'pflowbsd_enable="YES"\npflowbsd_config="{config}"\npflowbsd_python="/bin/true"\n')
    done = subprocess.run(["/bin/sh" if system == "freebsd" else rcd.shell_path("ksh"),
                           str(script), "start"], capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "RC_CONF": str(conf)})
    assert done.returncode == 0 and "start:" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "installed").read_text() == "-d -o _pflowbsd -g _pflowbsd -m 0750 /var/db/pflowbsd\n"


HUNG = """#!/bin/sh
# a pfctl whose state table never comes: the helper must stop it on the daemon's SIGTERM
D="$(dirname "$0")"
case "$*" in
  "-ss -vv") echo $$ > "$D/hung.pid"; exec sleep 60 ;;
  "-si -v") cat "$D/info" ;;
  *) exit 0 ;;
esac
"""


@as_root
def test_sigterm_stops_a_hung_pfctl_through_the_helper(tmp_path, state_dir):
    script = live.standin(tmp_path, [], last="")
    Path(script).write_text(HUNG)
    env = {**os.environ, "PYTHONPATH": str(rd.ROOT), "PFLOWBSD_USER": ""}
    proc = subprocess.Popen([sys.executable, "-m", "pflowbsd", "-d", "-t", "0.3", "-u", USER,
                             "--pfctl", script, "--state-file", "none", "flowdst", "127.0.0.1:9"],
                            stderr=subprocess.PIPE, text=True, cwd=rd.ROOT, env=env)  # fmt: skip
    hung = tmp_path / "pf" / "hung.pid"
    try:
        for _ in range(200):
            if hung.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert hung.exists(), "pfctl -ss -vv never ran"
        started = time.monotonic()
    finally:
        err = restart.stopped(proc)
    assert time.monotonic() - started < 3, err  # the helper was told, and killed it
    assert proc.returncode == 0 and "exiting on signal 15" in err, err
    assert not os.path.exists(f"/proc/{hung.read_text().strip()}"), "the hung pfctl lives on"


def test_started_as_another_user_it_runs_as_it_is(monkeypatch, caplog):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(privsep.log, "propagate", True)  # setup_logging() may have run
    assert privsep.account("_pflowbsd") is None
    with caplog.at_level("INFO", logger="pflowbsd"):
        assert privsep.start(None, "_pflowbsd", "pfctl", None, []) is None
    assert [r.getMessage() for r in caplog.records] == [
        "running as uid 1000 (not started as root): no privilege separation"]


def test_a_stream_left_early_does_not_confuse_the_next_request(tmp_path):
    """The helper's protocol, in process over a socketpair: a reader that stops after
    the first block of -ss -vv (an error while parsing, say) leaves the next request
    its own reply, not the rest of the table."""
    import socket as socketlib
    import threading

    from pflowbsd.shell import pfctl
    from tests.support import faultpfctl as fp
    from tests.support.pftext import record, sid

    table = "".join(record(f"all udp 10.0.{i // 250}.{i % 250}:4000 -> 10.9.9.9:53       "
                           "MULTIPLE:MULTIPLE", id=sid(i + 1)) for i in range(20000))
    script = fp.standin(tmp_path / "pf", {}, table, {}, 20000)
    ours, theirs = socketlib.socketpair()
    helper = threading.Thread(target=privsep.serve, args=(theirs, script), daemon=True)
    helper.start()
    client = privsep.Client(ours, 0)
    blocks = client.stream([script, "-ss", "-vv"], 5, pfctl.MAX_OUTPUT, lambda: False)
    first = next(iter(blocks))
    assert len(first) > 0 and len(table) > 2 * len(first)
    blocks.close()  # the reader stops early
    info = client([script, "-si", "-v"], 5, pfctl.MiB, lambda: False)
    assert "current entries" in info and "20000" in info
    whole = b"".join(client.stream([script, "-ss", "-vv"], 5, pfctl.MAX_OUTPUT, lambda: False))
    assert whole.decode() == table
    ours.close()
    helper.join(10)
    assert not helper.is_alive()
