"""The live daemon: the loop that polls pfctl, sends, sleeps, and answers signals.

Everything it decides is decided by the pipeline; this module only moves text, bytes
and time in and out.  One thread, one selector: the loop sleeps until the next poll
or the exporter's next deadline, whichever is first, and signals wake it through
set_wakeup_fd so that their handlers run here, between two steps, never inside one.

Order of start-up: signal handlers first (a SIGHUP or SIGTERM in the first seconds is
queued, not fatal), then what can fail (the sockets bound, the --record folder
checked) in the constructor, before the caller detaches; pfctl is run only by run().
A SIGTERM while pfctl runs stops it (pfctl.run_command polls `interrupted`), so the
daemon flushes and exits within a second even with a hung pfctl.  A SIGHUP builds the
whole new configuration (config, pfctl side, sockets) before it replaces the running
one; if any of it fails, one error line and the old one runs on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable, Iterable

from pflowbsd import control, stats
from pflowbsd.config import Config, endpoint_text, render
from pflowbsd.pf import snapshot as pfsnapshot
from pflowbsd.pf import timeouts
from pflowbsd.pipeline import Output, PfSide, Pipeline
from pflowbsd.shell.control import ControlServer, run_dir
from pflowbsd.shell.pacer import Pacer
from pflowbsd.shell.pcapout import PcapWriter
from pflowbsd.shell.pfctl import Pfctl, PfctlError, Stream, boottime, carp_status, ifconfig_all, pfctl_for
from pflowbsd.shell.ratelog import RateLog, report_poll
from pflowbsd.shell.record import Recorder
from pflowbsd.shell.sender import Sender, Tap
from pflowbsd.shell.statewriter import StateKeeper, state_path
from pflowbsd.shell.statsfile import STATE_DIR, Meter, StatsFile, stats_path
from pflowbsd.tracker import Update

log = logging.getLogger("pflowbsd")
# `pkill -INFO pflowbsd` (BSD ^T) or -USR1: the statistics, to the log.
STATS_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINFO", "SIGUSR1") if hasattr(signal, n))
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Daemon:
    def __init__(self, cfg: Config, record: str | None = None,
                 reload: Callable[[], Config] | None = None, capture: str | None = None,
                 control_group: int | None = None) -> None:
        self.pending: list[int] = []
        self._catch_signals()
        self.cfg, self.reload = cfg, reload  # reload() -> a fresh Config (SIGHUP)
        self.pf = self._pfctl(cfg)
        self.sender = Sender(cfg.flowdst, cfg.flowsrc)
        self.pacer = Pacer(cfg.max_rate)  # max-rate; idle while it is 0
        try:
            self.recorder = Recorder(record, cfg.record_max) if record else None
            path = control.socket_path(cfg, run_dir())  # made before any privilege drop
            self.control = ControlServer(path, control_group) if path else None
        except OSError:
            self.sender.close()
            raise
        self.side = PfSide(cfg)
        self.meter = Meter(cfg.instance, time.time())
        self.stats_file: StatsFile | None = None
        self.taps: list[Tap] = [self.meter] + ([PcapWriter(capture)] if capture else [])
        self._statistics(cfg, first=True)
        path = state_path(cfg)  # read by run(), written before each send
        log.info("state file: %s", path or f"none (state-file none, or no {STATE_DIR})")
        self.state = StateKeeper(path) if path else None
        self.pf_errors: dict[str, str] = {}  # pfctl call -> the failure last logged
        self.say = RateLog()
        self.carp_status: str | None = None
        self.pipe: Pipeline  # made by run()

    def _statistics(self, cfg: Config, first: bool = False) -> None:
        """The meter and the -w capture see every send (the sender's taps); the stats file."""
        self.meter.collectors(cfg.flowdst)
        self.sender.taps = self.taps
        path = stats_path(cfg)
        path = os.path.abspath(path) if path else None
        if first or path != (self.stats_file and self.stats_file.path):
            log.info("statistics file: %s", path or f"none (stats-file none, or no {STATE_DIR})")
        self.stats_file = StatsFile(path) if path else None

    def _polled(self, result: str, started: float, size: int | None) -> None:
        """After each poll: counted, and the stats file written."""
        self.meter.polled(result, time.monotonic() - started, size, time.time())
        if self.stats_file:
            self.stats_file.write(self.meter.statistics(self.pipe))

    def _catch_signals(self) -> None:
        self.rsock, wsock = socket.socketpair()
        self.rsock.setblocking(False)
        wsock.setblocking(False)
        self._wsock = wsock
        signal.set_wakeup_fd(wsock.fileno())
        for sig in (*STOP_SIGNALS, signal.SIGHUP, *STATS_SIGNALS):
            signal.signal(sig, lambda n, f: self.pending.append(n))

    def stopping(self) -> bool:
        return any(s in STOP_SIGNALS for s in self.pending)

    def _pfctl(self, cfg: Config) -> Pfctl:
        return pfctl_for(cfg, interrupted=self.stopping)

    def _pf(self, what: str, pf: Pfctl | None = None) -> str | None:
        """One pfctl call.  Its failure is logged when that call was not failing so
        already (each call on its own: one failing call cannot hide another), unless
        another call fails alike right now (a pfctl that fails as a whole: one line);
        "works again" once every call works."""
        try:
            text: str = getattr(pf or self.pf, what)()
        except PfctlError as e:
            if e.reason != "interrupted":
                self._failed(what, e)
            return None
        self._worked(what)
        return text

    def _worked(self, what: str) -> None:
        if self.pf_errors.pop(what, None) is not None and not self.pf_errors:
            log.warning("pfctl works again")

    def _failed(self, what: str, e: PfctlError) -> None:
        if self.pf_errors.get(what) != e.reason:
            others = {r for w, r in self.pf_errors.items() if w != what}
            if e.reason not in others:
                log.error("%s", e)
            self.pf_errors[what] = e.reason

    def send(self, out: Output) -> None:
        if self.state:  # first: a kill in between loses these datagrams, never repeats them
            self.state.save(self.pipe)
        if self.cfg.max_rate or self.pacer.held:
            self.pacer.set_rate(self.cfg.max_rate)
            self.sender.send(self.pacer.offer(out.datagrams, time.monotonic()))
        else:
            self.sender.send(out.datagrams)

    def interfaces(self, wall: float) -> str | None:
        """`ifconfig -a`, once a poll, for if_index; recorded when it changes."""
        try:
            text = ifconfig_all()
        except PfctlError as e:
            self.say("ifconfig", logging.INFO, "ifconfig -a: %s; if_index stays 0", e.reason)
            return None
        if self.recorder:
            with contextlib.suppress(OSError):
                self.recorder.interfaces(text, wall)
        return text

    def load_side(self, info: str | None = None) -> None:
        """Timeouts, rules and `-si -v` (unless the caller just read it) from pfctl."""
        t, r = self._pf("timeouts"), self._pf("rules")
        i = info if info is not None else self._pf("info")
        self.side.load(t, r, i)
        self.pipe.side_loaded()
        if self.recorder:
            self.recorder.side({"timeouts": t, "rules": r, "info": i})

    def reconfigure(self) -> None:
        """As `ifconfig pflowN flowdst ...` does: flush what is pending first, and send it
        to the new destination.  All of the new configuration is made first."""
        if self.reload is None:
            return
        try:
            cfg = self.reload()
            pf = self._pfctl(cfg)
            side = PfSide(cfg)
            sender = None
            if (cfg.flowdst, cfg.flowsrc) != (self.cfg.flowdst, self.cfg.flowsrc):
                sender = Sender(cfg.flowdst, cfg.flowsrc, self.sender.stats)
        except (ValueError, OSError) as e:  # ConfigError, a flowsrc that cannot be bound
            log.error("configuration not reloaded, the running one goes on: %s", e)
            self.load_side()  # pf's timeouts and rules are read again all the same
            return
        side.load(self._pf("timeouts", pf), self._pf("rules", pf), self._pf("info", pf))
        self.cfg, self.pf, self.side = cfg, pf, side
        if sender is not None:
            self.sender.close()
            self.sender = sender
        self._statistics(cfg)
        self.send(self.pipe.reconfigure(cfg, side, time.time()))
        if self.recorder:
            self.recorder.max_bytes = cfg.record_max

    def poll(self) -> None:
        started = time.monotonic()
        info = self._pf("info")
        entries = None
        if info is not None:
            parsed = timeouts.parse_info(info)
            checksum, known, entries = parsed.checksum, self.side.info.checksum, parsed.states
            if checksum and known and checksum != known:
                log.info("ruleset checksum changed: re-reading the rules")
                self.load_side(info)
        self.pf.expect(entries)
        wall = time.time()  # pfctl reads pf's clock as it starts, not as it ends
        stream = self.pf.states_stream() if entries is not None and not self.recorder else None
        if stream is not None:
            return self._poll_stream(stream, wall, entries, started)
        text = self._pf("states")
        if text is not None and not text.strip() and info is None:
            self.say("empty", logging.WARNING, "pfctl -ss -vv printed nothing and -si -v "
                     "failed: an empty table is not taken for a flush")
            text = None
        if text is None:
            self.pipe.failed_poll()
            if not self.stopping():  # a poll cut short by SIGTERM did not fail
                self._polled("failed", started, None)
            return
        if self.recorder:
            try:
                self.recorder.snapshot(text, wall, info)
            except OSError as e:
                self.say("record", logging.ERROR, "--record: %s", e.strerror or e)
        up, out = self._track(text, wall, entries)
        report_poll(self.say, up.errors, self.pipe.partial_reason)
        self.send(out)
        self._polled("partial" if up.partial else "ok", started, len(text))

    def _poll_stream(self, stream: Stream, wall: float, entries: int | None,
                     started: float) -> None:
        """The poll, reading -ss -vv as pfctl prints it (parsed a chunk at a time: no
        whole text in memory).  A run that fails part way is a partial snapshot:
        whatever it showed is tracked, nothing expires; its error is logged as a
        failing call's is."""
        up, out = self._track(pfsnapshot.record_chunks(stream), wall, entries, stream.ok,
                              " (streamed)")
        if stream.error is None:
            self._worked("states")
        elif stream.error.reason != "interrupted":
            self._failed("states", stream.error)
        report_poll(self.say, up.errors, None if stream.error else self.pipe.partial_reason)
        self.send(out)
        if stream.error is None:
            self._polled("partial" if up.partial else "ok", started, stream.size)
        elif not self.stopping():  # a poll cut short by SIGTERM did not fail
            self._polled("failed", started, None)

    def _track(self, snapshot: str | Iterable[str], wall: float, entries: int | None,
               complete: bool | Callable[[], bool] = True, how: str = "") -> tuple[Update, Output]:
        """The pipeline's poll of the table (its whole text, or its chunks as they come),
        with the interfaces of the moment, and its debug line."""
        self.pipe.interfaces_read(self.interfaces(wall))
        cpu = time.process_time()
        up, out = self.pipe.poll(snapshot, wall, complete, export=self.master(), entries=entries)
        log.debug("poll: %d states, %d new, %d changed, %d gone, %d to export, %.0f ms CPU%s",
                  up.states, up.new, up.changed, up.gone, len(up.expired),
                  (time.process_time() - cpu) * 1000, how)
        return up, out

    def exit_line(self, st: stats.Statistics) -> str:
        """What the exporter made, then what each collector was sent: with several
        flowdsts the sender's sum would hide that each got the same datagrams."""
        made = self.pipe.exporter.stats
        sent = "; ".join(f"{dst}: {n} datagrams, {st.labelled('send_errors').get(dst, 0)} "
                         "send errors" for dst, n in sorted(st.labelled("datagrams").items()))
        return (f"exporter: {made['flows']} flows in {made['datagrams']} datagrams "
                f"({made['templates']} templates); sent to {sent or 'no flowdst'}; "
                + stats.line(st))

    @property
    def handlers(self) -> dict[str, control.Handler]:
        """`pflowbsd ctl COMMAND`: what each command does here (pflowbsd/control.py)."""
        return {"statistics": lambda r: stats.netstat(self.meter.statistics(self.pipe)),
                "config": lambda r: render(self.cfg),
                "states": lambda r: control.states_text(self.pipe.tracker),
                "expire-all": self._expire_all, "send-template": self._send_template,
                "debug": self._debug, "reload": lambda r: self._signal(signal.SIGHUP),
                "shutdown": lambda r: self._signal(signal.SIGTERM)}

    def _expire_all(self, req: control.Request) -> str:
        n, out = self.pipe.expire_all(time.time())
        self.send(out)
        log.info("control: expire-all: %d states exported in %d datagrams", n, out.count())
        return f"{n} states exported, {out.count()} datagrams sent\n"

    def _send_template(self, req: control.Request) -> str:
        if self.cfg.pflowproto != 10:
            raise control.ControlError("pflowproto 5 has no templates (pflowproto 10 has)")
        out = self.pipe.send_template(time.time())
        self.send(out)
        return f"templates sent: {out.count()} datagrams\n"

    def _debug(self, req: control.Request) -> str:
        log.setLevel(logging.DEBUG if req.arg == "on" else logging.INFO)
        log.info("control: debug %s", req.arg)
        return f"debug {req.arg}\n"

    def _signal(self, sig: int) -> str:
        self.pending.append(sig)  # done by the loop, as the signal would be
        return "reloading\n" if sig == signal.SIGHUP else "shutting down\n"

    def master(self) -> bool:
        """With `carp carpN`: export only while MASTER (unknown counts as master, so a
        broken ifconfig loses nothing; it is logged)."""
        if not self.cfg.carp:
            return True
        status = carp_status(self.cfg.carp)
        if status != self.carp_status:
            verb = "not exporting" if status in ("BACKUP", "INIT") else "exporting"
            log.info("%s is %s: %s", self.cfg.carp, status, verb)
            self.carp_status = status
        return status not in ("BACKUP", "INIT")

    def run(self) -> int:
        boot = boottime()
        if self.recorder:
            self.recorder.start(boot)
        self.pipe = Pipeline(self.cfg, self.side, boot)
        if self.state:
            self.state.load(self.pipe)
        sel = selectors.DefaultSelector()
        sel.register(self.rsock, selectors.EVENT_READ)
        if self.control:
            self.control.register(sel)
        log.info("started: flowdst %s, pflowproto %d, poll every %g s",
                 ", ".join(endpoint_text(a, p) for a, p in self.cfg.flowdst),
                 self.cfg.pflowproto, self.cfg.interval)
        if not self.stopping():
            self.load_side()
        self.send(self.pipe.start(time.time()))
        next_poll = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_poll and not self.pending:
                self.poll()
                next_poll += self.cfg.interval * max(1, int((now - next_poll)
                                                            // self.cfg.interval) + 1)
            out = self.pipe.due(time.time())
            self.send(out)
            wait = next_poll - time.monotonic()
            if out.next_deadline is not None:
                wait = min(wait, out.next_deadline - time.time())
            if (paced := self.pacer.next_due()) is not None:  # max-rate: a backlog drains
                wait = min(wait, paced - time.monotonic())
            for key, _ in [] if self.pending else sel.select(max(0.0, wait)):
                if key.fileobj is self.rsock:
                    try:
                        self.rsock.recv(64)
                    except BlockingIOError:
                        pass
                elif self.control:
                    self.control.ready(sel, key.fileobj, self.handlers)
            while self.pending:
                sig = self.pending.pop(0)
                if sig in STATS_SIGNALS:
                    log.info("statistics: %s", stats.line(self.meter.statistics(self.pipe)))
                elif sig == signal.SIGHUP:
                    log.info("SIGHUP: re-reading the configuration, timeouts and rules")
                    self.reconfigure()
                else:
                    self.send(self.pipe.flush(time.time()))
                    self.pacer.drain(self.sender.send)
                    st = self.meter.statistics(self.pipe)
                    log.info("exiting on signal %d: %s", sig, self.exit_line(st))
                    if self.stats_file:
                        self.stats_file.write(st)
                    self.sender.close()
                    if self.control:
                        self.control.close()
                    return 0
