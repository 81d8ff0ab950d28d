"""`pflowbsd demo`: the real pipeline on a simulated pf, with its own collector or yours.

Strategy.  simpf.SimPf plays pf; its `pfctl -ss -vv` text goes through the daemon's own
Pipeline (tracker, flows, exporter) and Sender exactly as a live poll would, and the datagrams go
over UDP to a collector socket on 127.0.0.1 in this process, decoded by
collector.decode.Decoder.  Given `flowdst ADDR:PORT` (the daemon's words, read by
config.apply_words; DEMO_WORDS says which make sense here) it sends there instead and
starts no collector: the report is then the exporter's side only.
Simulated time runs SPEED times faster than the wall clock and is the only clock the
pipeline sees (wall = simulated epoch, boot = the simulated pf's boot), so pflow's 30 s
hold and pf's timeouts play out within seconds.  At the end pf's states are flushed
(`pfctl -F states`, which pflow(4) exports too), so every state's flows arrive, and the
collector's count is checked against the exporter's.  No pf, no root, any OS.
"""

from __future__ import annotations

import selectors
import socket
import time
from typing import TextIO

from pflowbsd.collector.decode import Decoder, Malformed
from pflowbsd.config import WORDS, Config, ConfigError, apply_words, check, endpoint_text
from pflowbsd.pf.netdb import proto_name
from pflowbsd.pipeline import PfSide, Pipeline
from pflowbsd.shell.sender import Sender
from pflowbsd.sim.simpf import SimPf

SPEED = 10  # simulated seconds per wall second
POLL = 10  # simulated seconds between polls: the daemon's default -t 10
PLAIN_PROGRESS = 50  # simulated seconds between progress lines when out is no tty
DRAIN = 2.0  # wall seconds to wait at the end for datagrams still in flight

# The daemon's PARAM words that shape what the demo sends; the others (select, export,
# carp, pfctl, interval) speak of a real pf.
DEMO_WORDS = ("flowsrc", "flowdst", "pflowproto", "mtu", "domain", "tmpl-interval", "nat")

COLUMNS = (f"{'time':>6}  {'proto':<9} {'src':>30}    {'dst':<30} {'pkts':>7} "
           f"{'bytes':>9} {'duration':>9}  nat (IPFIX)")


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _row(flow: dict, start: int) -> str:
    at = flow["export_ms"] // 1000 - start
    line = (f"+{at // 60:02d}:{at % 60:02d}  {proto_name(flow['proto']):<9} "
            f"{endpoint_text(flow['src'], flow['src_port']):>30} -> "
            f"{endpoint_text(flow['dst'], flow['dst_port']):<30} {flow['packets']:>7} "
            f"{flow['bytes']:>9} "
            f"{_hms(max(0, flow['end_epoch'] - flow['start_epoch']) / 1000):>9}")
    if "nat_src" in flow:
        line += (f"  {endpoint_text(flow['nat_src'], flow.get('nat_src_port', 0))} -> "
                 f"{endpoint_text(flow.get('nat_dst'), flow.get('nat_dst_port', 0))}")
    return line


class _Collector:
    """A UDP socket on 127.0.0.1 and a Decoder; each flow becomes a table row."""

    def __init__(self, port: int, view: _View):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ)
        self.decoder, self.view = Decoder(), view
        self.v6 = 0

    def receive_until(self, deadline: float) -> None:
        while True:
            left = deadline - time.monotonic()
            if not self.sel.select(max(0.0, left)) and left <= 0:
                return
            self._drain()
            if left <= 0:
                return

    def _drain(self) -> None:
        while True:
            try:
                payload, peer = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            try:
                flows = self.decoder.feed(payload, peer[0])
            except Malformed as e:
                self.view.line(f"collector: malformed datagram: {e.reason}")
                continue
            for flow in flows:
                self.v6 += ":" in (flow["src"] or "")
                self.view.line(_row(flow, self.view.start))

    def close(self) -> None:
        self.sel.close()
        self.sock.close()


class _View:
    """Rows as they come, and a progress line: redrawn with \\r on a terminal, printed
    every PLAIN_PROGRESS simulated seconds otherwise."""

    def __init__(self, out: TextIO, start: int) -> None:
        self.out, self.start = out, start
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.status = ""
        self.last_plain = start

    def line(self, text: str) -> None:
        if self.tty and self.status:
            self.out.write("\r\x1b[K")
        self.out.write(text + "\n")
        if self.tty and self.status:
            self.out.write(self.status)
        self.out.flush()

    def progress(self, now: int, text: str, final: bool = False) -> None:
        self.status = f"[+{(now - self.start) // 60:02d}:{(now - self.start) % 60:02d}] {text}"
        if self.tty:
            self.out.write("\r\x1b[K" + self.status + ("\n" if final else ""))
            self.out.flush()
        elif final or now - self.last_plain >= PLAIN_PROGRESS:
            self.last_plain = now
            self.out.write(self.status + "\n")
            self.out.flush()


def _side(cfg: Config, sim: SimPf) -> PfSide:
    """The daemon's PfSide over the simulated `pfctl -st` and `-si -v`."""
    side = PfSide(cfg)
    side.load(sim.timeouts_text(), None, sim.info_text())
    return side


def _status(sim: SimPf, pipe: Pipeline, sender: Sender, col: _Collector | None) -> str:
    t, x = pipe.tracker.stats, pipe.exporter.stats
    return (f"pf: {len(sim.states)} states, {sim.counters['inserts']} created, "
            f"{len(sim.gone)} removed | pflowbsd: {t['polls']} polls, {t['exported']} "
            f"exported, {x['flows']} flows, {sender.stats['datagrams']} datagrams"
            + (f" | collector: {col.decoder.stats.flows} flows" if col else ""))


def demo_config(proto: int, params: list[str]) -> Config:
    """--proto, then the PARAM words (the last word wins, as on the daemon's command line);
    nat follows pflowproto 10 unless the words say otherwise.  Raises ConfigError."""
    i = 0
    while i < len(params):
        if params[i] not in DEMO_WORDS:
            raise ConfigError(f"{params[i]!r}: not a demo word (it takes "
                              f"{', '.join(DEMO_WORDS)})")
        i += 2 if WORDS[params[i]][0] else 1
    cfg = apply_words(Config(pflowproto=proto), params)
    if "nat" not in params:
        cfg.nat = cfg.pflowproto == 10
    if cfg.flowdst:
        check(cfg)
    return cfg


def cmd_demo(rate: float, duration: float, proto: int, port: int, seed: int,
             out: TextIO, params: list[str] | None = None) -> int:
    if proto not in (5, 10) or rate < 0 or duration <= 0:
        out.write("pflowbsd demo: want --proto 5 or 10, --rate >= 0, --duration > 0\n")
        return 2
    try:
        cfg = demo_config(proto, params or [])
    except ConfigError as e:
        out.write(f"pflowbsd demo: {e}\n")
        return 2
    if cfg.flowdst and port:
        out.write("pflowbsd demo: --port is the port of the demo's own collector; "
                  "with flowdst it starts none\n")
        return 2
    start = int(time.time())
    view = _View(out, start)
    col = None
    if not cfg.flowdst:
        try:
            col = _Collector(port, view)
        except OSError as e:
            out.write(f"pflowbsd demo: cannot listen on 127.0.0.1:{port}: "
                      f"{e.strerror or e}; give another --port, or flowdst ADDR:PORT to "
                      f"send to the collector listening there\n")
            return 1
        cfg.flowdst = [("127.0.0.1", col.port)]
    dsts = ", ".join(endpoint_text(*dst) for dst in cfg.flowdst)
    try:
        sender = Sender(cfg.flowdst, cfg.flowsrc)
    except OSError as e:
        out.write(f"pflowbsd demo: cannot send: {e.strerror or e}\n")
        if col:
            col.close()
        return 1
    sim = SimPf(seed=seed, rate=rate / SPEED, start=start)
    pipe = Pipeline(cfg, _side(cfg, sim), sim.boot)
    out.write(f"pflowbsd demo: simulated pf (seed {seed}, {rate:g} new states/s) -> "
              f"pflowbsd, pflowproto {cfg.pflowproto}{' with nat' if cfg.nat else ''} -> "
              f"{'collector' if col else 'flowdst'} {dsts}\n"
              f"time runs x{SPEED}: pf polled every {POLL} s of its time, pflow holds "
              f"records up to 30 s; states flushed at the end (pfctl -F states)\n\n"
              + (f"{COLUMNS}\n" if col else ""))
    out.flush()
    end = start + max(1, round(duration * SPEED))
    t0 = time.monotonic()
    sender.send(pipe.start(sim.now).datagrams)
    sender.send(pipe.poll(sim.states_text(), sim.now)[1].datagrams)
    while sim.now < end:
        sim.advance(sim.now + 1)
        sender.send(pipe.due(sim.now).datagrams)
        if (sim.now - start) % POLL == 0:
            sender.send(pipe.poll(sim.states_text(), sim.now)[1].datagrams)
        pace = t0 + (sim.now - start) / SPEED
        if col:
            col.receive_until(pace)
        else:
            time.sleep(max(0.0, pace - time.monotonic()))
        view.progress(sim.now, _status(sim, pipe, sender, col))
    left = sim.flush_states()
    sender.send(pipe.poll(sim.states_text(), sim.now)[1].datagrams)
    sender.send(pipe.flush(sim.now).datagrams)
    wait_until = time.monotonic() + DRAIN
    sent = sender.stats["datagrams"]
    while col and col.decoder.stats.datagrams < sent and time.monotonic() < wait_until:
        col.receive_until(time.monotonic() + 0.05)
    view.progress(sim.now, _status(sim, pipe, sender, col), final=True)
    if col:
        col.close()
    sender.close()
    return _report(out, sim, pipe, sender, col, left, dsts)


def _report(out: TextIO, sim: SimPf, pipe: Pipeline, sender: Sender, col: _Collector | None,
            left: int, dsts: str) -> int:
    """The counts of each stage.  Templates are counted in messages on both sides (one
    pflow_sendout_ipfix_tmpl message carries every template); the collector also says
    how many template records those held."""
    t, x, s = pipe.tracker.stats, pipe.exporter.stats, sender.stats
    no_pflow = sum(1 for sid in sim.gone if sid in sim.unflagged)
    lines = [
        "",
        f"simulated pf:  {sim.counters['inserts']} states created, {len(sim.gone)} removed "
        f"({left} by the final flush), {no_pflow} without `pflow` (not exported)",
        f"tracker:       {t['polls']} polls, {t['new']} states seen, {t['expired']} gone, "
        f"{t['exported']} exported, {t['parse_errors']} parse errors",
        f"exporter:      {x['flows']} flows in {x['datagrams']} datagrams "
        f"({x['templates']} template messages), {x['split_records']} split records"
        + (f", {x['skipped_v6']} IPv6 states skipped (v5 is IPv4 only; try pflowproto 10)"
           if pipe.cfg.pflowproto == 5 else f", {col.v6} IPv6 flows" if col else ""),
        f"sender:        {s['datagrams']} datagrams, {s['bytes']} bytes, "
        f"{s['send_errors']} send errors",
    ]
    if col is None:
        lines.append(f"sent:          {x['flows']} flows in {x['datagrams']} datagrams to "
                     f"{dsts}: compare with what the collector received")
        out.write("\n".join(lines) + "\n")
        out.flush()
        return 0 if not s["send_errors"] else 1
    d = col.decoder.stats
    lines.append(f"collector:     {d.summary()}")
    ok = (d.flows == x["flows"] and d.datagrams == s["datagrams"] and not d.malformed
          and d.template_messages == x["templates"])
    lines.append(f"check:         collector decoded {d.flows} flows in {d.datagrams} "
                 f"datagrams ({d.template_messages} template messages), exporter sent "
                 f"{x['flows']} in {s['datagrams']} ({x['templates']}): "
                 + ("OK" if ok else "MISMATCH"))
    out.write("\n".join(lines) + "\n")
    out.flush()
    return 0 if ok else 1
