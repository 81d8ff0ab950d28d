"""Fuzzing every input reader (issue 11, point 7): the state parser and the tracker's
path, the `-si -v` / `-st` readers, the rule parsers (a `-sr -vv` listing and pf.conf),
the configuration reader and the command line.  Whatever the input, only the project's
own error types may escape (ConfigError, RuleSyntaxError; the parsers report the rest
as ParseErrors), and no input may take a second (hypothesis' deadline).

Inputs are built from the pieces a real table or file is made of (state lines, words,
numbers of any length, odd whitespace, control characters), mutated, so most
examples get past the first check.  max_examples keeps the file to a few seconds.
"""

import functools
import io
import struct
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pflowbsd import cli, statefile
from pflowbsd.config import Config, ConfigError, apply_file, apply_words
from pflowbsd.pf import snapshot, timeouts
from pflowbsd.pf.states import cmd_states, parse_states, scan
from pflowbsd.pipeline import PfSide, Pipeline
from pflowbsd.rules.load import load_ruleset
from pflowbsd.rules.model import RuleSyntaxError, parse_listing
from tests.support.pftext import record, sid
from tests.support.replaydata import BOOT
from tests.support.replaydata import T0 as rd_T0
from tests.unit import test_statefile

FUZZ = settings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.too_slow])

ODD = ["\x1f", "\v", "\f", "\u00a0", "\x00", "\t", "\r", "\u00b2", "\ufffd", "\\\n", "#", '"']
NUMBERS = st.one_of(st.integers(0, 70000).map(str), st.just("9" * 5000), st.just("007"),
                    st.just("18446744073709551616"), st.just("\u0663"))
PROTOS = st.sampled_from(["tcp", "udp", "icmp", "igrp", "pfsync", "carp", "frob", "300",
                          "divert", "ipv6-icmp", ""])
ADDRS = st.sampled_from(["10.0.0.1", "10.0.0.999", "::1", "fe80::1:2", "1:2:3:4:5:6:7:8:9",
                         "(1) 10.0.0.2", "", "a.b.c.d"])


@st.composite
def state_lines(draw: st.DrawFn) -> str:
    head = (f"{draw(st.sampled_from(['all', 'em0', '']))} {draw(PROTOS)} "
            f"{draw(ADDRS)}:{draw(NUMBERS)} {draw(st.sampled_from(['->', '<-', '']))} "
            f"{draw(ADDRS)}:{draw(NUMBERS)}       "
            f"{draw(st.sampled_from(['ESTABLISHED:ESTABLISHED', 'MULTIPLE:MULTIPLE', '0:0', 'x']))}")
    return record(head, id=sid(draw(st.integers(0, 2**32 - 1))),
                  pkts=f"{draw(NUMBERS)}:{draw(NUMBERS)}", bytes=f"{draw(NUMBERS)}:1",
                  age=f"{draw(NUMBERS)}:00:00", tcp=draw(st.booleans()))


def mutate(text: str, cuts: list[int], inserts: list[tuple[int, str]]) -> str:
    for at, what in inserts:
        at %= len(text) + 1
        text = text[:at] + what + text[at:]
    for c in cuts:
        text = text[:c % (len(text) + 1)]
    return text


TABLES = st.builds(mutate, st.lists(state_lines(), max_size=4).map("".join),
                   st.lists(st.integers(0, 10**4), max_size=1),
                   st.lists(st.tuples(st.integers(0, 10**4),
                                      st.one_of(st.sampled_from(ODD), st.text(max_size=5))),
                            max_size=3))


@FUZZ
@given(TABLES)
def test_state_parser_scan_and_states_command(text):
    parse_states(text)
    scan(text)
    cmd_states(text, True, io.StringIO(), io.StringIO())


@FUZZ
@given(st.lists(TABLES, min_size=1, max_size=3), st.one_of(st.none(), st.integers(0, 10**6)))
def test_tracker_and_pipeline_poll(tables, entries):
    cfg = Config(flowdst=[("127.0.0.1", 9995)], export_all=True)
    pipe = Pipeline(cfg, PfSide(cfg), 0)
    for k, text in enumerate(tables):
        pipe.poll(text, 1000 + 10 * k, entries=entries)
    pipe.flush(2000)
    snapshot.partial_reason(tables[0], entries)


INFO_WORDS = st.sampled_from(["Hostid:", "0x1a2b3c4d", "Checksum:", "current entries",
                              "tcp.established", "86400s", "states", "sec", "=", "\n", " ",
                              "9" * 5000, "12", "\u0663"])


@FUZZ
@given(st.lists(st.one_of(INFO_WORDS, st.sampled_from(ODD)), max_size=30).map("".join))
def test_info_timeouts_and_boottime_readers(text):
    timeouts.parse_info(text)
    timeouts.parse_timeouts(text)
    timeouts.parse_boottime(text)
    PfSide(Config()).load(text, None, text)


RULE_WORDS = st.sampled_from([
    "pass", "block", "in", "out", "on", "em0", "proto", "tcp", "udp", "from", "to", "any",
    "port", "22", "022", "0x10", "{", "}", "(", ")", ",", "<", ">", "!", "=", "tos", "010",
    "prio", "keep", "state", "max", "label", '"x"', "anchor", "rule", "@0", "@1", "$m",
    "m", "=", "pflow", "rtable", "01", "icmp-type", "08", "10.0.0.1/8", "::1", "/",
    "\n", " ", "9" * 5000, "table", "include", "set", "timeout", "tcp.first", "0", "-",
    "[", "]", ":", "Evaluations:", "States:", "Packets:", "Bytes:"])


@FUZZ
@given(st.lists(st.one_of(RULE_WORDS, st.sampled_from(ODD)), max_size=40).map(" ".join))
def test_rule_listing_and_pfconf(text):
    try:
        parse_listing(text)
    except RuleSyntaxError:
        pass
    try:
        load_ruleset(text, "pf.conf")
    except RuleSyntaxError:
        pass


CONFIG_WORDS = st.sampled_from([
    "flowdst", "flowsrc", "127.0.0.1:9995", "[::1]:9", "127.0.0.1:\u00b2", "pflowproto",
    "5", "10", "mtu", "9" * 5000, "domain", "tmpl-interval", "nat", "on", "export", "all",
    "select", "rule", "label", "interface", "pfctl", "interval", "1e-300", "nan", "carp",
    "carp0", "pfctl-timeout", "record-max", "1G", "0", "-flowdst", "up", "description",
    "#", "!", "'", '"', "\\", "\n", "=", "\u0663"])


@FUZZ
@given(st.lists(st.one_of(CONFIG_WORDS, st.sampled_from(ODD), st.text(max_size=4)),
                max_size=20))
def test_configuration_reader(words):
    try:
        apply_words(Config(), list(words))
    except ConfigError:
        pass
    try:
        apply_file(Config(), " ".join(words), "f")
    except ConfigError:
        pass


CLI_WORDS = st.sampled_from([
    "states", "rules", "dump", "demo", "-n", "-d", "-i", "pflow0", "", "pf low",
    "../../etc/passwd", "-t", "0", "1e-300", "-c", "x", "--rate", "nan", "--proto", "7",
    "-f", "/nonexistent", "--replay", "/nonexistent", "flowdst", "127.0.0.1:\u00b2",
    "127.0.0.1:9", "mtu", "9" * 5000, "--json", "-h", "--version", "-l", "bad", "--pfctl",
    "/nonexistent/pfctl"])


@FUZZ
@given(st.lists(CLI_WORDS, max_size=8))
def test_command_line(argv):
    # only the parts that do not start a daemon, a listener, a demo or a pfctl
    if not argv or argv[0] in ("dump", "demo") or ("-n" not in argv and argv[0] not in (
            "states", "rules")) or "-" in argv:
        argv = ["-n", *argv]
    if argv[0] in ("states", "rules") and not any(a.startswith("/") for a in argv[1:]):
        argv = [*argv, "/nonexistent"]
    try:
        code = cli.main(argv)
    except SystemExit as e:  # docopt's -h and --version
        code = e.code
    assert code in (0, 1, 2, None)


# --- the state file (issue 12): whatever the bytes, StateFileError or a usable Saved ----

@functools.cache
def _state_file() -> bytes:
    return statefile.encode(statefile.capture(test_statefile.fed(10, 5)))


def _resealed(blob: bytes) -> bytes:
    """blob's payload under a whole header and a right checksum: only the field checks
    stand between it and the tracker."""
    head = statefile.HEADER.pack(statefile.MAGIC, statefile.VERSION, 0, b"pflow0", BOOT,
                                 len(blob) - statefile.HEADER.size, 0)
    payload = blob[statefile.HEADER.size:]
    return head[:-4] + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head[:-4]))) + payload


@FUZZ
@given(st.data())
def test_state_file(data):
    good = _state_file()
    how = data.draw(st.sampled_from(["cut", "flip", "splice", "resealed", "raw"]))
    if how == "raw":
        blob = data.draw(st.binary(max_size=300))
    elif how == "cut":
        blob = good[:data.draw(st.integers(0, len(good)))]
    else:
        k = data.draw(st.integers(statefile.HEADER.size, len(good) - 1))
        blob = good[:k] + data.draw(st.binary(max_size=40)) + good[k + (how != "splice"):]
        if how == "resealed":
            blob = _resealed(blob)
    try:
        saved = statefile.decode(blob)
        pipe = test_statefile.pipeline(10, 5)
        statefile.restore(pipe, saved)
    except statefile.StateFileError:
        return
    pipe.flush(BOOT + 10**6)  # what was restored can be sent, and polled on
    for t in (rd_T0 + 100, rd_T0 + 200):
        pipe.poll("", t)
