"""pflowbsd.stats: counters in, the Prometheus text, netstat's layout, the log line and
JSON out, and the Prometheus text read back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from pflowbsd import stats
from pflowbsd.stats import StatsError, collect, line, netstat, parse_prometheus, prometheus

PIPELINE = {"polls": 10, "partial": 0, "parse_errors": 2, "new": 70, "changed": 5, "expired": 60,
            "exported": 59, "restarted": 0, "skipped_polls": 1, "not_master": 0, "flows": 118,
            "datagrams": 12, "templates": 0, "skipped_v6": 1, "split_records": 0, "split_clamped": 0}
ONE = {"127.0.0.1:9995": {"datagrams": 12, "bytes": 14000, "send_errors": 3}}
TWO = {**ONE, "[::1]:9996": {"datagrams": 15, "bytes": 17000, "send_errors": 0}}
GAUGES = {"poll_seconds": 0.0125, "pfctl_bytes": 4567, "last_poll": 1764770000.25,
          "started": 1764769000.0}


def statistics(per_collector=ONE, gauges=GAUGES, polls=None):
    return collect("pflow0", PIPELINE, per_collector, polls or {"ok": 9, "failed": 1}, 40, gauges)


def samples(text):
    return [ln for ln in text.splitlines() if not ln.startswith("#")]


def test_prometheus_names_labels_and_values():
    text = prometheus(statistics(TWO))
    got = samples(text)
    assert 'pflowbsd_flows_total{interface="pflow0"} 118' in got
    assert 'pflowbsd_packets_total{interface="pflow0",flowdst="127.0.0.1:9995"} 12' in got
    assert 'pflowbsd_packets_total{interface="pflow0",flowdst="[::1]:9996"} 15' in got
    assert 'pflowbsd_send_errors_total{interface="pflow0",flowdst="127.0.0.1:9995"} 3' in got
    assert [s for s in got if s.startswith("pflowbsd_polls_total")] == [
        'pflowbsd_polls_total{interface="pflow0",result="failed"} 1',
        'pflowbsd_polls_total{interface="pflow0",result="ok"} 9',
        'pflowbsd_polls_total{interface="pflow0",result="partial"} 0']
    assert 'pflowbsd_states{interface="pflow0"} 40' in got
    assert 'pflowbsd_skipped_lines_total{interface="pflow0"} 2' in got
    assert 'pflowbsd_poll_duration_seconds{interface="pflow0"} 0.0125' in got
    assert 'pflowbsd_pfctl_output_bytes{interface="pflow0"} 4567' in got
    # every metric once, HELP then TYPE then its samples; counters end in _total
    for m in stats.METRICS:
        assert text.count(f"# HELP {m.name} ") == 1 and text.count(f"# TYPE {m.name} {m.kind}\n") == 1
        assert m.name.endswith("_total") == (m.kind == "counter"), m.name


def test_unknown_gauges_are_left_out_not_written_as_zero():
    text = prometheus(statistics(gauges={"started": 1.0, "poll_seconds": None, "pfctl_bytes": None}))
    assert "pflowbsd_poll_duration_seconds" not in text and "pflowbsd_pfctl_output_bytes" not in text
    assert "pflowbsd_start_time_seconds" in text


@pytest.mark.parametrize("per_collector", [ONE, TWO, {}], ids=["one", "two", "none"])
def test_the_prometheus_text_reads_back_to_the_same_statistics(per_collector):
    st = statistics(per_collector)
    assert parse_prometheus(prometheus(st)) == st


def test_label_values_are_escaped_and_read_back():
    st = statistics({'odd"\\\nname': {"datagrams": 1, "bytes": 2, "send_errors": 0}})
    text = prometheus(st)
    assert 'flowdst="odd\\"\\\\\\nname"' in text
    assert parse_prometheus(text) == st


def test_netstat_layout_is_pflow_stats_then_ours():
    text = netstat(statistics())
    lines = text.splitlines()
    # usr.bin/netstat/inet.c pflow_stats: "%s:\n", "\t%llu flow%s sent\n",
    # "\t%llu packet%s sent\n", "\t\t%llu send error\n"
    assert lines[:4] == ["pflow0:", "\t118 flows sent", "\t12 packets sent", "\t\t3 send error"]
    assert "\t10 polls: 9 ok, 1 failed, 0 partial" in lines
    assert "\t40 states tracked" in lines and "\t2 unreadable pfctl lines skipped" in lines
    assert "\tlast poll took 0.013 seconds, read 4567 bytes from pfctl" in lines
    assert not any("sent to" in ln for ln in lines)  # one collector: the totals are its own
    assert all(ln.startswith("\t") for ln in lines[1:])


def test_netstat_with_several_collectors_adds_one_block_each_and_plurals():
    st = statistics(TWO)
    st.values["flows"] = 1
    lines = netstat(st).splitlines()
    assert lines[:4] == ["pflow0:", "\t1 flow sent", "\t27 packets sent", "\t\t3 send error"]
    at = lines.index("\t12 packets sent to 127.0.0.1:9995 (14000 bytes)")
    assert lines[at + 1] == "\t\t3 send error"
    at = lines.index("\t15 packets sent to [::1]:9996 (17000 bytes)")
    assert lines[at + 1] == "\t\t0 send error"


def test_log_line_is_one_line_of_key_value_pairs():
    text = line(statistics(TWO))
    assert "\n" not in text
    assert text.startswith("polls=failed:1,ok:9,partial:0 ")
    assert "expired=60" in text.split() and "flows=118" in text.split()
    assert "send_errors=127.0.0.1:9995:3,[::1]:9996:0" in text.split()
    assert "poll_seconds=0.013" in text.split()


def test_json_is_the_record():
    got = json.loads(stats.to_json(statistics(TWO)))
    assert got["interface"] == "pflow0" and got["flows"] == 118
    assert got["datagrams"] == {"127.0.0.1:9995": 12, "[::1]:9996": 15}
    assert got["polls"] == {"ok": 9, "failed": 1, "partial": 0}


def test_other_metrics_and_timestamps_are_ignored():
    text = ("# a comment\nnode_load1 0.5\n"
            'pflowbsd_flows_total{interface="pflow1"} 7 1764770000000\n'
            'pflowbsd_states{interface="pflow1"} NaN\n')
    st = parse_prometheus(text)
    assert st.interface == "pflow1" and st.values == {"flows": 7}


@pytest.mark.parametrize("text", ["", "# only comments\n", "node_load1 0.5\n",
                                  "pflowbsd_flows_total{interface=pflow0} 1\n",
                                  "pflowbsd_flows_total one\n", "\x00\x01 garbage"])
def test_what_is_not_a_statistics_file_is_one_error(text):
    with pytest.raises(StatsError):
        parse_prometheus(text)


@settings(max_examples=200, deadline=1000)
@given(hs.text(alphabet=hs.sampled_from('pflowbsd_total{}="\\,: \t\n#0123456789.eE+-NaInf'),
               max_size=200) | hs.text(max_size=200))
def test_fuzzed_text_gives_statistics_or_stats_error(text):
    try:
        st = parse_prometheus(text)
    except StatsError:
        return
    netstat(st), line(st), stats.to_json(st), prometheus(st)
