"""Configuration: ifconfig's own words for a pflow interface, on the command line or in
a file, so an OpenBSD operator can point -f at an existing /etc/hostname.pflowN.

A file holds one or more `word value` pairs per line, and `#` starts a comment; the
`select` words are read here, once, into SelectTest tuples (pflowbsd.rules.select).
ifconfig words that make no sense here (`up`, `down`, `create`, `description ...`) and
hostname.if(5) `!command` lines are accepted and ignored; anything else unknown is an
error naming file and line.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pflowbsd.rules.select import SELECT_ARGS as SELECT_ARGS  # the `select` kinds, for the man page test
from pflowbsd.rules.select import SelectTest, read_select

T = TypeVar("T")


class ConfigError(ValueError):
    pass


Endpoint = tuple[str, int]  # a numeric address and a UDP port (0: any)


@dataclass
class Config:
    instance: str = "pflow0"
    flowsrc: tuple[str, int] | None = None
    flowdst: list[tuple[str, int]] = field(default_factory=list)
    pflowproto: int = 5
    mtu: int = 1500
    domain: int = 42
    tmpl_interval: int = 30
    nat: bool = False
    export_all: bool = False
    pfctl: str = "pfctl"
    interval: float = 10.0
    select: list[SelectTest] = field(default_factory=list)
    carp: str | None = None  # export only while this carp interface is MASTER
    pfctl_timeout: float | None = None  # seconds; None: max(30, 3 x interval)
    record_max: int = 1 << 30  # bytes a --record folder may hold; the oldest go first
    active_timeout: int = 0  # seconds; 0: export at removal only, as the kernel
    sync: str = "all"  # "own": only states this host created (creatorid == Hostid)
    sampling: int = 0  # advertised packet sampling interval; 0: not sent, as the kernel
    ipfix_layout: str = "openbsd"  # the templates: openbsd, openbsd-nat or freebsd
    max_rate: int = 0  # datagrams per second per collector; 0: unlimited, as the kernel
    stats_file: str | None = None  # None: /var/db/pflowbsd/IF.prom if that folder exists; "none": off
    state_file: str | None = None  # None: /var/db/pflowbsd/IF.state if that folder exists; "none": off
    control: str | None = None  # the control socket; None: /var/run/pflowbsd.IF.sock; "none": off
    log_facility: str = "daemon"  # syslog(3)'s facility, by its syslog.conf(5) name


_V6_PORT = re.compile(r"^\[([^\]]+)\](?::(\d+))?$")


def _shown(value: str) -> str:
    """A bad value as an error line quotes it: at most 40 characters of it."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


def endpoint_text(addr: str | None, port: int) -> str:
    """ADDR:PORT as an operator writes it, IPv6 in brackets; `?` for an unknown address."""
    addr = addr or "?"
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def parse_endpoint(text: str, need_port: bool) -> tuple[str, int]:
    """`a.b.c.d[:port]`, `[v6][:port]` or a bare v6 address; numeric only, as ifconfig."""
    m = _V6_PORT.match(text)
    if m:
        addr, port = m[1], m[2]
    elif text.count(":") == 1:
        addr, port = text.split(":")
    else:
        addr, port = text, None
    try:
        addr = str(ipaddress.ip_address(addr))
    except ValueError:
        raise ConfigError(f"{_shown(text)}: not a numeric IPv4 or IPv6 address") from None
    if port is None:
        if need_port:
            raise ConfigError(f"{text!r}: a port is required (flowdst ADDR:PORT)")
        return addr, 0
    if not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536:
        raise ConfigError(f"{_shown(text)}: bad port")
    return addr, int(port)


def _int(lo: int, hi: int) -> Callable[[str, str], int]:
    def conv(word: str, value: str) -> int:
        if not re.fullmatch(r"[0-9]{1,20}", value) or not lo <= int(value) <= hi:
            raise ConfigError(f"{word} {_shown(value)}: want a whole number from {lo} to {hi}")
        return int(value)
    return conv


def _choice(**choices: T) -> Callable[[str, str], T]:
    def conv(word: str, value: str) -> T:
        if value not in choices:
            raise ConfigError(f"{word} {value!r}: want one of {', '.join(choices)}")
        return choices[value]
    return conv


def _seconds(word: str, value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        v = -1
    if not 0.1 <= v <= 86400:  # below 0.1 s the poll loop would only spin
        raise ConfigError(f"{word} {_shown(value)}: want seconds, from 0.1 to 86400")
    return v


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _size(word: str, value: str) -> int:
    """SIZE: bytes, or with a K, M, G or T suffix (powers of 1024)."""
    m = re.fullmatch(r"([0-9]{1,15})([KMGT]?)", value.upper())
    if not m or not int(m[1]):
        raise ConfigError(f"{word} {_shown(value)}: want a size such as 500M or 1G")
    return int(m[1]) * _SIZE_UNITS[m[2]]


def _set(attr: str, conv: Callable[[str, str], object]) -> Callable[[Config, str, str], None]:
    def apply(cfg: Config, word: str, value: str) -> None:
        setattr(cfg, attr, conv(word, value))
    return apply


def _flowsrc(cfg: Config, word: str, value: str) -> None:
    cfg.flowsrc = parse_endpoint(value, need_port=False)


def _flowdst(cfg: Config, word: str, value: str) -> None:
    dst = parse_endpoint(value, need_port=True)
    if dst not in cfg.flowdst:
        cfg.flowdst.append(dst)


def _path(cfg: Config, word: str, value: str) -> None:
    cfg.pfctl = value


def _carp(cfg: Config, word: str, value: str) -> None:
    if value == "none":
        cfg.carp = None
    elif re.fullmatch(r"[a-z]+[0-9]+(\.[0-9]+)?", value):
        cfg.carp = value
    else:
        raise ConfigError(f"carp {value!r}: want an interface name such as carp0, or none")


# syslog.conf(5)'s facility names a daemon may log under (log-facility)
LOG_FACILITIES = ("daemon", "user", "local0", "local1", "local2", "local3", "local4",
                  "local5", "local6", "local7")

# word -> (takes a value, apply)
WORDS = {
    "flowsrc": (True, _flowsrc),
    "flowdst": (True, _flowdst),
    "pflowproto": (True, _set("pflowproto", _choice(**{"5": 5, "10": 10}))),
    "mtu": (True, _set("mtu", _int(72, 65535))),
    "domain": (True, _set("domain", _int(0, 2**32 - 1))),
    "tmpl-interval": (True, _set("tmpl_interval", _int(1, 86400))),
    "nat": (True, _set("nat", _choice(on=True, off=False))),
    "export": (True, _set("export_all", _choice(pflow=False, all=True))),
    "pfctl": (True, _path),
    "interval": (True, _set("interval", _seconds)),
    "carp": (True, _carp),
    "pfctl-timeout": (True, _set("pfctl_timeout", _seconds)),
    "record-max": (True, _set("record_max", _size)),
    "active-timeout": (True, _set("active_timeout", _int(0, 2**31 - 1))),
    "sync": (True, _set("sync", _choice(own="own", all="all"))),
    "sampling": (True, _set("sampling", _int(0, 16383))),
    "ipfix-layout": (True, _set("ipfix_layout", _choice(**{
        "openbsd": "openbsd", "openbsd-nat": "openbsd-nat", "freebsd": "freebsd"}))),
    "max-rate": (True, _set("max_rate", _int(0, 10**7))),
    "stats-file": (True, _set("stats_file", lambda w, v: v)),
    "state-file": (True, _set("state_file", lambda w, v: v)),
    "control": (True, _set("control", lambda w, v: v)),
    "log-facility": (True, _set("log_facility", _choice(**{f: f for f in LOG_FACILITIES}))),
    "-flowsrc": (False, lambda cfg, w, v: setattr(cfg, "flowsrc", None)),
    "-flowdst": (False, lambda cfg, w, v: cfg.flowdst.clear()),
}
IGNORED = {"up": False, "down": False, "create": False, "destroy": False,
           "description": True, "descr": True}


def apply_words(cfg: Config, tokens: list[str]) -> Config:
    i = 0
    while i < len(tokens):
        word = tokens[i]
        if word == "select":
            try:
                test, i = read_select(tokens, i + 1)
            except ValueError as e:
                raise ConfigError(str(e)) from None
            cfg.select.append(test)
            continue
        if word in IGNORED:
            i += 1 + IGNORED[word]
            continue
        if word not in WORDS:
            raise ConfigError(f"unknown word {word!r}")
        takes, apply = WORDS[word]
        value = None
        if takes:
            if i + 1 >= len(tokens):
                raise ConfigError(f"{word}: missing value")
            value = tokens[i + 1]
        apply(cfg, word, value)
        i += 2 if takes else 1
    return cfg


def apply_file(cfg: Config, text: str, name: str) -> Config:
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("!"):
            continue  # hostname.if(5) shell command
        try:
            apply_words(cfg, shlex.split(line, comments=True))
        except (ConfigError, ValueError) as e:
            raise ConfigError(f"{name}:{n}: {e}") from None
    return cfg


def check(cfg: Config) -> None:
    """What must hold before the daemon starts."""
    if not cfg.flowdst:
        raise ConfigError("no flowdst: give the collector as flowdst ADDR:PORT")
    if cfg.flowsrc:
        fams = {ipaddress.ip_address(a).version for a, _ in cfg.flowdst}
        if ipaddress.ip_address(cfg.flowsrc[0]).version not in fams:
            raise ConfigError("flowsrc and flowdst are of different address families")


def _render_select(t: SelectTest) -> str:
    if t.kind == "rule" and isinstance(t.arg, tuple):
        anchor, nr = t.arg
        return f"select rule {shlex.quote(anchor) + ' ' if anchor else ''}{nr}"
    return f"select {t.kind}" + (f" {shlex.quote(str(t.arg))}" if t.arg is not None else "")


def render(cfg: Config) -> str:
    """The configuration in the file's own words, one `word value` a line, defaults
    included, as `ifconfig pflowN` shows every setting: apply_file() of it gives cfg."""
    seconds = lambda v: f"{v:g}"
    lines = [f"# {cfg.instance}"]
    if cfg.flowsrc:
        lines.append(f"flowsrc {endpoint_text(*cfg.flowsrc) if cfg.flowsrc[1] else cfg.flowsrc[0]}")
    lines += [f"flowdst {endpoint_text(*d)}" for d in cfg.flowdst]
    lines += [f"pflowproto {cfg.pflowproto}", f"mtu {cfg.mtu}", f"domain {cfg.domain}",
              f"tmpl-interval {cfg.tmpl_interval}", f"nat {'on' if cfg.nat else 'off'}",
              f"export {'all' if cfg.export_all else 'pflow'}", f"sync {cfg.sync}",
              f"active-timeout {cfg.active_timeout}", f"sampling {cfg.sampling}",
              f"ipfix-layout {cfg.ipfix_layout}", f"max-rate {cfg.max_rate}",
              f"carp {cfg.carp or 'none'}", f"interval {seconds(cfg.interval)}",
              f"pfctl {shlex.quote(cfg.pfctl)}"]
    if cfg.pfctl_timeout is not None:
        lines.append(f"pfctl-timeout {seconds(cfg.pfctl_timeout)}")
    lines.append(f"record-max {cfg.record_max}")
    lines += [_render_select(t) for t in cfg.select]
    for word, attr in (("stats-file", "stats_file"), ("state-file", "state_file"),
                       ("control", "control")):  # the file words, set or by default
        value = getattr(cfg, attr, None)
        if value is not None:
            lines.append(f"{word} {shlex.quote(value)}")
    lines.append(f"log-facility {cfg.log_facility}")
    return "\n".join(lines) + "\n"
