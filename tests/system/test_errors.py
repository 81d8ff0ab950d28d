"""The errors issue #15 reproduced, each as the operator meets it: one line, in the
words typed (address and port, file, option), what to do, no `[Errno N]` or docopt
internals, and exit 2 for a usage mistake, 1 for a failure."""

import os
import signal
import socket
import sys

import pytest

from tests.support import replaydata as rd
from tests.system.test_live import a, run_live, standin


def one_line(run, status):
    err = run.stderr
    assert run.returncode == status, (run.returncode, err)
    assert "[Errno" not in err and "Traceback" not in err and "Option(" not in err, err
    return err


def first_line(run, status):
    err = one_line(run, status)
    assert err.startswith("pflowbsd: "), err
    return err.splitlines()[0]


def test_a_busy_flowsrc_port_names_address_and_port(tmp_path):
    held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    held.bind(("127.0.0.1", 0))
    port = held.getsockname()[1]
    try:
        run = rd.pflowbsd("-d", "--pfctl", standin(tmp_path, [], a()), "control", "none",
                          "flowsrc", f"127.0.0.1:{port}", "flowdst", "127.0.0.1:9", timeout=30)
    finally:
        held.close()
    err = one_line(run, 1)
    assert err.count("\n") == 1
    assert f"flowsrc 127.0.0.1:{port} to flowdst 127.0.0.1:9: address already in use" in err
    assert "another program has that port" in err


def test_a_missing_include_names_the_file(tmp_path):
    conf = tmp_path / "pf.conf"
    conf.write_text('include "/etc/pf.d/missing.conf"\npass out keep state (pflow)\n')
    run = rd.pflowbsd("rules", str(conf), "--ifconfig", os.devnull)
    err = one_line(run, 1)
    assert "/etc/pf.d/missing.conf" in err and err.count("\n") == 1


def test_dump_on_an_address_without_host_is_a_usage_error():
    run = rd.pflowbsd("dump", "-l", ":9995")
    line = first_line(run, 2)
    assert line == ("pflowbsd: -l :9995: want a numeric ADDR:PORT to listen on, such as "
                    "127.0.0.1:9995 or [::1]:9995")
    assert "inet_pton" not in run.stderr
    assert "usage: pflowbsd dump [-l ADDR:PORT]" in run.stderr


def test_a_pfctl_that_cannot_run_says_why(tmp_path):
    plain = tmp_path / "pfctl"
    plain.write_text("#!/bin/sh\necho hi\n")  # not executable
    run = rd.pflowbsd("states", "--pfctl", str(plain))
    assert first_line(run, 1) == (f"pflowbsd: {plain}: not executable (permission denied): "
                                  "chmod +x it, or give the path of pf's own program")
    missing = rd.pflowbsd("states", "--pfctl", str(tmp_path / "nowhere"))
    assert "no such program: give its path (--pfctl PATH" in first_line(missing, 1)
    bad = tmp_path / "interp"
    bad.write_text("#!/nonexistent/sh\n")
    bad.chmod(0o755)
    assert "its #! interpreter is missing" in first_line(rd.pflowbsd("states", "--pfctl", str(bad)), 1)


def test_an_unknown_option_names_it_with_the_commands_usage():
    run = rd.pflowbsd("-V", "flowdst", "127.0.0.1:9995")
    err = one_line(run, 2)
    assert err.startswith("pflowbsd: unknown option -V")
    assert "Warning" not in err and "unmatched" not in err
    assert "\nusage: pflowbsd [-adnv]" in err
    rules = rd.pflowbsd("rules", "--frob")
    assert first_line(rules, 2) == "pflowbsd: unknown option --frob"
    assert "usage: pflowbsd rules [--json]" in rules.stderr and "pflowbsd dump" not in rules.stderr


@pytest.mark.parametrize("command", ["states", "rules", "dump", "demo", "stats", "ctl"])
def test_each_command_has_its_own_help(command):
    run = rd.pflowbsd(command, "-h")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"Usage:\n  pflowbsd {command} ")
    assert "Commands:" not in run.stdout and "pflowbsd - export" not in run.stdout


@pytest.mark.parametrize("args", [
    ("demo", "--proto", "9"), ("demo", "--rate", "abc"), ("dump", "-c", "x"),
    ("-t", "fast", "flowdst", "127.0.0.1:9"), ("flowdst", "127.0.0.1"), ("frobnicate",),
    ("-i", "pflow/0", "flowdst", "127.0.0.1:9"), ("ctl", "frob"), ("ctl", "debug", "loud"),
])
def test_usage_mistakes_exit_2(args):
    run = rd.pflowbsd(*args, timeout=30)
    one_line(run, 2)
    assert run.stderr.startswith("pflowbsd"), run.stderr


def test_failures_exit_1(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("flowdst 127.0.0.1:9\nfrobnicate on\n")
    run = rd.pflowbsd("-d", "-f", str(conf))
    assert first_line(run, 1) == f"pflowbsd: {conf}:2: unknown word 'frobnicate'"
    missing = rd.pflowbsd("-d", "-f", str(tmp_path / "none.conf"))
    assert first_line(missing, 1) == (f"pflowbsd: -f {tmp_path / 'none.conf'}: no such file or "
                                      "directory: give the configuration file's path")
    assert missing.stderr.count("\n") == 1


def test_ipv6_flowdsts_print_in_brackets(tmp_path):
    run = rd.pflowbsd("-n", "--pfctl", standin(tmp_path, [], a()), "flowdst", "[::1]:9995")
    assert run.returncode == 0, run.stderr
    assert "flowdst [::1]:9995 pflowproto" in run.stdout


def test_states_on_a_wrong_file_prints_ten_lines_and_a_count(tmp_path):
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("".join(f"line {n}\n" for n in range(3000)))
    run = rd.pflowbsd("states", str(wrong))
    assert run.returncode == 1
    lines = run.stderr.splitlines()
    assert len(lines) == 11, lines
    assert lines[-1].startswith("pflowbsd: 2990 more unreadable lines (3000 in all, 0 states read)")


def test_carp_status_unknown_in_words_and_boot_time_fallback_said_once(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ifconfig = bin_dir / "ifconfig"
    ifconfig.write_text("#!/bin/sh\necho \"ifconfig: $1: no such interface\" >&2\nexit 1\n")
    ifconfig.chmod(0o755)
    script = standin(tmp_path, [a()], a())

    def hup(proc):
        proc.send_signal(signal.SIGHUP)
    status, _before, _after, err = run_live(script, until=3, words=("carp", "carp9"),
                                            path=str(bin_dir), before_term=hup)
    assert status == 0, err
    assert "carp9 is unknown (exit 1: ifconfig: carp9: no such interface): exporting" in err, err
    assert "RAN:" not in err
    if sys.platform.startswith("linux"):
        assert err.count("no kern.boottime") == 1, err
