"""The ports skeletons (packaging/): each packing list names exactly what the package
installs, as tests/support/plist.py computes it from setup.cfg and the tree.

OpenBSD's PLIST lists every file; FreeBSD's autoplist lists the wheel's and pkg-plist
must hold exactly what the Makefile installs besides (the rc.d script)."""

from __future__ import annotations

import re

from tests.support import ROOT, plist

OPENBSD, FREEBSD = ROOT / "packaging" / "openbsd", ROOT / "packaging" / "freebsd"
REGENERATE = "rewrite it: python3 -m tests.support.plist > packaging/openbsd/pkg/PLIST"


def test_installed_list_is_the_tree():
    paths = plist.installed()
    modules = sorted(str(p.relative_to(ROOT)) for p in plist.source_files()
                     if p.suffix == ".py" and p.relative_to(ROOT).parts[0] == "pflowbsd")
    assert "pflowbsd/cli.py" in modules and "pflowbsd/collector/decode.py" in modules
    site = "lib/python3.11/site-packages/"
    assert sorted(p[len(site):] for p in paths if p.endswith(".py")) == modules
    assert "bin/pflowbsd" in paths and "share/man/man8/pflowbsd.8" in paths
    assert f"{site}pflowbsd/__pycache__/cli.cpython-311.opt-1.pyc" in paths


def test_openbsd_plist_names_exactly_what_is_installed():
    lines = (OPENBSD / "pkg" / "PLIST").read_text().splitlines()
    want = plist.openbsd_plist(plist.openbsd_user_id())
    missing, extra = sorted(set(want) - set(lines)), sorted(set(lines) - set(want))
    assert (missing, extra) == ([], []), REGENERATE
    assert lines == want, REGENERATE
    assert len(lines) == len(set(lines))


def test_openbsd_port_follows_the_tree():
    make = (OPENBSD / "Makefile").read_text()
    assert re.search(r"^MODULES =\t+lang/python$", make, re.M)
    assert re.search(r"^MODPY_PYBUILD =\t+setuptools$", make, re.M)
    assert re.search(rf"^MODPY_DISTV =\t+{re.escape(plist.version())}$", make, re.M)
    assert "rc.d/pflowbsd.openbsd ${WRKINST}${RCDIR}/pflowbsd" in make
    assert (OPENBSD / "pkg" / "DESCR").read_text().strip()
    user_line = (OPENBSD / "user.list").read_text().strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ _pflowbsd\t+_pflowbsd\tnet/pflowbsd", user_line)
    head = (OPENBSD / "pkg" / "PLIST").read_text().splitlines()[:2]
    uid = user_line.split()[0]
    assert head == [f"@newgroup _pflowbsd:{uid}",
                    f"@newuser _pflowbsd:{uid}:_pflowbsd:daemon:pflowbsd user:/var/empty:/sbin/nologin"]


def test_freebsd_pkg_plist_names_what_autoplist_does_not():
    make = (FREEBSD / "Makefile").read_text()
    assert re.search(r"^USE_PYTHON=\t.*\bautoplist\b.*\bpep517\b", make, re.M)
    assert re.search(rf"^DISTVERSION=\t{re.escape(plist.version())}$", make, re.M)
    # what the Makefile installs itself, into ${STAGEDIR}${PREFIX}
    own = sorted(re.findall(r"\$\{INSTALL_\w+\} \S+ \$\{STAGEDIR\}\$\{PREFIX\}/(\S+)", make))
    listed = sorted(line for line in (FREEBSD / "pkg-plist").read_text().splitlines()
                    if line and not line.startswith("@"))
    assert listed == own == ["etc/rc.d/pflowbsd"]
    assert not set(listed) & set(plist.installed())  # nothing listed twice
    assert re.search(r"^USERS=\t+_pflowbsd$", make, re.M) and re.search(r"^GROUPS=\t+_pflowbsd$", make, re.M)
    uid = (FREEBSD / "UIDs").read_text().strip().splitlines()[-1]
    gid = (FREEBSD / "GIDs").read_text().strip().splitlines()[-1]
    assert re.fullmatch(r"_pflowbsd:\*:(\d+):\1::0:0:[^:]+:/nonexistent:/usr/sbin/nologin", uid)
    assert gid == f"_pflowbsd:*:{uid.split(':')[2]}:"
    assert (FREEBSD / "pkg-descr").read_text().strip()


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    """The README's two commands (the demo, the tests) and .ci/run's copy of the second."""
    readme = (ROOT / "README.md").read_text()
    try_it = readme.split("## Try it, test it", 1)[1].split("\n## ", 1)[0]
    commands = [line.strip() for line in try_it.splitlines() if line.startswith("    ")]
    assert len(commands) == 2, commands
    demo, tests = commands
    assert demo.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert demo.endswith(" && pflowbsd demo") and tests.endswith(" && python3 -m pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci
    assert "python3-venv" in (ROOT / ".ci" / "run").read_text()


def test_ports_build_the_c_scanner_as_arch_dependent_code():
    """The package holds a compiled module: neither port may call itself arch-free, and
    OpenBSD's links what an extension module needs."""
    assert "pflowbsd/pf/_fastscan.c" in (plist.ROOT / "setup.py").read_text()
    assert not re.search(r"^NO_ARCH=", (FREEBSD / "Makefile").read_text(), re.M)
    make = (OPENBSD / "Makefile").read_text()
    assert not re.search(r"^PKG_ARCH", make, re.M)
    assert re.search(r"^WANTLIB \+=\t+\$\{MODPY_WANTLIB\}", make, re.M)
