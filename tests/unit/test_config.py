"""config: ifconfig's words on the command line and in files."""

import pytest

from pflowbsd.config import Config, ConfigError, apply_file, apply_words, check, parse_endpoint


def words(*tokens):
    return apply_words(Config(), list(tokens))


def test_ifconfig_words():
    cfg = words("flowsrc", "192.0.2.1", "flowdst", "192.0.2.100:9995", "pflowproto", "10",
                "mtu", "1400", "domain", "7", "tmpl-interval", "600", "nat", "on")
    assert cfg.flowsrc == ("192.0.2.1", 0)
    assert cfg.flowdst == [("192.0.2.100", 9995)]
    assert (cfg.pflowproto, cfg.mtu, cfg.domain, cfg.tmpl_interval, cfg.nat) == (10, 1400, 7, 600, True)


def test_flowdst_repeats_and_v6():
    cfg = words("flowdst", "127.0.0.1:9995", "flowdst", "[::1]:9996", "flowdst", "127.0.0.1:9995")
    assert cfg.flowdst == [("127.0.0.1", 9995), ("::1", 9996)]


@pytest.mark.parametrize("text,need,want", [
    ("10.0.0.1:53", True, ("10.0.0.1", 53)),
    ("[2001:db8::1]:2055", True, ("2001:db8::1", 2055)),
    ("2001:db8::1", False, ("2001:db8::1", 0)),
    ("[2001:db8::1]", False, ("2001:db8::1", 0)),
    ("10.0.0.1", False, ("10.0.0.1", 0)),
])
def test_endpoints(text, need, want):
    assert parse_endpoint(text, need) == want


@pytest.mark.parametrize("text", ["10.0.0.1", "collector:9995", "10.0.0.1:0", "10.0.0.1:70000",
                                  "[2001:db8::1]", "10.0.0.1:x"])
def test_flowdst_needs_numeric_host_and_port(text):
    with pytest.raises(ConfigError):
        parse_endpoint(text, need_port=True)


@pytest.mark.parametrize("tokens,msg", [
    (["pflowproto", "9"], "pflowproto"),
    (["mtu", "big"], "mtu"),
    (["flowdst"], "missing value"),
    (["frobnicate", "1"], "unknown word"),
    (["nat", "maybe"], "nat"),
    (["select", "colour", "red"], "select"),
    (["select", "rule", "x"], "select rule"),
])
def test_garbage_is_a_clear_error(tokens, msg):
    with pytest.raises(ConfigError, match=msg):
        words(*tokens)


def test_hostname_pflow_file():
    text = """# /etc/hostname.pflow0
flowsrc 192.0.2.1 flowdst 192.0.2.100:9995
pflowproto 10
up
!echo configured
"""
    cfg = apply_file(Config(), text, "/etc/hostname.pflow0")
    assert cfg.flowsrc == ("192.0.2.1", 0) and cfg.flowdst == [("192.0.2.100", 9995)]
    assert cfg.pflowproto == 10


def test_file_words_and_select():
    text = """flowdst 127.0.0.1:9995   # the collector
export all
pfctl /usr/local/sbin/pfctl
interval 2.5
select label "netflow*"
select rule "relayd/www" 4
select rule 7 select interface em0
select all
"""
    cfg = apply_file(Config(), text, "f")
    assert cfg.export_all and cfg.pfctl == "/usr/local/sbin/pfctl" and cfg.interval == 2.5
    assert cfg.select == [("label", "netflow*"), ("rule", ("relayd/www", 4)), ("rule", ("", 7)),
                          ("interface", "em0"), ("all", None)]


def test_file_error_names_file_and_line():
    with pytest.raises(ConfigError, match=r"^f:2: unknown word 'flowdest'"):
        apply_file(Config(), "flowdst 127.0.0.1:1\nflowdest 127.0.0.1:2\n", "f")
    with pytest.raises(ConfigError, match=r"^f:1: "):
        apply_file(Config(), 'select label "unterminated\n', "f")


def test_check_refuses_without_flowdst():
    with pytest.raises(ConfigError, match="no flowdst"):
        check(Config())
    with pytest.raises(ConfigError, match="families"):
        check(words("flowsrc", "::1", "flowdst", "127.0.0.1:9995"))
    check(words("flowdst", "127.0.0.1:9995"))


def test_removal_words():
    cfg = words("flowsrc", "10.0.0.1", "flowdst", "10.0.0.2:1", "-flowsrc", "-flowdst",
                "flowdst", "10.0.0.3:2")
    assert cfg.flowsrc is None and cfg.flowdst == [("10.0.0.3", 2)]


def test_select_words_reach_the_selector_as_written():
    from pflowbsd.rules.select import Selector

    text = """select label 'say "hi"*'
select label 'back\\slash'
select rule "relayd/www" 4
"""
    cfg = apply_file(Config(), text, "f")
    want = [("label", 'say "hi"*'), ("label", "back\\slash"), ("rule", ("relayd/www", 4))]
    assert cfg.select == want
    assert Selector.from_config(cfg.select).tests == want
