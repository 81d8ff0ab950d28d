"""The rc.d scripts, run against stand-ins of their rc.subr (tests/fixtures/rc/).

The scripts source /etc/rc.d/rc.subr or /etc/rc.subr by absolute path, so each test
copies the script into a temporary directory and rewrites that one line to the stub;
the stubs print the command lines the real rc.subr would run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.peers import require

RCD = ROOT / "rc.d"
STUBS = ROOT / "tests" / "fixtures" / "rc"
OPENBSD, FREEBSD = RCD / "pflowbsd.openbsd", RCD / "pflowbsd.freebsd"
PYTHON_PROCESS = "/usr/local/bin/python3.11 /usr/local/bin/pflowbsd"


def install(script: Path, subr: str, stub: str, tmp: Path, name="pflowbsd") -> Path:
    text = script.read_text()
    line = f". {subr}\n"
    assert text.count(line) == 1, f"{script.name} must source {subr} exactly once"
    target = tmp / name
    target.write_text(text.replace(line, f". {STUBS / stub}\n"))
    return target


def run(script: Path, cmd: str, rc_conf: str = "", shell="sh") -> str:
    conf = script.parent / "rc.conf"
    conf.write_text(rc_conf)
    done = subprocess.run([shell, str(script), cmd], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "RC_CONF": str(conf)})
    assert done.returncode == 0 and done.stderr == "", done.stdout + done.stderr
    return done.stdout.strip()


def matches(pexp: str, command_line: str) -> bool:
    """pgrep -xf: the extended regex must match the whole command line."""
    return subprocess.run(["grep", "-Exq", "-e", pexp],
                          input=command_line + "\n", text=True).returncode == 0


@pytest.mark.parametrize("script", [OPENBSD, FREEBSD], ids=["openbsd", "freebsd"])
@pytest.mark.parametrize("shell", ["sh", "bash", "ksh", "mksh"])
def test_syntax(script, shell):
    path = shutil.which(shell) if shell in ("sh", "bash") else require(shell)
    subprocess.run([path, "-n", str(script)], check=True)


def test_shebangs_and_headers():
    assert OPENBSD.read_text().startswith("#!/bin/ksh\n")
    free = FREEBSD.read_text()
    assert free.startswith("#!/bin/sh\n")
    for line in ("# PROVIDE: pflowbsd\n", "# REQUIRE: NETWORKING pf\n", "# KEYWORD: shutdown\n"):
        assert line in free


# --- OpenBSD ----------------------------------------------------------------------------

@pytest.fixture
def openbsd(tmp_path):
    script = install(OPENBSD, "/etc/rc.d/rc.subr", "openbsd.rc.subr", tmp_path)
    (tmp_path / "pflowbsd_pflow1").symlink_to("pflowbsd")
    return script


def pexp_of(line: str) -> str:
    return line.split(" -xf ", 1)[1]


def test_openbsd_default_instance(openbsd):
    assert run(openbsd, "start") == "start: /usr/local/bin/pflowbsd -i pflow0 &"
    check = run(openbsd, "check")
    assert check.startswith("check: pgrep -q -xf ")
    pexp = pexp_of(check)
    assert matches(pexp, f"{PYTHON_PROCESS} -i pflow0")
    assert matches(pexp, f"/usr/local/bin/python3 {PYTHON_PROCESS.split()[1]} -i pflow0")
    assert not matches(pexp, f"{PYTHON_PROCESS} -i pflow1")
    assert not matches(pexp, "/usr/local/bin/pflowbsd -i pflow0")  # not under python
    stop = run(openbsd, "stop")
    assert stop.startswith("stop: pkill -xf ") and pexp_of(stop) == pexp
    assert pexp_of(run(openbsd, "reload")) == pexp
    assert run(openbsd, "start", shell="bash") == "start: /usr/local/bin/pflowbsd -i pflow0 &"


def test_openbsd_rcctl_flags(openbsd):
    conf = 'pflowbsd_flags="-i pflow0 -t 5  -v"\n'  # as rcctl set pflowbsd flags writes it
    assert run(openbsd, "start", conf) == "start: /usr/local/bin/pflowbsd -i pflow0 -t 5 -v &"
    pexp = pexp_of(run(openbsd, "check", conf))
    assert matches(pexp, f"{PYTHON_PROCESS} -i pflow0 -t 5 -v")
    assert not matches(pexp, f"{PYTHON_PROCESS} -i pflow0")


def test_openbsd_second_instance_via_link(openbsd):
    second = openbsd.parent / "pflowbsd_pflow1"
    conf = 'pflowbsd_flags="-i pflow0"\npflowbsd_pflow1_flags="-i pflow1"\n'
    assert run(second, "start", conf) == "start: /usr/local/bin/pflowbsd -i pflow1 &"
    first_pexp = pexp_of(run(openbsd, "check", conf))
    second_pexp = pexp_of(run(second, "check", conf))
    assert matches(second_pexp, f"{PYTHON_PROCESS} -i pflow1")
    assert not matches(second_pexp, f"{PYTHON_PROCESS} -i pflow0")
    assert not matches(first_pexp, f"{PYTHON_PROCESS} -i pflow1")
    assert pexp_of(run(second, "stop", conf)) == second_pexp


def test_openbsd_flags_are_matched_literally(openbsd):
    conf = 'pflowbsd_flags="-i pflow2 flowdst [::1]:9995 flowsrc 10.0.0.1"\n'
    pexp = pexp_of(run(openbsd, "check", conf))
    assert matches(pexp, f"{PYTHON_PROCESS} -i pflow2 flowdst [::1]:9995 flowsrc 10.0.0.1")
    assert not matches(pexp, f"{PYTHON_PROCESS} -i pflow2 flowdst 1:9995 flowsrc 10.0.0.1")
    assert not matches(pexp, f"{PYTHON_PROCESS} -i pflow2 flowdst [::1]:9995 flowsrc 10x0.0.1")


# --- FreeBSD ----------------------------------------------------------------------------

@pytest.fixture
def freebsd(tmp_path):
    return install(FREEBSD, "/etc/rc.subr", "freebsd.rc.subr", tmp_path)


DAEMON = ("/usr/sbin/daemon -f -S -T pflowbsd -p /var/run/pflowbsd.pid "
          "/usr/local/bin/python3.11 /usr/local/bin/pflowbsd -d")


def test_freebsd_disabled_by_default(freebsd):
    assert run(freebsd, "start").startswith("Cannot 'start' pflowbsd.")
    assert run(freebsd, "onestart") == f"start: {DAEMON} -i pflow0"


def test_freebsd_enabled_with_flags(freebsd):
    conf = 'pflowbsd_enable="YES"\npflowbsd_flags="-i pflow3 -t 5"\n'
    # the flags go to pflowbsd, after -d, and never to daemon(8)
    assert run(freebsd, "start", conf) == f"start: {DAEMON} -i pflow3 -t 5"
    pid = "<pid in /var/run/pflowbsd.pid if it runs /usr/local/bin/python3.11>"
    assert run(freebsd, "stop", conf) == f"stop: kill -TERM {pid}"
    assert run(freebsd, "status", conf) == f"status: {pid}"
    assert run(freebsd, "reload", conf) == f"reload: kill -HUP {pid}"


def test_freebsd_other_python(freebsd):
    conf = 'pflowbsd_enable="YES"\npflowbsd_python="/usr/local/bin/python3.12"\n'
    line = run(freebsd, "start", conf)
    assert "-p /var/run/pflowbsd.pid /usr/local/bin/python3.12 /usr/local/bin/pflowbsd -d" in line
    assert run(freebsd, "stop", conf).endswith("runs /usr/local/bin/python3.12>")
