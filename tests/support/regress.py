"""Shared helpers for the pfctl regression tests (tests/fixtures/pfctl-regress)."""
import re
from dataclasses import replace
from functools import cache
from pathlib import Path

from pflowbsd.pf.ifaces import parse_ifconfig
from pflowbsd.rules.ifa import IfTable
from pflowbsd.rules.model import RuleSyntaxError, parse_listing
from pflowbsd.rules.pfconf import parse_pfconf
from tests.support import FIXTURES

REGRESS = FIXTURES / "pfctl-regress"


def read_fixture(name):
    return (REGRESS / name).read_text()


def number(path):
    return int(re.search(r"(\d+)", path.name).group(1))


def cases(pattern):
    """Stems of the fixture files matching pattern, in numeric order."""
    return sorted((p.stem for p in REGRESS.glob(pattern)),
                  key=lambda s: (re.sub(r"\d+", "", s), number(Path(s))))


def defines(stem):
    opts = REGRESS / f"{stem}.opts"
    out = {}
    if opts.exists():
        for word in opts.read_text().split():
            if word.startswith("-D"):
                k, _, v = word[2:].partition("=")
                out[k] = v
    return out


# The host the suite ran on (tests/fixtures/ifconfig/regress.txt): lo0 as
# pfN.ok shows it resolved, and the interfaces the suite's Makefile creates.
INTERFACES = IfTable(parse_ifconfig(
    (FIXTURES / "ifconfig" / "regress.txt").read_text()))


# The Makefile's pfloadanchors targets load these with pfctl's default
# optimizer (`pfctl -a regress -v -f -`, no `-o none`) and list them with
# `pfctl -a 'regress/*' -sr | sed -e 's/__automatic_[0-9a-f]*_.*>/__automatic_>/'`;
# every other pfN.ok is `pfctl -o none -nv`.
LOAD_ANCHORS = frozenset(("pf112", "pf113"))
AUTOMATIC = re.compile(r"__automatic_[0-9a-f_]*")


@cache
def expanded(stem, optimize=None):
    """pfN.in as pfctl read it for pfN.ok (optimize None) or as asked;
    parsed once per run (the tests only read the result)."""
    return parse_pfconf(read_fixture(f"{stem}.in"), "stdin",
                        read_file=read_fixture, defines=defines(stem),
                        interfaces=INTERFACES,
                        optimize=stem in LOAD_ANCHORS if optimize is None
                        else optimize)


def sed_automatic(rules):
    """The optimizer's table names as the Makefile's sed leaves them: its
    `__automatic_<random id>_<n>` (ours: pfctl -n's `__automatic_<k>`) is
    `__automatic_`; a listing's `:count` goes too."""
    out = []
    for r in rules:
        for side in ("src", "dst"):
            end = getattr(r, side)
            if end.host and end.host.kind == "table" and \
                    end.host.value.startswith("__automatic_"):
                host = end.host._replace(value=AUTOMATIC.sub(
                    "__automatic_", end.host.value.split(":")[0]))
                r = replace(r, **{side: end._replace(host=host)})
        out.append(r)
    return out


def reachable(rules, loaded=()):
    """Rules pfctl -nv prints: main, anchors some printed rule calls, and
    those a `load anchor` filled (loaded: their paths) that nothing calls,
    which it prints flat, as if in the main ruleset."""
    calls, out = {""}, []
    for r in rules:
        if r.anchor in calls:
            out.append(r)
            if r.call:
                calls.add(r.call)
    for r in rules:
        if r.anchor not in calls and r.anchor.split("/")[0] in loaded:
            out.append(replace(r, anchor=""))
    return out


@cache
def printed(stem):
    return parse_listing(read_fixture(f"{stem}.ok"), f"{stem}.ok",
                         numbered=False)


@cache
def loaded(stem, kind="loaded"):
    return parse_listing(read_fixture(f"{stem}.{kind}"), f"{stem}.{kind}")


def rejected_line(stem):
    """(line pfctl names, line we name) for a pfailN case."""
    want, got = rejected(stem)
    return want[0] if want else None, got[0] if got else None


def rejected(stem):
    """((line, message) pfctl printed first, (line, message) we raise)."""
    first = re.search(r"stdin:(\d+): (.*)", read_fixture(f"{stem}.ok"))
    want = (int(first.group(1)), first.group(2)) if first else None
    try:
        expanded(stem)
    except RuleSyntaxError as exc:
        return want, (exc.line, exc.message)
    return want, None


def pfctl_messages(stem):
    """Every message pfctl printed for a pfailN case, `stdin:N: ` cut."""
    return {re.sub(r"^stdin:\d+: ", "", line)
            for line in read_fixture(f"{stem}.ok").splitlines()}


KEY_FIELDS = ("anchor", "action", "direction", "quick", "ifname", "af",
              "proto", "src", "dst", "state", "state_opts", "pflow",
              "timeouts", "label", "tag", "call")


def diff(ours, theirs, with_nr=False):
    """First differing rule keys of two rule lists, or None."""
    a = [((r.nr,) if with_nr else ()) + r.key() for r in ours]
    b = [((r.nr,) if with_nr else ()) + r.key() for r in theirs]
    if a == b:
        return None
    names = (("nr",) if with_nr else ()) + KEY_FIELDS
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"rule {i} (line {ours[i].line}): " + ", ".join(
                f"{n}: {u!r} != {v!r}" for n, u, v in zip(names, x, y)
                if u != v)
    return f"{len(a)} rules != {len(b)} rules"
