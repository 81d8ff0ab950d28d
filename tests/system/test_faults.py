"""The daemon and the CLI under faults (issue 11), as processes: a stand-in pfctl that
hangs or prints forever (tests/support/faultpfctl.py), start-up that fails, a second
instance, SIGHUP to a broken configuration, an unsafe --record folder, a collector
that comes back, and the one-line errors of the CLI.  Every wait is bounded."""

import gzip
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from pflowbsd.shell.sender import Sender
from tests.support import faultpfctl as fp
from tests.support import replaydata as rd
from tests.support.pftext import record, sid

ENV = {**os.environ, "PYTHONPATH": str(rd.ROOT)}


def udp(n: int) -> str:
    return record(f"all udp 10.0.0.{n}:4000 -> 10.9.9.9:53       MULTIPLE:MULTIPLE", id=sid(n))


def start(script: str, port: int, *words: str, args=()) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pflowbsd", "-d", "-t", "0.3", "--pfctl", script,
                             *args, *words, "flowdst", f"127.0.0.1:{port}"],
                            stderr=subprocess.PIPE, text=True, cwd=rd.ROOT, env=ENV)  # fmt: skip


def wait_polls(script: str, n: int, proc: subprocess.Popen, limit: float = 15) -> None:
    end = time.monotonic() + limit
    while fp.polls(script) < n and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.05)


def test_a_hung_pfctl_is_killed_with_its_grandchildren_and_the_next_poll_works(tmp_path):
    script = fp.standin(tmp_path / "pf", {}, udp(1), {}, 1, hang=(1,))
    with rd.listener() as s:
        proc = start(script, s.getsockname()[1], "pfctl-timeout", "1")
        wait_polls(script, 4, proc)
        status, err, _ = fp.stop(proc)
    assert status == 0, err
    assert fp.polls(script) >= 4, err
    assert "-ss -vv: timed out after 1 s" in err, err
    grandchild = int((tmp_path / "pf" / "grandchild").read_text())
    assert not fp.alive(grandchild)


def test_sigterm_while_pfctl_hangs_exits_within_two_seconds_and_flushes(tmp_path):
    # state 2 ends at poll 1 (held by the exporter), poll 2 hangs for good
    script = fp.standin(tmp_path / "pf", {0: udp(1) + udp(2), 1: udp(1)}, udp(1), {}, 1,
                        hang=(2,))
    with rd.listener() as s:
        proc = start(script, s.getsockname()[1])
        wait_polls(script, 3, proc)
        time.sleep(0.5)  # inside the hung -ss
        status, err, took = fp.stop(proc)
        got = rd.drain(s)
    assert status == 0 and took < 2, (took, err)
    assert len(got) == 1  # the held v5 datagram with state 2's two flows
    assert not fp.alive(int((tmp_path / "pf" / "grandchild").read_text()))


def test_endless_output_is_cut_at_its_bound_and_the_next_poll_works(tmp_path):
    script = fp.standin(tmp_path / "pf", {}, udp(1), {}, 1, forever=(1,))
    with rd.listener() as s:
        proc = start(script, s.getsockname()[1])
        wait_polls(script, 4, proc)
        status, err, _ = fp.stop(proc)
    assert status == 0, err
    assert "-ss -vv: output over" in err and fp.polls(script) >= 4, err


def test_a_pfctl_failing_part_way_through_its_output_expires_nothing(tmp_path):
    """-ss -vv is read as it arrives; a run that prints part of the table and then fails
    is a partial snapshot: state 2, missing from it, is not exported as gone."""
    script = fp.standin(tmp_path / "pf", {0: udp(1) + udp(2), 1: udp(1), 2: udp(1)},
                        udp(1) + udp(2), {}, 2, failafter=(1, 2))
    with rd.listener() as s:
        proc = start(script, s.getsockname()[1], args=("-v",))
        wait_polls(script, 5, proc)
        status, err, _ = fp.stop(proc)
        got = rd.drain(s)
    assert status == 0, err
    assert "(streamed)" in err, err
    assert err.count("-ss -vv: exit 1: pfctl: DIOCGETSTATES: Bad address") == 1, err
    assert got == [], err  # nothing expired: nothing held, nothing sent at the stop


def test_only_si_failing_is_logged_once_not_every_poll(tmp_path):
    script = fp.standin(tmp_path / "pf", {}, udp(1), {}, 1)
    for k in range(1, 6):
        (tmp_path / "pf" / f"failinfo{k}").write_text("")
    with rd.listener() as s:
        proc = start(script, s.getsockname()[1])
        wait_polls(script, 8, proc)
        status, err, _ = fp.stop(proc)
    assert status == 0, err
    assert err.count("DIOCGETSTATUS") == 1 and err.count("works again") == 1, err


def test_replay_judges_a_poll_by_its_own_info_and_old_recordings_as_before(tmp_path):
    from pflowbsd.config import Config
    from pflowbsd.shell.record import replay

    for folder, with_info in ((tmp_path / "new", True), (tmp_path / "old", False)):
        folder.mkdir()
        (folder / "boottime").write_text("1000\n")
        for t, ns in ((2000, [1, 2, 3]), (2010, [1]), (2020, [1, 2, 3])):
            (folder / f"{t}.states").write_text("".join(udp(n) for n in ns))
            if with_info:
                (folder / f"{t}.info").write_text(fp.info(3))
        with rd.listener() as s:
            cfg = Config(flowdst=[("127.0.0.1", s.getsockname()[1])], export_all=True)
            assert replay(cfg, str(folder)) == 0
            got = rd.drain(s)
        # new: 2010 is 1 of 3 current entries, partial; old: states 2 and 3 end at 2010
        # (and come back as new states, still present at the end)
        assert len(got) == (0 if with_info else 1), folder


def test_the_poll_time_is_when_pfctl_started(tmp_path):
    script = fp.standin(tmp_path / "pf", {}, udp(1), {}, 1, slow=(1,))
    rec = tmp_path / "rec"
    with rd.listener() as s:
        proc = start(script, s.getsockname()[1], args=("--record", str(rec)))
        wait_polls(script, 3, proc)
        status, err, _ = fp.stop(proc)
    assert status == 0, err
    started = int((tmp_path / "pf" / "started1").read_text())
    times = sorted(int(p.name.split(".")[0]) for p in rec.glob("*.states"))
    # the second snapshot is named by the moment pfctl began, not 2 s later
    assert started - 1 <= times[1] <= started, (started, times)


def test_a_sighup_in_the_first_moments_is_queued_not_fatal(tmp_path):
    script = fp.standin(tmp_path / "pf", {}, udp(1), {}, 1)
    with rd.listener() as s:
        proc = start(script, s.getsockname()[1])
        calls = tmp_path / "pf" / "calls"
        for _ in range(300):  # bounded: until its first pfctl call (its first moment)
            if calls.exists() or proc.poll() is not None:
                break
            time.sleep(0.01)
        for _ in range(5):
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.02)
        wait_polls(script, 2, proc)
        status, err, _ = fp.stop(proc)
    assert status == 0, err


@pytest.mark.parametrize("broken", ["select rule \u00b2\n", "flowsrc 203.0.113.5\n"])
def test_sighup_to_a_broken_configuration_keeps_the_running_one(tmp_path, broken):
    script = fp.standin(tmp_path / "pf", {0: udp(1) + udp(2)}, udp(1), {}, 1)
    with rd.listener() as s:
        conf = tmp_path / "pflowbsd.conf"
        conf.write_text(f"flowdst 127.0.0.1:{s.getsockname()[1]}\n")
        proc = subprocess.Popen([sys.executable, "-m", "pflowbsd", "-d", "-t", "0.3", "--pfctl", script,
                                 "-f", str(conf)], stderr=subprocess.PIPE, text=True, cwd=rd.ROOT, env=ENV)  # fmt: skip
        wait_polls(script, 2, proc)
        conf.write_text(broken)
        proc.send_signal(signal.SIGHUP)
        n = fp.polls(script)
        wait_polls(script, n + 3, proc)
        assert proc.poll() is None
        status, err, _ = fp.stop(proc)
        got = rd.drain(s)
    assert status == 0 and "configuration not reloaded" in err, err
    assert len(got) == 1, err  # state 2 still reached the running flowdst


def test_startup_failures_are_one_line_and_exit_1_before_detaching(tmp_path):
    script = fp.standin(tmp_path / "pf", {}, udp(1), {}, 1)
    for args in (["--pfctl", script, "flowsrc", "203.0.113.5", "flowdst", "127.0.0.1:9995"],
                 ["-n", "--pfctl", script, "flowsrc", "203.0.113.5", "flowdst", "127.0.0.1:9995"]):
        run = rd.pflowbsd(*args, timeout=30)
        assert run.returncode == 1, run
        assert run.stderr.count("\n") == 1 and "203.0.113.5" in run.stderr, run.stderr
        assert "[Errno" not in run.stderr
    assert fp.polls(script) == 0


@pytest.mark.parametrize("name", ["", "pf low", "../../etc/passwd", "pflow0/x"])
def test_i_takes_only_interface_names(name):
    run = rd.pflowbsd("-n", "-i", name, "flowdst", "127.0.0.1:9", timeout=30)
    # a command-line mistake: its one line first (then, maybe, the usage), exit 1 or 2
    assert run.returncode in (1, 2) and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("pflowbsd: -i "), run.stderr


def test_a_second_instance_with_the_same_pidfile_is_refused(tmp_path):
    script = fp.standin(tmp_path / "pf", {}, udp(1), {}, 1)
    pidfile = tmp_path / "pflowbsd.pid"
    with rd.listener() as s:
        first = start(script, s.getsockname()[1], args=("-p", str(pidfile)))
        wait_polls(script, 1, first)
        assert pidfile.read_text().strip() == str(first.pid)
        second = rd.pflowbsd("-d", "-p", str(pidfile), "--pfctl", script, "control", "none",
                             "flowdst", f"127.0.0.1:{s.getsockname()[1]}", timeout=30)
        assert second.returncode == 1 and "held by a running pflowbsd" in second.stderr
        assert pidfile.read_text().strip() == str(first.pid)
        status, err, _ = fp.stop(first)
    assert status == 0 and not pidfile.exists(), err


def test_record_refuses_an_unsafe_folder(tmp_path):
    script = fp.standin(tmp_path / "pf", {}, udp(1), {}, 1)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    for folder, why in ((shared, "writable by group or others"), (link, "not a symlink")):
        run = rd.pflowbsd("-d", "--record", str(folder), "--pfctl", script,
                          "flowdst", "127.0.0.1:9", timeout=30)
        assert run.returncode == 1 and why in run.stderr and run.stderr.count("\n") == 1, run.stderr
    assert not list((tmp_path / "elsewhere").iterdir())


def test_record_files_are_private_and_bounded_by_record_max(tmp_path):
    big = "".join(udp(n) for n in range(1, 60))  # ~10 KB a snapshot
    script = fp.standin(tmp_path / "pf", {}, big, {}, 59)
    rec = tmp_path / "rec"
    with rd.listener() as s:
        proc = start(script, s.getsockname()[1], "record-max", "25K", args=("--record", str(rec)))
        wait_polls(script, 8, proc)
        status, err, _ = fp.stop(proc)
    assert status == 0, err
    snaps = sorted(rec.glob("*.states"))
    assert 1 <= len(snaps) <= 3, snaps  # the oldest went
    assert all(p.with_suffix(".info").exists() for p in snaps)
    assert sum(p.stat().st_size for p in rec.iterdir() if "." in p.name) <= 25 << 10
    assert {oct(p.stat().st_mode & 0o777) for p in rec.iterdir()} == {"0o600"}
    assert oct(rec.stat().st_mode & 0o777) == "0o700"


def test_the_first_datagram_after_a_collector_comes_back_arrives():
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens: the first send brings back ICMP port unreachable
    sender = Sender([("127.0.0.1", port)])
    sender.send({("127.0.0.1", port): [b"lost"]})
    time.sleep(0.1)
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.bind(("127.0.0.1", port))
    back.settimeout(2)
    try:
        sender.send({("127.0.0.1", port): [b"first"]})
        assert back.recv(100) == b"first"
        assert sender.stats["send_errors"] == 1  # the refused one, not the one retried
    finally:
        back.close()
        sender.close()


def test_send_errors_count_every_failure_and_outlive_a_new_sender():
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    sender = Sender([("127.0.0.1", port)])
    for _ in range(6):
        sender.send({("127.0.0.1", port): [b"x"]})
        time.sleep(0.02)
    assert sender.stats["send_errors"] >= 2
    again = Sender([("127.0.0.1", port)], stats=sender.stats)
    assert again.stats["send_errors"] == sender.stats["send_errors"]
    sender.close()
    again.close()


# ---- the CLI: one line, no traceback --------------------------------------------------

def test_help_into_a_closed_pipe_says_nothing():
    for _ in range(5):
        run = subprocess.run(f"{sys.executable} -m pflowbsd rules --help | head -1", shell=True,
                             capture_output=True, text=True, cwd=rd.ROOT, env=ENV, timeout=30)
        assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr, run.stderr


@pytest.mark.parametrize("args", [
    ["-n", "mtu", "9" * 5000, "flowdst", "127.0.0.1:9"],
    ["-n", "flowdst", "127.0.0.1:\u00b2"],
    ["-n", "-t", "1e-300", "flowdst", "127.0.0.1:9"],
])
def test_bad_words_are_one_line(args):
    run = rd.pflowbsd(*args, timeout=30)
    assert run.returncode in (1, 2) and "Traceback" not in run.stderr, run.stderr
    first = run.stderr.splitlines()[0]
    assert first.startswith("pflowbsd: ") and "Errno" not in first and len(first) < 300, first


def test_a_latin1_config_file_is_read(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_bytes(b"flowdst 127.0.0.1:9 # collecteur de Ren\xe9\n")
    script = fp.standin(tmp_path / "pf", {}, udp(1), {}, 1)
    run = rd.pflowbsd("-n", "-f", str(conf), "--pfctl", script, timeout=30)
    assert run.returncode == 0 and "configuration OK" in run.stdout, run.stderr


def test_states_on_a_cut_or_corrupt_gz_is_one_line(tmp_path):
    whole = gzip.compress(udp(1).encode() * 50)
    for name, data in (("cut.gz", whole[: len(whole) // 2]), ("bad.gz", whole[:10] + b"\0" * 40)):
        (tmp_path / name).write_bytes(data)
        run = rd.pflowbsd("states", str(tmp_path / name), timeout=30)
        assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
        assert "gzip" in run.stderr


def test_states_json_on_a_huge_counter_is_a_parse_error(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(record("all udp 10.0.0.1:7 -> 10.0.0.2:53       MULTIPLE:MULTIPLE",
                           id=sid(1), pkts="9" * 5000 + ":1") + udp(2))
    run = rd.pflowbsd("states", "--json", str(path), timeout=30)
    assert run.returncode == 1 and run.stdout.count("\n") == 1, run
    assert "out of range" in run.stderr and "Traceback" not in run.stderr


def test_pfctl_timeout_default_is_three_intervals_or_30_s():
    from pflowbsd.config import Config
    from pflowbsd.shell.pfctl import pfctl_timeout

    assert pfctl_timeout(Config(interval=10)) == 30
    assert pfctl_timeout(Config(interval=20)) == 60
    assert pfctl_timeout(Config(interval=20, pfctl_timeout=5)) == 5
