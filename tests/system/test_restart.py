"""Restarts with a state file (issue 12, point 1): a recording replayed in two runs sends
what one run sends, v5 and IPFIX, sequences continuing; a live daemon stopped with
SIGTERM (or SIGKILL) and started again against a stand-in pfctl loses nothing and
repeats nothing; a file of another instance, of an earlier boot, or corrupt is set
aside or left unused, with one line."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pflowbsd import statefile
from tests.support import replaydata as rd
from tests.support.datagrams import decode_all
from tests.system import test_live as live

SENT_AT = ("sequence", "export_ms", "uptime")  # when, not what


def flows(datagrams, leave=SENT_AT):
    """The records as a collector keeps them (without when they were sent), sorted, and
    the collector's sequence gaps."""
    dec, got = decode_all(datagrams)
    return sorted(tuple(sorted((k, v) for k, v in f.items() if k not in leave))
                  for f in got), sum(dec.stats.gaps.values())


# Live, a state's First and Last follow the wall clock of the run (the stand-in prints
# the same ages every time): two runs are compared on the rest.
TIMES = (*SENT_AT, "start", "end", "start_epoch", "end_epoch")


def split(folder: Path, at: int) -> tuple[Path, Path]:
    """Two recordings: the first `at` snapshots of folder, and the rest (side files in both)."""
    snaps = sorted(folder.glob("*.states"))
    halves = []
    for name, chosen in (("first", snaps[:at]), ("second", snaps[at:])):
        d = folder.parent / name
        d.mkdir()
        for f in folder.iterdir():
            if not f.name.endswith(".states") or f in chosen:
                shutil.copy(f, d / f.name)
        halves.append(d)
    return halves[0], halves[1]


@pytest.mark.parametrize("proto", ["5", "10"])
@pytest.mark.parametrize("at", [1, 2])
def test_a_recording_replayed_in_two_runs_sends_what_one_run_sends(tmp_path, proto, at):
    full = tmp_path / "full"
    rd.write(full)
    first, second = split(full, at)
    run, one, _ = rd.capture(full, "pflowproto", proto)
    assert run.returncode == 0, run.stderr
    state = tmp_path / "pflow0.state"
    r1, part1, _ = rd.capture(first, "pflowproto", proto, "--state-file", str(state))
    r2, part2, _ = rd.capture(second, "pflowproto", proto, "--state-file", str(state))
    assert r1.returncode == r2.returncode == 0, r1.stderr + r2.stderr
    assert "restored" in r2.stderr, r2.stderr
    want, gaps_one = flows(one)
    got, gaps = flows(part1 + part2)
    assert len(want) > 20
    assert got == want  # none lost, none twice
    assert gaps == gaps_one == 0  # the second run's sequences continue the first's


def test_without_a_state_file_the_split_replay_loses_records(tmp_path):
    """What the state file fixes: the second run knows nothing of the first's states."""
    full = tmp_path / "full"
    rd.write(full)
    first, second = split(full, 1)
    _run, one, _ = rd.capture(full)
    _r1, part1, _ = rd.capture(first)
    _r2, part2, _ = rd.capture(second)
    assert len(flows(part1 + part2)[0]) < len(flows(one)[0])


def test_a_corrupt_or_foreign_state_file_is_moved_aside(tmp_path):
    full = tmp_path / "full"
    rd.write(full)
    state = tmp_path / "pflow0.state"
    run, _one, _ = rd.capture(full, "--state-file", str(state))
    good = state.read_bytes()
    for bad, why in ((good[:-5], "truncated"), (good[:60] + b"x" + good[61:], "checksum"),
                     (b"#!/bin/sh\n", "not a pflowbsd state file")):
        state.write_bytes(bad)
        run, _datagrams, _ = rd.capture(full, "--state-file", str(state))
        assert run.returncode == 0, run.stderr
        lines = [x for x in run.stderr.splitlines() if "state file" in x]
        assert len(lines) == 1 and why in lines[0] and ".bad" in lines[0], run.stderr
        assert (tmp_path / "pflow0.state.bad").read_bytes() == bad
        assert statefile.decode(state.read_bytes())  # a fresh one written in its place


def test_a_file_of_another_instance_or_boot_is_not_mixed_in(tmp_path):
    full = tmp_path / "full"
    rd.write(full)
    first, second = split(full, 1)
    state = tmp_path / "s"
    rd.capture(first, "--state-file", str(state))
    saved = state.read_bytes()
    run, _d, _ = rd.capture(second, "--state-file", str(state), "-i", "pflow1")
    assert "written by pflow0, not pflow1" in run.stderr and "restored" not in run.stderr
    state.write_bytes(saved)
    (second / "boottime").write_text(f"{rd.BOOT + 5}\n")
    run, _d, _ = rd.capture(second, "--state-file", str(state))
    assert "earlier boot" in run.stderr and "restored" not in run.stderr, run.stderr


# --- live: SIGTERM and SIGKILL, then a new daemon on the same state file --------------

SYSCTL = f"""#!/bin/sh
# A stand-in sysctl: the same kern.boottime for every run (one boot)
[ "$*" = "-n kern.boottime" ] && echo "{{ sec = {rd.BOOT}, usec = 0 }} Thu Jan  1 00:00:00 1970" && exit 0
exit 1
"""


def start(script, state, port, words=()):
    env = {**os.environ, "PYTHONPATH": str(rd.ROOT),
           "PATH": f"{Path(script).parent.parent / 'bin'}:{os.environ['PATH']}"}
    return subprocess.Popen([sys.executable, "-m", "pflowbsd", "-d", "-t", "0.3", "--pfctl", script,
                             "--state-file", str(state), *words, "flowdst", f"127.0.0.1:{port}"],
                            stderr=subprocess.PIPE, text=True, cwd=rd.ROOT, env=env)  # fmt: skip


def stopped(proc, sig=signal.SIGTERM) -> str:
    """Signal proc; its stderr once it exited (killed if it has not within 10 s)."""
    try:
        proc.send_signal(sig)
        return proc.communicate(timeout=10)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_polls(script, n, proc):
    for _ in range(200):
        if live.polls(script) >= n or proc.poll() is not None:
            return
        time.sleep(0.05)


def scenario(tmp_path):
    """Poll 0: A, B, C; B goes at poll 1; C goes at poll 3, while the daemon is down;
    A changes at 5 and stays."""
    (tmp_path / "bin").mkdir()
    sysctl = tmp_path / "bin" / "sysctl"
    sysctl.write_text(SYSCTL)
    sysctl.chmod(0o755)
    snaps = [live.a() + live.b() + live.c(), live.a() + live.c(), live.a() + live.c(),
             live.a(), live.a(), live.a("25:41", "6100:71234")]
    return live.standin(tmp_path, snaps, last=live.a("25:41", "6100:71234"))


def uninterrupted(tmp_path):
    script = scenario(tmp_path / "one")
    with rd.listener() as s:
        proc = start(script, tmp_path / "one.state", s.getsockname()[1])
        wait_polls(script, 8, proc)
        stopped(proc)
        return flows(rd.drain(s), TIMES)[0]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_a_live_restart_loses_and_repeats_nothing(tmp_path, stop):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    want = uninterrupted(tmp_path)
    script = scenario(tmp_path / "two")
    state = tmp_path / "two.state"
    with rd.listener() as s:
        port = s.getsockname()[1]
        proc = start(script, state, port)
        wait_polls(script, 3, proc)  # B went at poll 1 (held: 30 s), C still there
        err1 = stopped(proc, stop)
        n = live.polls(script)
        with open(os.path.join(os.path.dirname(script), "n"), "w") as f:
            f.write(f"{max(n, 4)}\n")  # C vanished while the daemon was down
        proc = start(script, state, port)
        wait_polls(script, 9, proc)
        err2 = stopped(proc)
        got, gaps = flows(rd.drain(s), TIMES)
    assert "restored" in err2, err1 + err2
    assert len(want) == 4  # B's two flows and C's
    assert got == want, err1 + err2  # B (held at the kill), and C once, at start
    assert gaps == 0
