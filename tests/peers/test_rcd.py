"""The rc.d scripts, run against stand-ins of their rc.subr (tests/fixtures/rc/).

The scripts source /etc/rc.d/rc.subr or /etc/rc.subr by absolute path, so each test
copies the script into a temporary directory and rewrites that one line to the stub;
the stubs print the command lines the real rc.subr would run.  Each script runs under
the shells it meets: OpenBSD's ksh (ksh, and mksh, pdksh's descendant), FreeBSD's
Almquist sh (dash, Debian's sh, is one too; bash as a second opinion)."""

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
    target.chmod(0o555)  # as installed: the FreeBSD one runs itself once per profile
    return target


OPENBSD_SHELLS, FREEBSD_SHELLS = ["ksh", "mksh"], ["sh", "bash"]


def shell_path(shell: str) -> str:
    return shutil.which(shell) if shell in ("sh", "bash") else require(shell)


def run_rc(script: Path, *cmd: str, rc_conf: str = "", shell="sh") -> subprocess.CompletedProcess:
    conf = script.parent / "rc.conf"
    conf.write_text(rc_conf)
    return subprocess.run([shell_path(shell), str(script), *cmd], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "RC_CONF": str(conf)})


def run(script: Path, cmd: str, rc_conf: str = "", shell="sh", *more: str) -> str:
    done = run_rc(script, cmd, *more, rc_conf=rc_conf, shell=shell)
    assert done.returncode == 0 and done.stderr == "", done.stdout + done.stderr
    return done.stdout.strip()


def matches(pexp: str, command_line: str) -> bool:
    """pgrep -xf: the extended regex must match the whole command line."""
    return subprocess.run(["grep", "-Exq", "-e", pexp],
                          input=command_line + "\n", text=True).returncode == 0


@pytest.mark.parametrize("script", [OPENBSD, FREEBSD], ids=["openbsd", "freebsd"])
@pytest.mark.parametrize("shell", ["sh", "bash", "ksh", "mksh"])
def test_syntax(script, shell):
    subprocess.run([shell_path(shell), "-n", str(script)], check=True)


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


def test_openbsd_no_rc_bg_for_a_program_that_detaches_itself():
    """rc.subr(8): rc_bg is for daemons that cannot detach; pflowbsd does, after its
    start-up checks, so rc_start must wait for it to see a failure."""
    text = OPENBSD.read_text()
    assert not any(line.strip().startswith("rc_bg") for line in text.splitlines())
    assert "-d" not in text.split('daemon_flags="', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize("shell", OPENBSD_SHELLS)
def test_openbsd_default_instance(openbsd, shell):
    assert run(openbsd, "start", shell=shell) == "start: /usr/local/bin/pflowbsd -i pflow0"
    check = run(openbsd, "check", shell=shell)
    assert check.startswith("check: pgrep -q -xf ")
    pexp = pexp_of(check)
    assert matches(pexp, f"{PYTHON_PROCESS} -i pflow0")
    assert matches(pexp, f"/usr/local/bin/python3 {PYTHON_PROCESS.split()[1]} -i pflow0")
    assert not matches(pexp, f"{PYTHON_PROCESS} -i pflow1")
    assert not matches(pexp, "/usr/local/bin/pflowbsd -i pflow0")  # not under python
    stop = run(openbsd, "stop", shell=shell)
    assert stop.startswith("stop: pkill -xf ") and pexp_of(stop) == pexp
    assert pexp_of(run(openbsd, "reload", shell=shell)) == pexp


@pytest.mark.parametrize("shell", OPENBSD_SHELLS)
def test_openbsd_rcctl_flags(openbsd, shell):
    conf = 'pflowbsd_flags="-i pflow0 -t 5  -v"\n'  # as rcctl set pflowbsd flags writes it
    assert run(openbsd, "start", conf, shell) == "start: /usr/local/bin/pflowbsd -i pflow0 -t 5 -v"
    pexp = pexp_of(run(openbsd, "check", conf, shell))
    assert matches(pexp, f"{PYTHON_PROCESS} -i pflow0 -t 5 -v")
    assert not matches(pexp, f"{PYTHON_PROCESS} -i pflow0")


@pytest.mark.parametrize("shell", OPENBSD_SHELLS)
def test_openbsd_second_instance_via_link(openbsd, shell):
    second = openbsd.parent / "pflowbsd_pflow1"
    conf = 'pflowbsd_flags="-i pflow0"\npflowbsd_pflow1_flags="-i pflow1"\n'
    assert run(second, "start", conf, shell) == "start: /usr/local/bin/pflowbsd -i pflow1"
    first_pexp = pexp_of(run(openbsd, "check", conf, shell))
    second_pexp = pexp_of(run(second, "check", conf, shell))
    assert matches(second_pexp, f"{PYTHON_PROCESS} -i pflow1")
    assert not matches(second_pexp, f"{PYTHON_PROCESS} -i pflow0")
    assert not matches(first_pexp, f"{PYTHON_PROCESS} -i pflow1")
    assert pexp_of(run(second, "stop", conf, shell)) == second_pexp


def test_openbsd_flags_are_matched_literally(openbsd):
    conf = 'pflowbsd_flags="-i pflow2 flowdst [::1]:9995 flowsrc 10.0.0.1"\n'
    pexp = pexp_of(run(openbsd, "check", conf, "ksh"))
    assert matches(pexp, f"{PYTHON_PROCESS} -i pflow2 flowdst [::1]:9995 flowsrc 10.0.0.1")
    assert not matches(pexp, f"{PYTHON_PROCESS} -i pflow2 flowdst 1:9995 flowsrc 10.0.0.1")
    assert not matches(pexp, f"{PYTHON_PROCESS} -i pflow2 flowdst [::1]:9995 flowsrc 10x0.0.1")


def test_readme_and_script_agree_where_the_words_go():
    """The words in /etc/pflowbsd.pflowN.conf, the flags naming the instance: both say so."""
    readme = (ROOT / "README.md").read_text()
    openbsd_part = readme.split("OpenBSD", 2)[2].split("FreeBSD, pfSense", 1)[0]
    assert "rcctl set pflowbsd flags -i pflow0\n" in openbsd_part
    assert "/etc/pflowbsd.pflow0.conf" in openbsd_part and "flowdst" in openbsd_part
    assert "rcctl set pflowbsd flags -i pflow0\n" in OPENBSD.read_text()
    assert "/etc/pflowbsd.pflowN.conf" in OPENBSD.read_text()


# --- FreeBSD ----------------------------------------------------------------------------

@pytest.fixture
def freebsd(tmp_path):
    return install(FREEBSD, "/etc/rc.subr", "freebsd.rc.subr", tmp_path)


@pytest.fixture
def fake_python(tmp_path):
    """An interpreter that records what it was asked to run (the -n check) and succeeds,
    or fails when its FAIL file exists."""
    path = tmp_path / "python"
    path.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\n[ ! -e {tmp_path}/FAIL ]\n')
    path.chmod(0o755)
    return path


def daemon_line(python: str, instance: str, config: str, flags: str = "") -> str:
    run_dir = "/var/run/pflowbsd." + instance
    return (f"/usr/sbin/daemon -r -R 10 -S -T pflowbsd -P {run_dir}.pid -p {run_dir}.child.pid "
            f"{python} /usr/local/bin/pflowbsd -d -i {instance} -f {config}"
            + (f" {flags}" if flags else ""))


def conf_for(tmp_path, python, *lines: str) -> str:
    return "\n".join([f'pflowbsd_python="{python}"', *lines]) + "\n"


@pytest.mark.parametrize("shell", FREEBSD_SHELLS)
def test_freebsd_disabled_by_default(freebsd, fake_python, tmp_path, shell):
    config = tmp_path / "pflow0.conf"
    config.write_text("flowdst 127.0.0.1:9995\n")
    conf = conf_for(tmp_path, fake_python, f'pflowbsd_config="{config}"')
    assert run(freebsd, "start", conf, shell).startswith("Cannot 'start' pflowbsd.")
    assert run(freebsd, "onestart", conf, shell) == f"start: {daemon_line(fake_python, 'pflow0', config)}"


@pytest.mark.parametrize("shell", FREEBSD_SHELLS)
def test_freebsd_enabled_with_flags_supervised(freebsd, fake_python, tmp_path, shell):
    config = tmp_path / "pflow3.conf"
    config.write_text("flowdst 127.0.0.1:9995\n")
    conf = conf_for(tmp_path, fake_python, 'pflowbsd_enable="YES"', 'pflowbsd_instance="pflow3"',
                    f'pflowbsd_config="{config}"', 'pflowbsd_flags="-t 5"')
    # the flags go to pflowbsd, after -d, and never to daemon(8), which restarts it (-r)
    assert run(freebsd, "start", conf, shell) == f"start: {daemon_line(fake_python, 'pflow3', config, '-t 5')}"
    # the configuration is checked (-n) before daemon(8) starts anything
    assert (tmp_path / "calls").read_text() == f"/usr/local/bin/pflowbsd -n -i pflow3 -f {config} -t 5\n"
    # stop and status act on the supervisor (daemon(8) shows as "daemon:" in ps, which
    # rc.subr's check_pidfile matches for /usr/sbin/daemon); reload on pflowbsd itself
    supervisor = "<pid in /var/run/pflowbsd.pflow3.pid if it runs /usr/sbin/daemon>"
    assert run(freebsd, "stop", conf, shell) == f"stop: kill -TERM {supervisor}"
    assert run(freebsd, "status", conf, shell) == f"status: {supervisor}"
    child = (f"<pid in /var/run/pflowbsd.pflow3.child.pid if it runs /usr/local/bin/pflowbsd "
             f"under {fake_python}>")
    assert run(freebsd, "reload", conf, shell) == f"Reloading pflowbsd (pflow3).\nkill -HUP {child}"


@pytest.mark.parametrize("shell", FREEBSD_SHELLS)
def test_freebsd_bad_configuration_fails_the_start(freebsd, fake_python, tmp_path, shell):
    config = tmp_path / "pflow0.conf"
    conf = conf_for(tmp_path, fake_python, 'pflowbsd_enable="YES"', f'pflowbsd_config="{config}"')
    done = run_rc(freebsd, "start", rc_conf=conf, shell=shell)  # no such file
    assert done.returncode == 1 and f"{config} is not readable" in done.stderr
    assert "start:" not in done.stdout
    config.write_text("flowdst nowhere\n")
    (tmp_path / "FAIL").write_text("")  # pflowbsd -n says no
    done = run_rc(freebsd, "start", rc_conf=conf, shell=shell)
    assert done.returncode == 1 and "failed precmd routine" in done.stderr
    assert "start:" not in done.stdout


@pytest.mark.parametrize("shell", FREEBSD_SHELLS)
def test_freebsd_profiles_one_pidfile_and_config_each(freebsd, fake_python, tmp_path, shell):
    for name in ("pflow0", "pflow1", "lab"):
        (tmp_path / f"{name}.conf").write_text("flowdst 127.0.0.1:9995\n")
    conf = conf_for(tmp_path, fake_python, 'pflowbsd_enable="YES"',
                    'pflowbsd_profiles="pflow0 pflow1 lab"',
                    f'pflowbsd_pflow0_config="{tmp_path}/pflow0.conf"',
                    f'pflowbsd_pflow1_config="{tmp_path}/pflow1.conf"',
                    'pflowbsd_pflow1_flags="-t 5"',
                    'pflowbsd_lab_instance="pflow9"', f'pflowbsd_lab_config="{tmp_path}/lab.conf"',
                    'pflowbsd_lab_enable="NO"')
    out = run(freebsd, "start", conf, shell).splitlines()
    assert out[0] == "===> pflowbsd profile: pflow0"
    assert out[1] == f"start: {daemon_line(fake_python, 'pflow0', f'{tmp_path}/pflow0.conf')}"
    assert out[2] == "===> pflowbsd profile: pflow1"
    assert out[3] == f"start: {daemon_line(fake_python, 'pflow1', f'{tmp_path}/pflow1.conf', '-t 5')}"
    assert out[4] == "===> pflowbsd profile: lab" and out[5].startswith("Cannot 'start' pflowbsd.")
    assert len(out) == 6
    # one profile by name, with its own instance, pidfile and configuration
    lab = run(freebsd, "onestart", conf, shell, "lab")
    assert lab == f"start: {daemon_line(fake_python, 'pflow9', f'{tmp_path}/lab.conf')}"
    assert run(freebsd, "status", conf, shell, "pflow1") == (
        "status: <pid in /var/run/pflowbsd.pflow1.pid if it runs /usr/sbin/daemon>")
    assert "pflowbsd.pflow1.child.pid" in run(freebsd, "reload", conf, shell, "pflow1")


def test_freebsd_other_python(freebsd, tmp_path):
    config = tmp_path / "c.conf"
    config.write_text("")
    conf = f'pflowbsd_enable="YES"\npflowbsd_python="/bin/true"\npflowbsd_config="{config}"\n'
    line = run(freebsd, "start", conf)
    assert "-p /var/run/pflowbsd.pflow0.child.pid /bin/true /usr/local/bin/pflowbsd -d" in line
    assert run(freebsd, "reload", conf).endswith("under /bin/true>")
