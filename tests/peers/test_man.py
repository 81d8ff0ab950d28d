"""The man pages: mandoc-clean, and in step with the usage text and the file grammar.

The usage text (pflowbsd/cli.py's docstring) is the CLI's single source, so the
options, commands and PARAM words are read from it, not listed here."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import pflowbsd.cli
import pflowbsd.config
from tests.support import ROOT
from tests.support.peers import require

MAN = ROOT / "man"
PAGES = [MAN / "pflowbsd.8", MAN / "pflowbsd.conf.5"]
USAGE = pflowbsd.cli.__doc__


def render(page: Path) -> str:
    mandoc = require("mandoc")
    out = subprocess.run([mandoc, "-T", "ascii", str(page)], capture_output=True,
                         check=True).stdout.decode()
    return re.sub(r".\x08", "", out)  # drop overstrike (bold, underline)


def has_token(text: str, token: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", text) is not None


def usage_lines() -> list[str]:
    block = USAGE.split("Usage:", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def usage_options() -> set[str]:
    """Every option of the usage lines and of the option tables (lines that start with -)."""
    lines = usage_lines() + [line.strip() for line in USAGE.splitlines()
                             if line.strip().startswith("-")]
    found = set()
    for line in lines:
        for opt in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", line):
            if not opt.startswith("--") and len(opt) > 2:  # -adnv
                found.update(f"-{c}" for c in opt[1:])
            else:
                found.add(opt)
    return found


def usage_commands() -> set[str]:
    return {line.split()[1] for line in usage_lines()
            if line.startswith("pflowbsd ") and re.fullmatch(r"[a-z]+", line.split()[1])}


def usage_params() -> set[str]:
    """The PARAM words: a lowercase word followed by its value (ADDR, N, 5|10, on|off)."""
    block = USAGE.split("PARAM is", 1)[1].split("\n\n", 1)[0].split("\n", 1)[1]
    return set(re.findall(r"(?<![\w-])([a-z][a-z-]+) (?=[A-Z0-9]|\w+\|)", block))


def test_usage_is_parsed():
    # guards the parsers above: the sets they read must hold what we know is there
    assert {"-a", "-d", "-i", "-f", "--pfctl", "--record", "--replay", "-l", "-r", "-c",
            "--json", "--rate", "--help", "--version"} <= usage_options()
    assert usage_commands() == {"states", "rules", "dump", "demo", "stats", "ctl"}
    assert {"flowsrc", "flowdst", "pflowproto", "mtu", "domain", "tmpl-interval", "nat",
            "export"} <= usage_params()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_mandoc_lint_clean(page):
    mandoc = require("mandoc")
    lint = subprocess.run([mandoc, "-T", "lint", "-W", "warning", str(page)],
                          capture_output=True, text=True)
    # mandoc also complains about the host's stale mandoc.db: not the page's fault
    complaints = [line for line in (lint.stdout + lint.stderr).splitlines()
                  if "mandoc.db" not in line]
    assert complaints == [], "\n".join(complaints)


def test_every_option_is_documented():
    text = render(MAN / "pflowbsd.8")
    missing = sorted(o for o in usage_options() if not has_token(text, o))
    assert missing == []


def test_every_command_and_param_is_documented():
    text = render(MAN / "pflowbsd.8")
    synopsis = text.split("SYNOPSIS", 1)[1].split("DESCRIPTION", 1)[0]
    for command in usage_commands():
        assert has_token(synopsis, f"pflowbsd {command}"), command
    missing = sorted(w for w in usage_params() if not has_token(text, w))
    assert missing == []


def test_the_file_grammar_is_documented():
    text = render(MAN / "pflowbsd.conf.5")
    words = set(pflowbsd.config.WORDS) | {"select"}
    words |= {f"select {kind}" for kind in pflowbsd.config.SELECT_ARGS}
    words |= {w for w in pflowbsd.config.IGNORED if w != "descr"}
    missing = sorted(w for w in words if not has_token(text, w))
    assert missing == []


def test_manual_says_what_the_kernel_says():
    text = " ".join(render(MAN / "pflowbsd.8").split())
    for fact in ("SIGHUP", "SIGTERM", "/etc/pflowbsd.pflowN.conf", "/var/run/pflowbsd.pflowN.pid",
                 "rcctl set pflowbsd flags -i pflow0", "sysrc pflowbsd_enable=YES",
                 "set state-defaults pflow", "256", "257", "258", "259", "creatorid",
                 "interface indexes", "30 seconds", "pflow(4)", "pf.conf(5)", "pfctl(8)",
                 "pfsync(4)", "nfcapd(1)", "ifconfig(8)", "rcctl(8)"):
        assert fact in text, fact
