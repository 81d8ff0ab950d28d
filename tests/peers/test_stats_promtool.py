"""The statistics file: the live daemon writes it after each poll, `promtool check metrics`
(what node_exporter's textfile collector users run) accepts it without a warning, and
`pflowbsd stats` prints it as `netstat -s -p pflow` prints pflow's counters."""

from __future__ import annotations

import json
import os
import stat
import subprocess

from tests.support import replaydata as rd
from tests.support.peers import require
from tests.system.test_live import a, b, c, run_live, standin


def promtool(path) -> subprocess.CompletedProcess:
    with open(path, "rb") as f:
        return subprocess.run([require("promtool"), "check", "metrics"], stdin=f,
                              capture_output=True, text=True)


def samples(path) -> dict[str, str]:
    out = {}
    for line in open(path).read().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = value
    return out


def live_run(tmp_path, *words):
    """A run with a failed poll (1), a cut table (3: partial) and B gone at poll 2."""
    cut = a() + c()[:-30]
    script = standin(tmp_path, [a() + b() + c(), "", a() + c(), cut], last=a() + c(), fail=(1,))
    prom = tmp_path / "pflow0.prom"
    status, before, after, err = run_live(script, until=6, words=["stats-file", str(prom), *words])
    assert status == 0, err
    return prom, before + after, err


def test_the_live_statistics_file_passes_promtool_and_counts_every_poll(tmp_path):
    prom, sent, err = live_run(tmp_path)
    check = promtool(prom)
    assert (check.returncode, check.stdout, check.stderr) == (0, "", ""), check
    got = samples(prom)
    base = 'interface="pflow0"'
    polls = {r: int(got[f'pflowbsd_polls_total{{{base},result="{r}"}}'])
             for r in ("ok", "failed", "partial")}
    assert polls["failed"] == 1 and polls["partial"] >= 1 and polls["ok"] >= 3, polls
    assert got[f"pflowbsd_flows_total{{{base}}}"] == "2"  # B's two flows
    dst = [k for k in got if k.startswith("pflowbsd_packets_total")]
    assert len(dst) == 1 and 'flowdst="127.0.0.1:' in dst[0]
    assert int(got[dst[0]]) == len(sent) == 1  # written at SIGTERM, after the flush
    assert got[dst[0].replace("packets", "send_errors")] == "0"
    assert got[f"pflowbsd_states{{{base}}}"] == "2"  # A and C
    assert float(got[f"pflowbsd_poll_duration_seconds{{{base}}}"]) > 0
    assert int(got[f"pflowbsd_pfctl_output_bytes{{{base}}}"]) > 0
    mode = os.stat(prom).st_mode
    assert stat.S_IMODE(mode) == 0o644  # node_exporter reads it as its own user
    assert sorted(os.listdir(prom.parent)) == ["pf", "pflow0.prom"]  # no temporary left
    assert f"statistics file {prom}:" not in err  # no write failed


def test_pflowbsd_stats_prints_it_as_netstat_does(tmp_path):
    prom, _sent, _err = live_run(tmp_path)
    run = rd.pflowbsd("stats", "--stats-file", str(prom))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:4] == ["pflow0:", "\t2 flows sent", "\t1 packet sent", "\t\t0 send error"]
    assert any(line.startswith("\t") and line.endswith("1 failed, 1 partial") for line in lines), lines
    as_json = json.loads(rd.pflowbsd("stats", "--json", "--stats-file", str(prom)).stdout)
    assert as_json["flows"] == 2 and as_json["polls"]["failed"] == 1
    # the path can come from the configuration file too, as the daemon reads it
    conf = tmp_path / "pflowbsd.conf"
    conf.write_text(f"flowdst 127.0.0.1:9995\nstats-file {prom}\n")
    assert rd.pflowbsd("stats", "-f", str(conf)).stdout == run.stdout


def test_pflowbsd_stats_errors_are_one_line(tmp_path):
    missing = rd.pflowbsd("stats", "--stats-file", str(tmp_path / "none.prom"))
    garbage = tmp_path / "garbage.prom"
    garbage.write_text("this is not { a metrics file\n")
    bad = rd.pflowbsd("stats", "--stats-file", str(garbage))
    off = rd.pflowbsd("stats", "--stats-file", "none")
    for run, says in ((missing, "No such file"), (bad, "not a Prometheus sample"),
                      (off, "no statistics file")):
        assert run.returncode == 1 and run.stdout == ""
        assert len(run.stderr.strip().splitlines()) == 1 and says in run.stderr, run.stderr


def test_an_unwritable_statistics_file_is_logged_once_and_the_daemon_goes_on(tmp_path):
    script = standin(tmp_path, [a() + b()], last=a())
    prom = tmp_path / "no" / "x.prom"
    status, before, after, err = run_live(script, until=4, words=["stats-file", str(prom)])
    assert status == 0, err
    assert err.count(f"statistics file {prom}: No such file or directory") == 1, err
    assert len(before + after) == 1  # B was still exported


def test_every_metric_is_in_the_manual():
    from pflowbsd.stats import METRICS
    from tests.peers.test_man import MAN, has_token, render

    text = render(MAN / "pflowbsd.8")
    assert [m.name for m in METRICS if not has_token(text, m.name)] == []


def test_the_default_path_is_in_the_state_folder_when_it_exists(tmp_path):
    from pflowbsd.config import Config, apply_words
    from pflowbsd.shell.statsfile import stats_path

    cfg = Config(instance="pflow3")
    assert stats_path(cfg, str(tmp_path)) == str(tmp_path / "pflow3.prom")
    assert stats_path(cfg, str(tmp_path / "missing")) is None
    assert stats_path(apply_words(cfg, ["stats-file", "none"]), str(tmp_path)) is None
    assert stats_path(apply_words(cfg, ["stats-file", "/x/y.prom"]), str(tmp_path)) == "/x/y.prom"


def test_the_daemon_says_where_the_statistics_go(tmp_path):
    script = standin(tmp_path, [a()], last=a())
    prom = tmp_path / "s.prom"
    *_, err = run_live(script, until=2, words=["--stats-file", str(prom)])
    assert err.count(f"statistics file: {prom}") == 1, err
    *_, err = run_live(script, until=4, words=["stats-file", "none"])
    assert err.count("statistics file: none") == 1, err


def test_the_per_collector_counts_add_up_to_the_senders_own():
    """The meter counts through the sender's tap: per flowdst, and in sum what
    sender.stats counts, failures included (a refusing collector)."""
    from pflowbsd.shell.sender import Sender
    from pflowbsd.shell.statsfile import Meter

    with rd.listener() as up, rd.listener() as gone:
        dsts = [("127.0.0.1", up.getsockname()[1]), ("127.0.0.1", gone.getsockname()[1])]
    with rd.listener() as up:  # the second port is closed now: its sends are refused
        dsts[0] = ("127.0.0.1", up.getsockname()[1])
        sender, meter = Sender(dsts), Meter("pflow0", 0.0)
        sender.taps.append(meter)
        for _ in range(20):
            sender.send({d: [b"x" * 100] for d in dsts})
        sender.close()
    counts = meter.per_collector
    assert counts[f"127.0.0.1:{dsts[0][1]}"] == {"datagrams": 20, "bytes": 2000, "send_errors": 0}
    assert counts[f"127.0.0.1:{dsts[1][1]}"]["send_errors"] > 0
    for key in ("datagrams", "bytes", "send_errors"):
        assert sum(c[key] for c in counts.values()) == sender.stats[key], (key, counts, sender.stats)


def test_replay_writes_the_statistics_it_is_given_a_file_for(recording, tmp_path):
    prom = tmp_path / "replay.prom"
    run, got, _port = rd.capture(recording, "--stats-file", str(prom))
    assert run.returncode == 0, run.stderr
    check = promtool(prom)
    assert (check.returncode, check.stdout, check.stderr) == (0, "", ""), check
    st = json.loads(rd.pflowbsd("stats", "--json", "--stats-file", str(prom)).stdout)
    assert st["polls"] == {"ok": len(rd.SNAPS), "failed": 0, "partial": 0}
    assert sum(st["datagrams"].values()) == len(got) and sum(st["send_errors"].values()) == 0
    assert st["flows"] == len(rd.expected_v5())
    assert "poll_seconds" not in st and "replay done: 4 snapshots; polls=" in run.stderr
