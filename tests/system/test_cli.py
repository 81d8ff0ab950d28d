"""cli: the usage text is the command line; each command's exit status and errors."""

import gzip
import json
import subprocess
import sys

import pytest

from pflowbsd import cli
from tests.support import FIXTURES
from tests.support.pftext import record, sid

FIX = FIXTURES
TCP = "all tcp 10.0.0.5:50000 -> 93.184.216.34:443       ESTABLISHED:ESTABLISHED"


def run(*args, stdin=b""):
    return subprocess.run([sys.executable, "-m", "pflowbsd", *args], input=stdin,
                          capture_output=True, timeout=60)


def test_states_reads_a_file_stdin_and_gzip(tmp_path):
    text = record(TCP, id=sid(1)) + record(TCP.replace("50000", "50001"), id=sid(2))
    (tmp_path / "t.txt").write_text(text)
    (tmp_path / "t.gz").write_bytes(gzip.compress(text.encode()))
    for args, stdin in ((["t.txt"], b""), (["-"], text.encode()), (["t.gz"], b"")):
        p = run("states", "--json", *[str(tmp_path / a) if a != "-" else a for a in args],
                stdin=stdin)
        assert p.returncode == 0, p.stderr
        rows = [json.loads(line) for line in p.stdout.splitlines()]
        assert [r["wire_src"]["port"] for r in rows] == [50000, 50001]
        assert rows[0]["creatorid"] == "1a2b3c4d" and rows[0]["flags"]["pflow"] is True


def test_states_reports_bad_lines_and_exit_status():
    p = run("states", "-", stdin=b"garbage\n" + record(TCP, id=sid(1)).encode())
    assert p.returncode == 1
    assert b"line 1" in p.stderr and p.stdout.count(b"\n") == 1


def test_rules_listing_and_syntax_error(tmp_path):
    p = run("rules", "--json", str(FIX / "pfctl-regress" / "pf1.loaded"))
    assert p.returncode == 0
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert rows[0]["nr"] == 0 and {"anchor", "action", "pflow", "timeouts", "label"} <= rows[0].keys()
    bad = tmp_path / "pf.conf"
    bad.write_text("pass out all\npass out keep state (pflow\n")
    p = run("rules", str(bad))
    assert p.returncode != 0 and f"{bad}:2:".encode() in p.stderr


def test_check_mode_reads_the_rules(tmp_path):
    (tmp_path / "rules").write_text("@0 pass out all flags S/SA keep state (pflow)\n")
    p = run("-n", "--replay", str(tmp_path), "flowdst", "127.0.0.1:9995")
    assert p.returncode == 0, p.stderr
    assert b"1 rules, 1 select" in p.stdout


@pytest.mark.parametrize("args,msg", [
    ([], b"no flowdst"),
    (["flowdst", "collector:9995"], b"not a numeric"),
    (["-f", "/nonexistent/pflowbsd.conf", "flowdst", "127.0.0.1:1"], b"/nonexistent/pflowbsd.conf"),
    (["dump", "-c", "many"], b"-c 'many'"),
])
def test_one_line_errors(args, msg):
    p = run(*args)
    assert p.returncode != 0
    first, *rest = p.stderr.strip().splitlines()
    assert msg in first, p.stderr
    if p.returncode == 2:  # a usage mistake: the command's usage follows the one line
        assert rest[0].startswith(b"usage: pflowbsd") and rest[-1].strip().endswith(b"-h for more)")
    else:
        assert rest == [], p.stderr


def test_bare_command_words_are_commands_not_params():
    args = cli.docopt(cli.__doc__, ["demo"])
    assert args["demo"] and args["PARAM"] == []
    args = cli.docopt(cli.__doc__, ["flowdst", "127.0.0.1:1", "pflowproto", "10"])
    assert args["PARAM"] == ["flowdst", "127.0.0.1:1", "pflowproto", "10"]


def test_file_then_command_line_last_word_wins(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("flowdst 127.0.0.1:9995\npflowproto 10\ninterval 30\n")
    args = cli.docopt(cli.__doc__, ["-f", str(conf), "-t", "5", "pflowproto", "5"])
    cfg = cli.load_config(args)
    assert (cfg.pflowproto, cfg.interval, cfg.flowdst) == (5, 5.0, [("127.0.0.1", 9995)])


def test_one_flowsrc_port_serves_every_collector(tmp_path):
    from pflowbsd.shell.sender import Sender
    from tests.support.peers import free_udp_port

    src = ("127.0.0.1", free_udp_port())
    sender = Sender([("127.0.0.1", free_udp_port()), ("127.0.0.1", free_udp_port())], src)
    assert [s.getsockname() for _, s in sender.sockets] == [src, src]
    sender.close()


def test_a_flowsrc_that_is_not_ours_is_a_one_line_error(tmp_path):
    (tmp_path / "1.states").write_text("")
    p = run("-d", "--replay", str(tmp_path), "flowsrc", "192.0.2.99", "flowdst", "127.0.0.1:9")
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(b"pflowbsd: flowsrc 192.0.2.99") and b"[Errno" not in p.stderr, p.stderr
