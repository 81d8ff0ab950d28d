"""pflowbsd/control.py (the request parser and dispatcher, the states table), the Config
renderer, the pipeline's expire_all / send_template, statistics across a SIGHUP, the
log-facility word and pflowbsd/usage.py (per-command help, what a refused line got wrong)."""

import shlex

import pytest

from pflowbsd import cli, control, usage
from pflowbsd.config import Config, ConfigError, apply_file, apply_words, render
from pflowbsd.pipeline import PfSide, Pipeline
from tests.support.pftext import record, sid

A = "all tcp 10.0.0.5:50000 -> 93.184.216.34:443       ESTABLISHED:ESTABLISHED"
B = "all udp 2001:db8::5[41000] -> 2001:db8::53[53]       MULTIPLE:MULTIPLE"


def table(pkts="20:30", nbytes="5000:60000"):
    return (record(A, id=sid(1), pkts=pkts, bytes=nbytes, expires="23:59:50")
            + record(B, id=sid(2), pkts="3:2", bytes="183:300", expires="00:00:50"))


@pytest.mark.parametrize("line, want", [
    (b"statistics\n", ("statistics", None)),
    (b"debug on\n", ("debug", "on")),
    (b"  expire-all  ", ("expire-all", None)),
])
def test_requests(line, want):
    assert control.parse_request(line) == want


@pytest.mark.parametrize("line, why", [
    (b"", "empty request"),
    (b"frobnicate\n", "unknown command 'frobnicate'"),
    (b"debug\n", "want debug on|off"),
    (b"debug maybe\n", "want debug on|off"),
    (b"shutdown now\n", "takes no argument"),
    (b"statistics" + b" " * 300, "over 256 bytes"),
    (b"st\xe9\n", "not ASCII"),
])
def test_bad_requests_say_why(line, why):
    with pytest.raises(control.ControlError, match=why):
        control.parse_request(line)


def test_dispatch_wraps_text_and_errors():
    def boom(req):
        raise control.ControlError("cannot\nnow")
    handlers = {"statistics": lambda r: "n\n", "send-template": boom}
    assert control.dispatch(b"statistics\n", handlers) == (("statistics", None), b"ok\nn\n")
    assert control.dispatch(b"send-template", handlers)[1] == b"error: cannot now\n"
    assert control.parse_reply(control.dispatch(b"nope", handlers)[1])[0] is False
    assert control.parse_reply(b"ok\ntext\n") == (True, "text\n")
    assert control.parse_reply(b"garbage")[0] is False


def test_socket_path():
    assert control.socket_path(Config(instance="pflow3")) == "/var/run/pflowbsd.pflow3.sock"
    assert control.socket_path(Config(control="/tmp/x.sock")) == "/tmp/x.sock"
    assert control.socket_path(Config(control="none")) is None


def test_render_reads_back_as_the_same_config():
    cfg = Config(instance="pflow1")
    apply_words(cfg, shlex.split(
        "flowsrc 2001:db8::1 flowdst [2001:db8::9]:9995 flowdst 127.0.0.1:2055 pflowproto 10 "
        "nat on export all select rule 'my anchor' 3 select label 'web *' sampling 8 "
        "pfctl '/usr/local/sbin/my pfctl' pfctl-timeout 5 interval 2.5 stats-file none "
        "control /tmp/c.sock log-facility local3 carp carp0 active-timeout 60"))
    text = render(cfg)
    assert "flowdst [2001:db8::9]:9995\n" in text and "log-facility local3\n" in text
    back = apply_file(Config(instance="pflow1"), text, "rendered")
    assert back == cfg
    assert render(Config()).count("flowdst") == 0


def test_log_facility_word():
    assert apply_words(Config(), ["log-facility", "local7"]).log_facility == "local7"
    assert Config().log_facility == "daemon"
    with pytest.raises(ConfigError, match="want one of daemon"):
        apply_words(Config(), ["log-facility", "kern"])


def pipeline(cfg=None):
    cfg = cfg or Config(flowdst=[("127.0.0.1", 9995)], export_all=True)
    return Pipeline(cfg, PfSide(cfg), boot=1_000_000)


def test_expire_all_exports_each_state_once_and_keeps_it_tracked():
    p = pipeline()
    p.poll(table(), 1_000_100.0)
    n, out = p.expire_all(1_000_105.0)
    assert n == 2 and out.count() == 1  # v5: one datagram, flushed at once
    assert len(p.tracker) == 2 and p.exporter.stats["flows"] == 2  # a two flows; v5 carries no IPv6
    assert p.expire_all(1_000_106.0)[0] == 0  # nothing gained since
    text = control.states_text(p.tracker)
    assert "tcp 10.0.0.5:50000 -> 93.184.216.34:443 20:30 pkts, 5000:60000 bytes, " \
           "exported: 20:30 pkts, 5000:60000 bytes" in text
    assert "udp [2001:db8::5]:41000 -> [2001:db8::53]:53" in text
    # a grows, then both go: only what a gained since is exported
    p.poll(table("25:41", "6100:71234"), 1_000_110.0)
    up, _ = p.poll("", 1_000_120.0)
    assert up.gone == 2 and len(up.expired) == 1
    from pflowbsd.flows import flow_pair
    f1, f2 = flow_pair(up.expired[0])
    assert (f1.packets, f2.packets, f1.octets, f2.octets) == (5, 11, 1100, 11234)


def test_send_template_and_statistics_survive_a_new_protocol():
    cfg = Config(flowdst=[("127.0.0.1", 9995)], export_all=True)
    p = pipeline(cfg)
    p.poll(table(), 1_000_100.0)
    p.expire_all(1_000_101.0)
    assert p.send_template(1_000_101.0).count() == 0  # v5 has no templates
    before = dict(p.exporter.stats)
    ipfix = Config(flowdst=cfg.flowdst, export_all=True, pflowproto=10)
    p.reconfigure(ipfix, PfSide(ipfix), 1_000_102.0)  # SIGHUP: pflowproto 5 -> 10
    assert p.exporter.stats["flows"] == before["flows"]
    assert p.exporter.stats["datagrams"] == before["datagrams"] + 1  # + the templates
    assert p.send_template(1_000_103.0).count() == 1
    assert p.stats()["templates"] == 2


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_each_command_has_its_own_help(command):
    text = usage.command_help(cli.__doc__, command)
    assert text.startswith(f"Usage:\n  pflowbsd {command} ")
    assert all(f"pflowbsd {other} " not in text for other in cli.COMMANDS if other != command)
    for opt in usage.options(usage.lines(cli.__doc__, command)) - {"-h", "--help"}:
        assert f"\n  {opt} " in text or f"\n  {opt}," in text, (command, opt)


def test_ctl_help_lists_every_control_command():
    text = usage.command_help(cli.__doc__, "ctl")
    assert all(f"\n  {name}" in text for name in control.COMMANDS)
    assert all(name in cli.__doc__ for name in control.COMMANDS)


def test_refused_names_the_unknown_option():
    assert usage.refused(cli.__doc__, ["rules", "--frob"], "rules") == "unknown option --frob"
    assert usage.refused(cli.__doc__, ["-adV"], None).startswith("unknown option -adV")
    assert usage.refused(cli.__doc__, ["-ad", "flowdst"], None).endswith("unexpected arguments")
