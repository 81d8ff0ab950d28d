"""Statistics: the counters of one pflowbsd instance in, text out.

Strategy.  Pure: collect() takes the counters the pipeline, the sender and the shell keep
(plain dicts and numbers) and returns a Statistics, a plain JSON-able record; the
renderers turn it into the Prometheus text format (for node_exporter's textfile
collector), `netstat -s -p pflow`'s layout (pflow_stats in OpenBSD usr.bin/netstat/inet.c),
one log line, or JSON; parse_prometheus() reads the Prometheus text back, so
`pflowbsd stats` needs nothing but the file.  Every metric is one row of METRICS (its
key, Prometheus name, type, help and label), which every renderer and the parser follow.
Nothing here knows who computed the counters or where the text goes, so a process
without privileges can write the file, and a control socket can serve the same record.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import NamedTuple

Value = float | int
Labelled = dict[str, Value]  # label value (a flowdst ADDR:PORT, a poll result) -> value


class StatsError(ValueError):
    """The text is not a statistics file."""


class Metric(NamedTuple):
    key: str  # the name in Statistics.values, the JSON and the log line
    name: str  # Prometheus name
    kind: str  # counter | gauge
    help: str
    label: str | None = None  # the label its values are split by


POLL_RESULTS = ("ok", "failed", "partial")

METRICS = (
    Metric("flows", "pflowbsd_flows_total", "counter",
           "Flow records exported, split records included (pflowstats.pflow_flows)."),
    Metric("datagrams", "pflowbsd_packets_total", "counter",
           "Datagrams sent to the collector, templates included (pflowstats.pflow_packets).",
           "flowdst"),
    Metric("bytes", "pflowbsd_sent_bytes_total", "counter",
           "UDP payload bytes sent to the collector.", "flowdst"),
    Metric("send_errors", "pflowbsd_send_errors_total", "counter",
           "Datagrams the collector's socket did not send (pflowstats.pflow_oerrors).", "flowdst"),
    Metric("templates", "pflowbsd_templates_total", "counter", "IPFIX template sets made."),
    Metric("polls", "pflowbsd_polls_total", "counter",
           "Polls of the state table by result: ok, failed (pfctl gave no table), "
           "partial (an incomplete table: nothing expired).", "result"),
    Metric("states", "pflowbsd_states", "gauge", "States tracked after the last poll."),
    Metric("skipped_lines", "pflowbsd_skipped_lines_total", "counter",
           "Lines of pfctl -ss output that could not be read."),
    Metric("new", "pflowbsd_new_states_total", "counter", "States seen for the first time."),
    Metric("changed", "pflowbsd_changed_states_total", "counter",
           "Times a tracked state was seen again with new counters or timers."),
    Metric("expired", "pflowbsd_expired_states_total", "counter",
           "States gone from a complete table."),
    Metric("exported", "pflowbsd_exported_states_total", "counter",
           "Expired states that were selected and exported."),
    Metric("active_exports", "pflowbsd_active_exports_total", "counter",
           "Exports of a living state's gains by active-timeout."),
    Metric("not_master", "pflowbsd_not_master_states_total", "counter",
           "Expired states not exported because this firewall was not the CARP master."),
    Metric("skipped_v6", "pflowbsd_skipped_v6_states_total", "counter",
           "IPv6 states NetFlow v5 cannot carry."),
    Metric("split_records", "pflowbsd_split_records_total", "counter",
           "Extra v5 records made by splitting counters above 2^32."),
    Metric("poll_seconds", "pflowbsd_poll_duration_seconds", "gauge",
           "Wall-clock duration of the last poll, pfctl included."),
    Metric("pfctl_bytes", "pflowbsd_pfctl_output_bytes", "gauge",
           "Size of the last pfctl -ss -vv output."),
    Metric("last_poll", "pflowbsd_last_poll_timestamp_seconds", "gauge",
           "When the last poll ended, in seconds since the epoch."),
    Metric("started", "pflowbsd_start_time_seconds", "gauge",
           "When the daemon started, in seconds since the epoch."),
)
BY_KEY = {m.key: m for m in METRICS}
BY_NAME = {m.name: m for m in METRICS}
# The pipeline's (tracker's, exporter's) counter behind each key it provides.
PIPELINE_KEYS = {"flows": "flows", "templates": "templates", "skipped_lines": "parse_errors",
                 "new": "new", "changed": "changed", "expired": "expired",
                 "exported": "exported", "active_exports": "active_exports",
                 "not_master": "not_master", "skipped_v6": "skipped_v6",
                 "split_records": "split_records"}
PER_COLLECTOR = ("datagrams", "bytes", "send_errors")  # the Sender's, per flowdst


@dataclass
class Statistics:
    interface: str
    values: dict[str, Value | Labelled] = field(default_factory=dict)  # METRICS key -> value

    def total(self, key: str) -> Value:
        v = self.values.get(key, 0)
        return sum(v.values()) if isinstance(v, dict) else v

    def labelled(self, key: str) -> Labelled:
        v = self.values.get(key)
        return v if isinstance(v, dict) else {}


def collect(interface: str, pipeline: dict[str, int], per_collector: dict[str, dict[str, int]],
            polls: dict[str, int], states: int, gauges: dict[str, float | None]) -> Statistics:
    """The counters in: Pipeline.stats(), the sender's counts per flowdst (ADDR:PORT ->
    datagrams, bytes, send_errors), the polls by result, the tracked states, and the
    gauges (poll_seconds, pfctl_bytes, last_poll, started; None: not known yet)."""
    values: dict[str, Value | Labelled] = {}
    for key, source in PIPELINE_KEYS.items():
        values[key] = pipeline.get(source, 0)
    for key in PER_COLLECTOR:
        if per_collector:
            values[key] = {dst: counts.get(key, 0) for dst, counts in per_collector.items()}
    values["polls"] = {r: polls.get(r, 0) for r in POLL_RESULTS}
    values["states"] = states
    values.update({k: v for k, v in gauges.items() if k in BY_KEY and v is not None})
    return Statistics(interface, {m.key: values[m.key] for m in METRICS if m.key in values})


# -- Prometheus text format (exposition format 0.0.4) --

def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(v: Value) -> str:
    if isinstance(v, float) and not v.is_integer():
        return repr(v)
    return str(int(v))


def prometheus(st: Statistics) -> str:
    """HELP, TYPE and the samples of each metric known, each labelled with the interface."""
    out = []
    base = f'interface="{_escape(st.interface)}"'
    for m in METRICS:
        if m.key not in st.values:
            continue
        v = st.values[m.key]
        out += [f"# HELP {m.name} {m.help}", f"# TYPE {m.name} {m.kind}"]
        if isinstance(v, dict):
            out += [f'{m.name}{{{base},{m.label}="{_escape(lv)}"}} {_number(n)}'
                    for lv, n in sorted(v.items())]
        else:
            out.append(f"{m.name}{{{base}}} {_number(v)}")
    return "\n".join(out) + "\n"


_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*")
_LABEL = re.compile(r'\s*([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def _labels(text: str) -> dict[str, str]:
    labels, pos = {}, 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if not m:
            raise ValueError("bad labels")
        labels[m[1]] = re.sub(r"\\(.)", lambda e: "\n" if e[1] == "n" else e[1], m[2])
        pos = m.end()
    return labels


def parse_prometheus(text: str) -> Statistics:
    """The samples of METRICS in a Prometheus text file; other metrics are ignored."""
    st = Statistics("")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.fullmatch(line)
        try:
            if not m:
                raise ValueError("not a sample")
            labels, value = _labels(m[2] or ""), float(m[3])
        except ValueError:
            raise StatsError(f"line {n}: not a Prometheus sample: {line[:60]!r}") from None
        metric = BY_NAME.get(m[1])
        if metric is None or not math.isfinite(value):
            continue
        number: Value = int(value) if value.is_integer() and abs(value) < 2**63 else value
        st.interface = st.interface or labels.get("interface", "")
        if metric.label is None:
            st.values[metric.key] = number
        elif metric.label in labels:
            held = st.values.setdefault(metric.key, {})
            if isinstance(held, dict):
                held[labels[metric.label]] = number
    if not st.values:
        raise StatsError("no pflowbsd statistics in it")
    return st


# -- netstat -s -p pflow --

def _plural(n: Value) -> str:
    return "" if n == 1 else "s"


def netstat(st: Statistics) -> str:
    """As netstat's pflow_stats prints pflowstats (its p and p2 lines first), then the
    per-collector counts and what the kernel has no counter for."""
    t, lines = st.total, [f"{st.interface or 'pflow'}:"]
    flows, packets, errors = t("flows"), t("datagrams"), t("send_errors")
    lines += [f"\t{flows} flow{_plural(flows)} sent", f"\t{packets} packet{_plural(packets)} sent",
              f"\t\t{errors} send error"]
    sent, failed, nbytes = (st.labelled(k) for k in ("datagrams", "send_errors", "bytes"))
    if len(sent) > 1:
        for dst in sorted(sent):
            n = sent[dst]
            lines += [f"\t{n} packet{_plural(n)} sent to {dst} ({nbytes.get(dst, 0)} bytes)",
                      f"\t\t{failed.get(dst, 0)} send error"]
    polls = st.labelled("polls")
    n = sum(polls.values())
    lines.append(f"\t{n} poll{_plural(n)}: " + ", ".join(f"{polls.get(r, 0)} {r}" for r in POLL_RESULTS))
    for key, text in (("templates", "template set{} sent"), ("states", "state{} tracked"),
                      ("new", "new state{}"), ("expired", "state{} expired"),
                      ("exported", "state{} exported"),
                      ("active_exports", "active-timeout export{} of living states"),
                      ("not_master", "state{} not exported while not CARP master"),
                      ("skipped_v6", "IPv6 state{} skipped by NetFlow v5"),
                      ("split_records", "record{} added by splitting big counters"),
                      ("skipped_lines", "unreadable pfctl line{} skipped")):
        if key in st.values:
            n = t(key)
            lines.append(f"\t{n} {text.format(_plural(n))}")
    if "poll_seconds" in st.values:
        lines.append(f"\tlast poll took {t('poll_seconds'):.3f} seconds, "
                     f"read {t('pfctl_bytes')} bytes from pfctl")
    return "\n".join(lines) + "\n"


def line(st: Statistics) -> str:
    """One log line: key=value, a labelled value as label:value pairs."""
    def text(v: Value | Labelled) -> str:
        if isinstance(v, dict):
            return ",".join(f"{k}:{_number(n)}" for k, n in sorted(v.items()))
        return f"{v:.3f}" if isinstance(v, float) and not v.is_integer() else _number(v)
    order = ["polls", *(k for k in st.values if k not in ("polls", "last_poll", "started"))]
    return " ".join(f"{k}={text(st.values[k])}" for k in order if k in st.values)


def to_json(st: Statistics) -> str:
    return json.dumps({"interface": st.interface, **st.values}, sort_keys=False)
