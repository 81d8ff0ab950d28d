"""The live poll loop (`pflowbsd -d -t 0.3 --pfctl STANDIN`), against a stand-in pfctl
that serves successive snapshots from files, fails or prints truncated tables on cue."""

import os
import signal
import socket
import struct
import subprocess
import sys
import time

from tests.support import replaydata as rd
from tests.support.pftext import record, sid

# v5 header: version, count, uptime, secs, nsecs, sequence, engine type, id, sampling
V5_HEADER = struct.Struct("!HHIIIIBBH")
# v5 record: src, dst, nexthop, in, out, packets, octets, first, last, sport, dport,
# pad, flags, proto, tos, src_as, dst_as, masks, pad
V5_RECORD = struct.Struct("!4s4s4sHHIIIIHHBBBBHHBBH")

STANDIN = r"""#!/bin/sh
# A stand-in pfctl: `-ss -vv` serves snap<N>.txt (N counts -ss calls; `last` when there
# is no such file), `-si -v` infoN or info; `failN` makes every call of poll N fail
# as pfctl does; every call is logged to `calls` as "N args".
D="$(dirname "$0")"
echo "ALTQ related functions disabled" >&2
n=$(cat "$D/n")
echo "$n $*" >> "$D/calls"
if [ "$*" = "-ss -vv" ]; then echo $((n + 1)) > "$D/n"; fi
if [ -e "$D/fail$n" ]; then echo "pfctl: /dev/pf: Permission denied" >&2; exit 1; fi
case "$*" in
  "-ss -vv") if [ -e "$D/snap$n.txt" ]; then cat "$D/snap$n.txt"; else cat "$D/last"; fi ;;
  "-st") cat "$D/timeouts" ;;
  "-si -v") if [ -e "$D/info$n" ]; then cat "$D/info$n"; else cat "$D/info"; fi ;;
  "-a * -sr -vv") cat "$D/rules" ;;
  *) echo "pfctl: unexpected arguments: $*" >&2; exit 2 ;;
esac
"""
RULES = """@0 pass out all flags S/SA keep state (pflow)
  [ Evaluations: 1518153   Packets: 1497560   Bytes: 1118043345  States: 3     ]
  [ Inserted: uid 0 pid 40632 State Creations: 40211 ]
"""
A = "all tcp 10.0.0.5:50000 -> 93.184.216.34:443       ESTABLISHED:ESTABLISHED"
B = "all udp 10.0.0.5:41000 -> 9.9.9.9:53       MULTIPLE:MULTIPLE"
C = "all tcp 10.0.0.6:50001 -> 198.51.100.7:22       ESTABLISHED:ESTABLISHED"


def a(pkts="20:30", nbytes="5000:60000"):
    return record(A, id=sid(1), pkts=pkts, bytes=nbytes, expires="23:59:50")


def b():
    return record(B, id=sid(2), pkts="3:2", bytes="183:300")


def c():
    return record(C, id=sid(3), pkts="11:12", bytes="1234:5678", expires="23:59:50")


def standin(tmp_path, snaps: list[str], last: str, fail=()) -> str:
    d = tmp_path / "pf"
    d.mkdir()
    for k, text in enumerate(snaps):
        (d / f"snap{k}.txt").write_text(text)
    for k in fail:
        (d / f"fail{k}").write_text("")
    (d / "last").write_text(last)
    (d / "n").write_text("0\n")
    (d / "timeouts").write_text("tcp.established     86400s\nudp.multiple           60s\n")
    (d / "info").write_text(rd.INFO)
    (d / "rules").write_text(RULES)
    path = d / "pfctl"
    path.write_text(STANDIN)
    path.chmod(0o755)
    return str(path)


def polls(script: str) -> int:
    with open(os.path.join(os.path.dirname(script), "n")) as f:
        return int(f.read() or 0)


def decode_v5(datagrams):
    out = []
    for d in datagrams:
        version, count, *_ = V5_HEADER.unpack_from(d)
        assert version == 5 and len(d) == V5_HEADER.size + count * V5_RECORD.size
        for k in range(count):
            r = V5_RECORD.unpack_from(d, V5_HEADER.size + k * V5_RECORD.size)
            out.append((socket.inet_ntoa(r[0]), r[9], socket.inet_ntoa(r[1]), r[10], r[13], r[5], r[6]))
    return sorted(out)


def run_live(script: str, until: int, words=(), path: str | None = None, before_term=None
             ) -> tuple[int, list[bytes], list[bytes], str]:
    """Run the daemon until the stand-in has served `until` snapshots, then SIGTERM it:
    (exit status, datagrams before the signal, datagrams after it, stderr).  `words`
    are more PARAMs; `path` goes before PATH (stand-in ifconfig and the like);
    before_term(proc) runs just before the SIGTERM."""
    with rd.listener() as s:
        env = {**os.environ, "PYTHONPATH": str(rd.ROOT)}
        if path:
            env["PATH"] = f"{path}:{env['PATH']}"
        proc = subprocess.Popen([sys.executable, "-m", "pflowbsd", "-d", "-t", "0.3", "--pfctl", script,
                                 *words, "flowdst", f"127.0.0.1:{s.getsockname()[1]}"],
                                stderr=subprocess.PIPE, text=True, cwd=rd.ROOT, env=env)  # fmt: skip
        try:
            for _ in range(200):  # bounded: 10 s
                if polls(script) >= until or proc.poll() is not None:
                    break
                time.sleep(0.05)
            if before_term:
                before_term(proc)
            before = rd.drain(s)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return proc.returncode, before, rd.drain(s), err


def flows_of(head_src, head_dst, sport, dport, proto, p, b):
    return sorted([(head_src, sport, head_dst, dport, proto, p[0], b[0]),
                   (head_dst, dport, head_src, sport, proto, p[1], b[1])])


def test_expired_states_arrive_and_sigterm_flushes_them(tmp_path):
    script = standin(tmp_path, [a() + b() + c().replace(", pflow", "")],
                     last=a("25:41", "6100:71234") + c().replace(", pflow", ""))
    status, before, after, err = run_live(script, until=4)
    assert polls(script) >= 4, err
    assert status == 0, err
    assert before == []  # held: a datagram waits up to 30 s for more records
    # B went at the second poll, with the counters it had; A is alive, C not flagged
    assert decode_v5(after) == flows_of("10.0.0.5", "9.9.9.9", 41000, 53, 17, (3, 2), (183, 300))
    assert "ALTQ" not in err  # pfctl's stderr notices are not ours to log


def test_failing_or_truncated_polls_expire_nothing(tmp_path):
    full = a() + b() + c()
    cut = a() + b()[:-30]  # B cut mid-record, C missing
    script = standin(tmp_path, [full, "", "", cut, cut], last=a() + b(), fail=(1, 2))
    status, before, after, err = run_live(script, until=7)
    assert status == 0, err
    # C went (seen gone by the first whole table after the failures); A and B did not
    assert decode_v5(before + after) == flows_of("10.0.0.6", "198.51.100.7", 50001, 22, 6, (11, 12), (1234, 5678))
    assert err.count("pfctl works again") == 1, err


def test_a_failing_pfctl_is_logged_once_per_change(tmp_path):
    script = standin(tmp_path, [a(), "", "", ""], last=a(), fail=(1, 2, 3))
    status, _before, _after, err = run_live(script, until=6)
    assert status == 0, err
    assert err.count("Permission denied") == 1, err


def test_a_truncated_table_is_logged_once_per_change(tmp_path):
    cut = a() + b()[:-30]
    script = standin(tmp_path, [a() + b(), cut, cut, cut, cut], last=a() + b())
    status, _before, _after, err = run_live(script, until=7)
    assert status == 0, err
    assert err.count("pfctl -ss line") <= 1, err


def test_without_flowdst_it_refuses_to_start(tmp_path):
    run = rd.pflowbsd("-d", "--pfctl", standin(tmp_path, [], last=a()), timeout=30)
    assert run.returncode != 0
    assert len(run.stderr.strip().splitlines()) == 1 and "flowdst" in run.stderr, run.stderr


def test_check_mode_reads_the_rules_and_exits(tmp_path):
    script = standin(tmp_path, [], last=a())
    run = rd.pflowbsd("-n", "flowdst", "127.0.0.1:9", "--pfctl", script, timeout=30)
    assert run.returncode == 0, run.stderr
    assert "configuration OK" in run.stdout and "1 rules, 1 select" in run.stdout, run.stdout
    assert polls(script) == 0  # no state table was read


def test_siginfo_or_usr1_logs_the_statistics(tmp_path):
    script = standin(tmp_path, [a() + b()], last=a())

    def usr1(proc):
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
    status, _before, _after, err = run_live(script, until=2, before_term=usr1)
    assert status == 0, err
    assert "statistics: polls=" in err and "expired=1" in err.split("statistics:")[1], err


def test_a_new_ruleset_checksum_rereads_the_rules_once(tmp_path):
    script = standin(tmp_path, [a()], last=a())
    pf = tmp_path / "pf"
    (pf / "info2").write_text(rd.INFO.replace("3bd1e0f5", "0badc0de"))
    for n in range(3, 12):  # the new checksum stays
        (pf / f"info{n}").write_text(rd.INFO.replace("3bd1e0f5", "0badc0de"))
    status, _before, _after, err = run_live(script, until=5)
    assert status == 0, err
    assert err.count("ruleset checksum changed") == 1, err
    calls = (pf / "calls").read_text().splitlines()
    # start: -st, -sr, -si; the reload at poll 2 reads -st and -sr, not -si again
    assert [c for c in calls if c.startswith("2 ")] == ["2 -si -v", "2 -st", "2 -a * -sr -vv", "2 -ss -vv"]
    assert sum(c.endswith("-sr -vv") for c in calls) == 2
