"""The live daemon: the loop that polls pfctl, sends, sleeps, and answers signals.

Everything it decides is decided by the pipeline; this module only moves text, bytes
and time in and out.  One thread, one selector: the loop sleeps until the next poll
or the exporter's next deadline, whichever is first, and signals wake it through
set_wakeup_fd so that their handlers run here, between two steps, never inside one.
"""

from __future__ import annotations

import logging
import selectors
import signal
import socket
import time
from collections.abc import Callable

from pflowbsd.config import Config
from pflowbsd.pf import timeouts
from pflowbsd.pipeline import Output, PfSide, Pipeline
from pflowbsd.shell.pfctl import PfctlError, boottime, carp_status, pfctl_for
from pflowbsd.shell.record import Recorder, stats_line
from pflowbsd.shell.sender import Sender

log = logging.getLogger("pflowbsd")
# `pkill -INFO pflowbsd` (BSD ^T) or -USR1: the statistics, to the log.
STATS_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINFO", "SIGUSR1") if hasattr(signal, n))


class Daemon:
    def __init__(self, cfg: Config, record: str | None = None,
                 reload: Callable[[], Config] | None = None) -> None:
        self.cfg, self.reload = cfg, reload  # reload() -> a fresh Config (SIGHUP)
        self.pf = pfctl_for(cfg)
        self.recorder = Recorder(record) if record else None
        self.side = PfSide(cfg)
        self.pf_error: str | None = None  # the failure last logged
        self.carp_status: str | None = None
        self.sender: Sender  # made by run(), with the pipeline
        self.pipe: Pipeline

    def _pf(self, what: str) -> str | None:
        """One pfctl call; failures are logged once per change of state."""
        try:
            text: str = getattr(self.pf, what)()
        except PfctlError as e:
            if self.pf_error != e.reason:
                log.error("%s", e)
                self.pf_error = e.reason
            return None
        if self.pf_error and what == "states":
            log.warning("pfctl works again")
            self.pf_error = None
        return text

    def send(self, out: Output) -> None:
        self.sender.send(out.datagrams)

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
        to the new destination."""
        if self.reload is None:
            return
        try:
            cfg = self.reload()
        except ValueError as e:  # ConfigError: keep running on the old configuration
            log.error("configuration not reloaded: %s", e)
            return
        old, self.cfg = self.cfg, cfg
        self.pf = pfctl_for(cfg)
        self.side = PfSide(cfg)
        if (cfg.flowdst, cfg.flowsrc) != (old.flowdst, old.flowsrc):
            self.sender.close()
            self.sender = Sender(cfg.flowdst, cfg.flowsrc)
        self.send(self.pipe.reconfigure(cfg, self.side, time.time()))

    def poll(self) -> None:
        info = self._pf("info")
        if info is not None:
            checksum, known = timeouts.parse_info(info).checksum, self.side.info.checksum
            if checksum and known and checksum != known:
                log.info("ruleset checksum changed: re-reading the rules")
                self.load_side(info)
        text = self._pf("states")
        wall = time.time()
        if text is None:
            self.pipe.failed_poll()
            return
        if self.recorder:
            self.recorder.snapshot(text, wall)
        cpu = time.process_time()
        up, out = self.pipe.poll(text, wall, export=self.master())
        log.debug("poll: %d states, %d new, %d changed, %d gone, %d to export, %.0f ms CPU",
                  up.states, up.new, up.changed, up.gone, len(up.expired),
                  (time.process_time() - cpu) * 1000)
        self.send(out)

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
        self.sender = Sender(self.cfg.flowdst, self.cfg.flowsrc)
        self.pipe = Pipeline(self.cfg, self.side, boot)
        self.load_side()
        sel = selectors.DefaultSelector()
        rsock, wsock = socket.socketpair()
        rsock.setblocking(False)
        wsock.setblocking(False)
        sel.register(rsock, selectors.EVENT_READ)
        signal.set_wakeup_fd(wsock.fileno())
        pending: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, *STATS_SIGNALS):
            signal.signal(sig, lambda n, f: pending.append(n))
        log.info("started: flowdst %s, pflowproto %d, poll every %g s",
                 ", ".join(f"{a}:{p}" for a, p in self.cfg.flowdst),
                 self.cfg.pflowproto, self.cfg.interval)
        self.send(self.pipe.start(time.time()))
        next_poll = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_poll:
                self.poll()
                next_poll += self.cfg.interval * max(1, int((now - next_poll)
                                                            // self.cfg.interval) + 1)
            out = self.pipe.due(time.time())
            self.send(out)
            wait = next_poll - time.monotonic()
            if out.next_deadline is not None:
                wait = min(wait, out.next_deadline - time.time())
            if sel.select(max(0.0, wait)):
                try:
                    rsock.recv(64)
                except BlockingIOError:
                    pass
            while pending:
                sig = pending.pop(0)
                if sig in STATS_SIGNALS:
                    log.info("statistics: %s", stats_line(self.pipe, self.sender))
                elif sig == signal.SIGHUP:
                    log.info("SIGHUP: re-reading the configuration, timeouts and rules")
                    self.reconfigure()
                    self.load_side()
                else:
                    self.send(self.pipe.flush(time.time()))
                    log.info("exiting on signal %d: %s", sig, stats_line(self.pipe, self.sender))
                    self.sender.close()
                    return 0
