"""The pipeline: snapshots in, datagrams per collector out, time a parameter.

It joins the pure stages as pflow(4) joins them in the kernel: pf's side facts
(timeouts, rules, `-si -v`) decide which states are selected and when their last packet
was (PfSide); the tracker diffs each snapshot and hands out the states that are gone;
the exporter makes their two flows (flows.flow_pair) and buffers them into datagrams on
pflow's timers.  Every call returns an Output: the datagrams each flowdst must be sent
now, and the next deadline, so the shell only sends, sleeps and calls again.  No
socket, no clock, no pfctl here: the caller passes wall-clock seconds in, and the
uptime frame comes from the boot time it was given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pflowbsd.config import Config, Endpoint
from pflowbsd.export.exporter import Exporter
from pflowbsd.flows import Clock
from pflowbsd.pf import snapshot as pfsnapshot
from pflowbsd.pf import timeouts
from pflowbsd.pf.ifaces import IfconfigError, parse_ifconfig
from pflowbsd.pf.record import State
from pflowbsd.rules.model import Rule, Ruleset, RuleSyntaxError, parse_listing
from pflowbsd.rules.select import Selector
from pflowbsd.tracker import Tracker, Update

log = logging.getLogger("pflowbsd")

# The configuration words that make a new Exporter (and so start its counters over).
EXPORTER_WORDS = ("pflowproto", "mtu", "domain", "tmpl_interval", "nat", "ipfix_layout",
                  "sampling")


def exporter_for(cfg: Config) -> Exporter:
    return Exporter(proto=cfg.pflowproto, mtu=cfg.mtu, domain=cfg.domain,
                    tmpl_interval=cfg.tmpl_interval, nat=cfg.nat, layout=cfg.ipfix_layout,
                    sampling=cfg.sampling)


class PfSide:
    """What pf tells besides the states: timeouts, the ruleset, hostid and checksum.
    Loaded at start, on SIGHUP, and when `pfctl -si -v` shows a new ruleset Checksum."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.selector = Selector.from_config(cfg.select, cfg.export_all)
        self.timeouts = dict(timeouts.DEFAULTS)
        self.ruleset: Ruleset | None = None
        self.info = timeouts.Info(None, None, None)
        # UDP endpoints of our own collectors: states to them are our own export traffic
        self.collectors = frozenset(cfg.flowdst)
        self.own_traffic = 0  # states not selected because they carry our datagrams
        self.not_ours = 0  # states not selected under `sync own` (another creatorid)

    def load(self, timeouts_text: str | None, rules_text: str | None,
             info_text: str | None) -> None:
        """Each text that is not None replaces what was known (None: pfctl failed)."""
        if timeouts_text is not None:
            self.timeouts = timeouts.parse_timeouts(timeouts_text)
        if info_text is not None:
            self.info = timeouts.parse_info(info_text)
        if rules_text is not None:
            try:
                self.ruleset = parse_listing(rules_text)
                for w in self.ruleset.warnings[:5]:
                    log.info("rules: %s", w)
            except (RuleSyntaxError, ValueError) as e:  # a listing line we cannot read
                log.warning("rules: %s; selecting by the pflow flag only", e)
                self.ruleset = None

    def rule_of(self, st: State) -> Rule | None:
        rs = self.ruleset
        return rs.lookup(st.anchor, st.rule) if rs is not None and st.rule is not None else None

    def select(self, st: State) -> bool:
        if not self.selector.decide(st, self.rule_of(st))[0]:
            return False
        if self.cfg.sync == "own" and self.info.hostid and st.creatorid \
                and st.creatorid.lower() != self.info.hostid.lower():
            self.not_ours += 1  # pfsync brought it from the peer, which exports it
            return False
        if not self.cfg.export_all and st.proto == 17 and self.collectors and any(
                (h.addr, h.port) in self.collectors
                for h in (st.wire_src, st.wire_dst, st.stack_src, st.stack_dst)):
            self.own_traffic += 1  # counting our own datagrams would feed the count
            return False
        return True

    def policy(self) -> timeouts.Policy:
        return timeouts.Policy(self.timeouts, self.rule_of)


@dataclass(slots=True)
class Output:
    """What to send now, per collector (in order), and when to call again."""

    datagrams: dict[Endpoint, list[bytes]] = field(default_factory=dict)
    next_deadline: float | None = None  # wall-clock seconds; None: nothing is held

    def count(self) -> int:
        return sum(len(d) for d in self.datagrams.values())


class Pipeline:
    """tracker -> flows -> exporter, for the collectors of one Config."""

    def __init__(self, cfg: Config, side: PfSide, boot: int) -> None:
        self.cfg, self.side, self.boot = cfg, side, boot
        self.tracker = Tracker(side.policy(), side.select, cfg.active_timeout)
        self.exporter = exporter_for(cfg)
        self.skipped_polls = 0
        self.not_master = 0  # expired states a CARP backup tracked but did not export
        self.partial_reason: str | None = None  # why the last poll was partial

    def clock(self, wall: float) -> Clock:
        return Clock(wall, wall - self.boot)

    def _out(self, datagrams: list[bytes]) -> Output:
        """Every datagram goes to every flowdst, in the order the exporter made them."""
        d = self.exporter.next_deadline()
        return Output({dst: datagrams for dst in self.cfg.flowdst},
                      None if d is None else self.boot + d)

    def start(self, wall: float) -> Output:
        """The interface comes up: IPFIX sends its templates at once."""
        return self._out(self.exporter.start(self.clock(wall)))

    def due(self, wall: float) -> Output:
        """What fell due up to `wall`, each made at its own deadline (exact in replay)."""
        out: list[bytes] = []
        while (d := self.exporter.next_deadline()) is not None and d <= wall - self.boot:
            out += self.exporter.due(Clock(self.boot + d, d))
        return self._out(out)

    def interfaces_read(self, text: str | None) -> None:
        """The host's `ifconfig -a` (None: not read): the if_index of each name, for the
        states first seen or changed from now on.  A text that is not ifconfig output
        keeps the table known."""
        if text is None:
            return
        try:
            table = parse_ifconfig(text)
        except IfconfigError as e:
            log.info("interfaces: %s; if_index left as it was", e)
            return
        self.tracker.ifaces = {i.name: i.index for i in table if i.index}

    def side_loaded(self) -> None:
        """PfSide was re-read: the tracker's timeouts follow it."""
        self.tracker.policy = self.side.policy()

    def failed_poll(self) -> None:
        """pfctl -ss gave no text this time: nothing can expire."""
        self.skipped_polls += 1

    def poll(self, snapshot: str | Iterable[str], wall: float,
             complete: bool | Callable[[], bool] = True,
             export: bool = True, entries: int | None = None) -> tuple[Update, Output]:
        """One `pfctl -ss -vv` snapshot taken at `wall`: its text, or its chunks as they
        arrive (pf.snapshot.record_chunks; `complete` then a function, asked at the end:
        did the run end well).  export=False (a CARP backup) tracks but sends nothing.
        entries: `current entries` of the same poll's `pfctl -si -v` (None: unknown); a
        table far short of it expires nothing (pf.snapshot.partial_reason, kept in
        partial_reason for the shell to log)."""
        now = self.clock(wall)

        def whole(so_far: Update) -> bool:
            """Asked by the tracker once the text is in, before anything expires."""
            ok = complete() if callable(complete) else complete
            self.partial_reason = (None if ok else "pfctl's output was cut short") \
                or pfsnapshot.partial_reason_counts(so_far.blank, so_far.states, entries)
            return self.partial_reason is None
        up = self.tracker.update(snapshot, now.up, whole, states_hint=entries)
        if up.partial:
            self.skipped_polls += 1
            self.partial_reason = self.partial_reason or "unreadable or cut records"
        out: list[bytes] = []
        if not export:
            self.not_master += len(up.expired)
        else:
            # active-timeout spans of live states first
            out = self.exporter.export_entries(up.active, now)
            out += self.exporter.export_entries(up.expired, now)
        return up, self._out(out)

    def flush(self, wall: float) -> Output:
        """pflow_flush: everything held leaves now."""
        return self._out(self.exporter.flush(self.clock(wall)))

    def reconfigure(self, cfg: Config, side: PfSide, wall: float) -> Output:
        """As `ifconfig pflowN flowdst ...` does: what is held is flushed and sent to the
        new destinations; the exporter is renewed only if its own words changed (and
        then starts again: IPFIX templates at once)."""
        old, self.cfg, self.side = self.cfg, cfg, side
        self.tracker.select = side.select
        self.tracker.policy = side.policy()
        if cfg.active_timeout != old.active_timeout:
            self.tracker.set_active_timeout(cfg.active_timeout)
        before = self.exporter
        pending = self.exporter.flush(self.clock(wall))
        flushed = bool(pending)
        if any(getattr(cfg, w) != getattr(old, w) for w in EXPORTER_WORDS):
            self.exporter = exporter_for(cfg)
            self.exporter.stats = before.stats  # the statistics go on counting
            pending += self.exporter.start(self.clock(wall))
        elif (cfg.flowdst, cfg.flowsrc) != (old.flowdst, old.flowsrc):
            # pflowioctl(SIOCSETPFLOW): a new destination gets the templates at once,
            # ahead of the flushed data, which it could not decode without them
            pending = self.exporter.start(self.clock(wall)) + pending
            flushed = False
        out = self._out(pending)
        # A renewed exporter's templates come after the old one's flushed data: a
        # collector new to us gets the old templates ahead of that data.
        fresh = [d for d in cfg.flowdst if d not in old.flowdst]
        if fresh and flushed:
            lead = before.templates(self.clock(wall))
            for d in fresh:
                out.datagrams[d] = lead + out.datagrams[d]
        return out

    def expire_all(self, wall: float) -> tuple[int, Output]:
        """`pflowbsd ctl expire-all`: every selected state exports what it has not yet
        exported (all of it, or since its last active-timeout span), First/Last up to
        `wall`, and everything held leaves at once.  The states stay tracked: what was
        exported is kept in the tracker's side table, so at removal only the rest goes.
        The number of states exported, and the datagrams."""
        now = self.clock(wall)
        spans = self.tracker.expire_all(int(now.up))
        out = self.exporter.export_entries(spans, now)
        n = len(spans)
        return n, self._out(out + self.exporter.flush(now))

    def send_template(self, wall: float) -> Output:
        """`pflowbsd ctl send-template`: the templates now (IPFIX; v5 has none), their
        timer started again from now, as pflow_sendout_ipfix_tmpl does."""
        return self._out(self.exporter.start(self.clock(wall)))

    def stats(self) -> dict[str, int]:
        return {**self.tracker.stats, "skipped_polls": self.skipped_polls,
                "not_master": self.not_master, "own_traffic": self.side.own_traffic,
                "not_ours": self.side.not_ours, **self.exporter.stats}
