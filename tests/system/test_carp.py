"""carp: a pfsync'd pair exports each flow once: the backup tracks, the master sends."""

import os

import pytest

from pflowbsd.config import Config, ConfigError, apply_words
from pflowbsd.pf.carp import parse_status
from tests.system.test_live import a, b, c, decode_v5, flows_of, run_live, standin

OPENBSD = """carp0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1500
\tlladdr 00:00:5e:00:01:01
\tindex 7 priority 15 llprio 3
\tcarp: {} carpdev em0 vhid 1 advbase 1 advskew 0
\tgroups: carp
\tstatus: master
\tinet 192.0.2.1 netmask 0xffffff00 broadcast 192.0.2.255
"""
FREEBSD = """em0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500
\tinet 192.0.2.1 netmask 0xffffff00 broadcast 192.0.2.255 vhid 1
\tcarp: {} vhid 1 advbase 1 advskew 0
\tcarp: {} vhid 2 advbase 1 advskew 100
"""


@pytest.mark.parametrize("text,want", [
    (OPENBSD.format("MASTER"), "MASTER"),
    (OPENBSD.format("BACKUP"), "BACKUP"),
    (OPENBSD.format("INIT"), "INIT"),
    (FREEBSD.format("MASTER", "MASTER"), "MASTER"),
    (FREEBSD.format("MASTER", "BACKUP"), "BACKUP"),  # master of one vhid only: not the master
    ("em0: flags=8843<UP> mtu 1500\n", None),
])
def test_parse_status(text, want):
    assert parse_status(text) == want


def test_carp_word():
    assert apply_words(Config(), ["carp", "carp0"]).carp == "carp0"
    assert apply_words(Config(), ["carp", "carp0", "carp", "none"]).carp is None
    with pytest.raises(ConfigError, match="carp"):
        apply_words(Config(), ["carp", "-x"])


IFCONFIG = r"""#!/bin/sh
# A stand-in ifconfig: BACKUP for the first two polls of the stand-in pfctl, then MASTER.
n=$(cat "{pf}/n")
if [ "$1" != carp0 ]; then echo "ifconfig: $1: no such interface" >&2; exit 1; fi
if [ "$n" -ge 3 ]; then s=MASTER; else s=BACKUP; fi
printf 'carp0: flags=8843<UP> mtu 1500\n\tcarp: %s carpdev em0 vhid 1 advbase 1 advskew 0\n' $s
"""


def test_a_backup_tracks_without_exporting_and_the_master_exports(tmp_path):
    # poll 0: A, B, C (backup); poll 1: A, C - B ends on the backup: not sent;
    # poll 2 on: master; poll 3: C only - A ends on the master: sent, with its counters
    script = standin(tmp_path, [a() + b() + c(), a() + c(), a("40:50", "7000:80000") + c()],
                     last=c())
    pf = os.path.dirname(script)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ifconfig").write_text(IFCONFIG.format(pf=pf))
    (bindir / "ifconfig").chmod(0o755)
    status, before, after, err = run_live(script, until=6, words=("carp", "carp0"), path=str(bindir))
    got = decode_v5(before + after)
    assert status == 0, err
    assert got == flows_of("10.0.0.5", "93.184.216.34", 50000, 443, 6, (40, 50), (7000, 80000)), err
    assert err.count("carp0 is BACKUP: not exporting") == 1, err
    assert err.count("carp0 is MASTER: exporting") == 1, err
    assert "not_master=1" in err, err
