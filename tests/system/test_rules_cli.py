"""`pflowbsd rules`, `-n` and `states` with the daemon's configuration and the
host's interfaces (--ifconfig), run as processes."""

import json
import subprocess
import sys

from tests.support import FIXTURES

IFCONFIG = str(FIXTURES / "ifconfig" / "freebsd.txt")


def run(*args, stdin=""):
    return subprocess.run([sys.executable, "-m", "pflowbsd", *args], input=stdin,
                          capture_output=True, timeout=60, text=True)


def test_rules_applies_the_configuration_file_and_the_interfaces(tmp_path):
    """FreeBSD/pfSense: `select label` is the only way to choose."""
    conf = tmp_path / "pflowbsd.conf"
    conf.write_text('flowdst 127.0.0.1:9995\nselect label "netflow*"\n')
    pf = tmp_path / "pf.conf"
    pf.write_text('int_if = "em1"\nlocalnet = $int_if:network\nantispoof for $int_if\n'
                  'pass in on $int_if from $localnet label "netflow-lan"\npass out all\n')
    p = run("rules", "--json", "--ifconfig", IFCONFIG, "-f", str(conf), str(pf))
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [(r["nr"], r["export"], r["rule"]) for r in rows] == [
        (0, False, "block drop in on ! em1 inet from 172.16.0.0/20 to any"),
        (1, False, "block drop in inet from 172.16.0.1 to any"),
        (2, True, 'pass in on em1 inet from 172.16.0.0/20 to any flags S/SA '
                  'label "netflow-lan"'),
        (3, False, "pass out all flags S/SA")]
    assert rows[2]["why"] == "label matches netflow*"
    p = run("rules", "-a", "--ifconfig", IFCONFIG, str(pf))
    assert p.returncode == 0 and p.stdout.count("\texport\tselect all\t") == 4


def test_check_mode_lists_decisions_and_checks_select_interface(tmp_path):
    (tmp_path / "rules").write_text("@0 pass out all flags S/SA keep state (pflow)\n"
                                    "@1 pass in on em0 all flags S/SA\n")
    p = run("-n", "--ifconfig", IFCONFIG, "--replay", str(tmp_path), "flowdst",
            "127.0.0.1:9995", "select", "interface", "em7")
    assert p.returncode == 0, p.stderr
    assert "@0\texport\trule has pflow\t" in p.stdout
    assert "@1\t-\tno pflow, not selected\t" in p.stdout
    assert "select interface em7: no such interface" in p.stderr


def test_a_bad_ifconfig_file_is_one_line(tmp_path):
    bad = tmp_path / "ifconfig.txt"
    bad.write_text("not ifconfig output\n")
    pf = tmp_path / "pf.conf"
    pf.write_text("antispoof for em0\npass all\n")
    p = run("rules", "--ifconfig", str(bad), str(pf))
    assert p.returncode == 0
    assert "no interface table" in p.stderr and "Traceback" not in p.stderr
    assert "@?" in p.stdout
