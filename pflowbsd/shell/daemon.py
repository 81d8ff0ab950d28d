"""The shell around the pure core: it runs pfctl, owns the sockets, the clock, the
timers, signals and logging, and records or replays snapshots.  Everything it decides
is decided by the core (tracker, exporter, selection); this module only moves bytes
and time in and out.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import signal
import socket
import syslog
import time
from pathlib import Path

import sh

from pflowbsd.config import Config
from pflowbsd.export.exporter import Exporter
from pflowbsd.flows import Clock
from pflowbsd.pf import carp, timeouts
from pflowbsd.tracker import Tracker

log = logging.getLogger("pflowbsd")
MiB = 1 << 20
# `pkill -INFO pflowbsd` (BSD ^T) or -USR1: the statistics, to the log.
STATS_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINFO", "SIGUSR1") if hasattr(signal, n))


class PfctlError(RuntimeError):
    def __init__(self, command: str, reason: str):
        super().__init__(f"{command}: {reason}")
        self.reason = reason  # what went wrong, whichever pfctl call it was


class Pfctl:
    """pfctl through sh, with a pipe (not a pty) and large buffers: a 50 MB table in
    about 0.1 s instead of 3-4 s with sh's defaults.  stderr (ALTQ notices) is ignored
    unless pfctl fails."""

    def __init__(self, path: str = "pfctl", timeout: float = 60.0):
        self.path, self.timeout = path, timeout

    def run(self, *args: str) -> str:
        try:
            cmd = sh.Command(self.path)
            return str(cmd(*args, _tty_out=False, _out_bufsize=MiB, _internal_bufsize=MiB,
                           _timeout=self.timeout, _env={**os.environ, "LC_ALL": "C"},
                           _decode_errors="replace"))
        except sh.ErrorReturnCode as e:
            err = e.stderr.decode(errors="replace").strip().splitlines()
            raise PfctlError(f"{self.path} {' '.join(args)}",
                             f"exit {e.exit_code}" + (f": {err[-1]}" if err else "")) from None
        except sh.TimeoutException:
            raise PfctlError(f"{self.path} {' '.join(args)}",
                             f"timed out after {self.timeout:g} s") from None
        except sh.CommandNotFound:
            raise PfctlError(self.path, "command not found") from None
        except OSError as e:
            raise PfctlError(self.path, e.strerror or str(e)) from None

    def states(self) -> str:
        return self.run("-ss", "-vv")

    def timeouts(self) -> str:
        return self.run("-st")

    def info(self) -> str:
        return self.run("-si", "-v")

    def rules(self) -> str:
        return self.run("-a", "*", "-sr", "-vv")


def boottime() -> int:
    """The kernel's boot time, whole epoch seconds, so that uptimes match pf's."""
    try:
        out = str(sh.sysctl("-n", "kern.boottime", _tty_out=False, _timeout=5))
        bt = timeouts.parse_boottime(out)
        if bt:
            return bt
    except Exception:  # not a BSD: no such sysctl, or no sysctl at all
        pass
    return int(time.time())


class Sender:
    """One connected UDP socket per flowdst; every datagram goes to each of them.  A
    collector that refuses or cannot be reached is counted and logged once per change,
    and never holds up the others."""

    def __init__(self, dsts, src=None):
        self.sockets = []
        self.errors: dict[tuple[str, int], str | None] = {}
        self.failed_at: dict[tuple[str, int], float] = {}
        self.stats = dict(datagrams=0, bytes=0, send_errors=0)
        for dst in dsts:
            fam = socket.AF_INET6 if ":" in dst[0] else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setblocking(False)
            try:
                if src and (":" in src[0]) == (fam == socket.AF_INET6):
                    if src[1]:  # one source port shared by every collector's socket
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        if hasattr(socket, "SO_REUSEPORT"):
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    s.bind((src[0], src[1]))
                s.connect((dst[0], dst[1]))
            except OSError as e:
                s.close()
                self.close()
                raise OSError(e.errno, f"flowsrc {src and src[0]} to flowdst {dst[0]}:{dst[1]}: "
                                       f"{e.strerror}") from None
            self.sockets.append((dst, s))
            self.errors[dst] = None

    def send(self, datagrams) -> None:
        for d in datagrams:
            for dst, s in self.sockets:
                try:
                    s.send(d)
                    self.stats["datagrams"] += 1
                    self.stats["bytes"] += len(d)
                    self._ok(dst)
                except OSError as e:
                    self.stats["send_errors"] += 1
                    self._fail(dst, e)

    # A connected UDP socket reports a refusal (ICMP port unreachable) on the send
    # after the one that caused it, so sends alternate between failing and "working"
    # while a collector is down: call it back only after a quiet spell.
    RECOVERED_AFTER = 60.0

    def _ok(self, dst) -> None:
        if self.errors[dst] and time.monotonic() - self.failed_at[dst] > self.RECOVERED_AFTER:
            log.warning("flowdst %s:%d: sending again", *dst)
            self.errors[dst] = None

    def _fail(self, dst, e: OSError) -> None:
        msg = errno.errorcode.get(e.errno, str(e))
        self.failed_at[dst] = time.monotonic()
        if self.errors[dst] != msg:
            log.warning("flowdst %s:%d: %s", dst[0], dst[1], e.strerror or e)
            self.errors[dst] = msg

    def close(self) -> None:
        for _, s in self.sockets:
            s.close()


EXPORTER_WORDS = ("pflowproto", "mtu", "domain", "tmpl_interval", "nat")


def exporter_for(cfg: Config) -> Exporter:
    return Exporter(proto=cfg.pflowproto, mtu=cfg.mtu, domain=cfg.domain,
                    tmpl_interval=cfg.tmpl_interval, nat=cfg.nat)


def pfctl_for(cfg: Config) -> Pfctl:
    return Pfctl(cfg.pfctl, timeout=max(30.0, cfg.interval * 3))


class Pipeline:
    """tracker -> exporter -> sender, clocked by the caller."""

    def __init__(self, cfg: Config, tracker: Tracker, sender: Sender, boot: int):
        self.cfg, self.tracker, self.sender, self.boot = cfg, tracker, sender, boot
        self.exporter = exporter_for(cfg)
        self.skipped_polls = 0
        self.not_master = 0  # expired states a CARP backup tracked but did not export
        self._last_complaint: tuple = ()

    def clock(self, wall: float) -> Clock:
        return Clock(wall, wall - self.boot)

    def start(self, wall: float) -> None:
        self.sender.send(self.exporter.start(self.clock(wall)))

    def run_due(self, wall: float) -> None:
        """Send what fell due up to `wall`, each at its own deadline (exact in replay)."""
        while (d := self.exporter.next_deadline()) is not None and d <= wall - self.boot:
            self.sender.send(self.exporter.due(Clock(self.boot + d, d)))

    def snapshot(self, text: str, wall: float, complete: bool = True, export: bool = True):
        now = self.clock(wall)
        cpu = time.process_time()
        up = self.tracker.update(text, now.up, complete)
        log.debug("poll: %d states, %d new, %d changed, %d gone, %d to export, %.0f ms CPU",
                  up.states, up.new, up.changed, up.gone, len(up.expired),
                  (time.process_time() - cpu) * 1000)
        if up.partial:
            self.skipped_polls += 1
        # The same bad table poll after poll is said once; counted every time.
        complaint = (up.partial, tuple((e.reason, e.text) for e in up.errors[:3]))
        if complaint != self._last_complaint:
            self._last_complaint = complaint
            for line in up.errors[:3]:
                log.warning("pfctl -ss line %d: %s: %.80s", line.line, line.reason, line.text)
            if len(up.errors) > 3:
                log.warning("pfctl -ss: %d more unparseable lines", len(up.errors) - 3)
            if up.partial:
                log.info("partial snapshot (%d states): nothing expires until a whole one",
                         up.states)
        if not export:
            self.not_master += len(up.expired)
            return up
        for f1, f2 in up.expired:
            self.sender.send(self.exporter.export_state(f1, f2, now))
        return up

    def flush(self, wall: float) -> None:
        self.sender.send(self.exporter.flush(self.clock(wall)))

    def stats(self) -> str:
        parts = {**self.tracker.stats, "skipped_polls": self.skipped_polls,
                 "not_master": self.not_master,
                 **self.exporter.stats, **self.sender.stats}
        return " ".join(f"{k}={v}" for k, v in parts.items())


# --- selection and the pf side files -------------------------------------------------

class PfSide:
    """What pf tells besides the states: timeouts, the ruleset, hostid and checksum.
    Re-read at start, on SIGHUP, and when `pfctl -si -v` shows a new ruleset Checksum."""

    def __init__(self, cfg: Config):
        from pflowbsd.rules.select import Selector

        self.cfg = cfg
        self.selector = Selector.from_config(cfg.select + (["all"] if cfg.export_all else []))
        self.timeouts = dict(timeouts.DEFAULTS)
        self.ruleset = None
        self.info = timeouts.Info(None, None, None)

    def load(self, timeouts_text: str | None, rules_text: str | None,
             info_text: str | None) -> None:
        from pflowbsd.rules.model import RuleSyntaxError, parse_listing

        if timeouts_text is not None:
            self.timeouts = timeouts.parse_timeouts(timeouts_text)
        if info_text is not None:
            self.info = timeouts.parse_info(info_text)
        if rules_text is not None:
            try:
                self.ruleset = parse_listing(rules_text)
                for w in self.ruleset.warnings[:5]:
                    log.info("rules: %s", w)
            except RuleSyntaxError as e:
                log.warning("rules: %s; selecting by the pflow flag only", e)
                self.ruleset = None

    def rule_of(self, st):
        rs = self.ruleset
        return rs.lookup(st.anchor, st.rule) if rs is not None and st.rule is not None else None

    def select(self, st) -> bool:
        return self.selector.decide(st, self.rule_of(st))[0]

    def policy(self) -> timeouts.Policy:
        return timeouts.Policy(self.timeouts, self.rule_of)


def make_tracker(side: PfSide) -> Tracker:
    return Tracker(side.policy(), side.select)


# --- replay --------------------------------------------------------------------------

def read_optional(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None


def replay(cfg: Config, folder: str) -> int:
    """Run the pipeline over a --record folder, its snapshot names as the clock."""
    from pflowbsd.pf.states import parse_states

    d = Path(folder)
    snaps = sorted((int(p.stem), p) for p in d.glob("*.states") if p.stem.isdigit())
    if not snaps:
        log.error("%s: no <unix-seconds>.states snapshots", folder)
        return 1
    side = PfSide(cfg)
    side.load(read_optional(d / "timeouts"), read_optional(d / "rules"), read_optional(d / "info"))
    boot = timeouts.parse_boottime(read_optional(d / "boottime") or "")
    if boot is None:
        first = parse_states(snaps[0][1].read_text(errors="replace")).states
        boot = snaps[0][0] - max((s.age_s or 0 for s in first), default=0)
        log.info("%s: no boottime; taking %d (the oldest state's creation)", folder, boot)
    sender = Sender(cfg.flowdst, cfg.flowsrc)
    pipe = Pipeline(cfg, make_tracker(side), sender, boot)
    pipe.start(snaps[0][0])
    for t, path in snaps:
        pipe.run_due(t)
        pipe.snapshot(path.read_text(errors="replace"), t)
    pipe.run_due(snaps[-1][0])
    pipe.flush(snaps[-1][0])
    log.info("replay done: %d snapshots; %s", len(snaps), pipe.stats())
    sender.close()
    return 0


# --- the live daemon -----------------------------------------------------------------

class Daemon:
    def __init__(self, cfg: Config, record: str | None = None, reload=None):
        self.cfg, self.reload = cfg, reload  # reload() -> a fresh Config (SIGHUP)
        self.pf = pfctl_for(cfg)
        self.record = Path(record) if record else None
        self.side = PfSide(cfg)
        self.pf_error: str | None = None  # the failure last logged
        self.carp_status: str | None = None

    def _pf(self, what: str) -> str | None:
        """One pfctl call; failures are logged once per change of state."""
        try:
            text = getattr(self.pf, what)()
        except PfctlError as e:
            if self.pf_error != e.reason:
                log.error("%s", e)
                self.pf_error = e.reason
            return None
        if self.pf_error and what == "states":
            log.warning("pfctl works again")
            self.pf_error = None
        return text

    def load_side(self, info: str | None = None) -> None:
        """Timeouts, rules and `-si -v` (unless the caller just read it) from pfctl."""
        t, r = self._pf("timeouts"), self._pf("rules")
        i = info if info is not None else self._pf("info")
        self.side.load(t, r, i)
        self.pipe.tracker.policy = self.side.policy()
        if self.record:
            for name, text in (("timeouts", t), ("rules", r), ("info", i)):
                if text is not None and not (self.record / name).exists():
                    (self.record / name).write_text(text)

    def reconfigure(self) -> None:
        """As `ifconfig pflowN flowdst ...` does: flush what is pending first, and send it
        to the new destination; the exporter is renewed only if its own words changed."""
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
        self.pipe.tracker.select = self.side.select
        self.pipe.cfg = cfg
        wall = time.time()
        pending = self.pipe.exporter.flush(self.pipe.clock(wall))
        if (cfg.flowdst, cfg.flowsrc) != (old.flowdst, old.flowsrc):
            self.pipe.sender.close()
            self.pipe.sender = Sender(cfg.flowdst, cfg.flowsrc)
        self.pipe.sender.send(pending)
        if any(getattr(cfg, w) != getattr(old, w) for w in EXPORTER_WORDS):
            self.pipe.exporter = exporter_for(cfg)
            self.pipe.start(wall)

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
            self.pipe.skipped_polls += 1
            return
        if self.record:
            (self.record / f"{int(wall)}.states").write_text(text)
        self.pipe.snapshot(text, wall, export=self.master())

    def master(self) -> bool:
        """With `carp carpN`: export only while MASTER (unknown counts as master, so a
        broken ifconfig loses nothing; it is logged)."""
        if not self.cfg.carp:
            return True
        try:
            out = str(sh.Command("ifconfig")(self.cfg.carp, _tty_out=False, _timeout=10))
            status = carp.parse_status(out) or "unknown (no carp: line)"
        except Exception as e:  # no such interface, no ifconfig
            status = f"unknown ({str(e).strip().splitlines()[0] if str(e).strip() else e})"
        if status != self.carp_status:
            verb = "not exporting" if status in ("BACKUP", "INIT") else "exporting"
            log.info("%s is %s: %s", self.cfg.carp, status, verb)
            self.carp_status = status
        return status not in ("BACKUP", "INIT")

    def run(self) -> int:
        boot = boottime()
        if self.record:
            self.record.mkdir(parents=True, exist_ok=True)
            (self.record / "boottime").write_text(f"{boot}\n")
        self.pipe = Pipeline(self.cfg, make_tracker(self.side),
                             Sender(self.cfg.flowdst, self.cfg.flowsrc), boot)
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
        self.pipe.start(time.time())
        next_poll = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_poll:
                self.poll()
                next_poll += self.cfg.interval * max(1, int((now - next_poll)
                                                            // self.cfg.interval) + 1)
            self.pipe.run_due(time.time())
            wait = next_poll - time.monotonic()
            d = self.pipe.exporter.next_deadline()
            if d is not None:
                wait = min(wait, d - self.pipe.clock(time.time()).up)
            if sel.select(max(0.0, wait)):
                try:
                    rsock.recv(64)
                except BlockingIOError:
                    pass
            while pending:
                sig = pending.pop(0)
                if sig in STATS_SIGNALS:
                    log.info("statistics: %s", self.pipe.stats())
                elif sig == signal.SIGHUP:
                    log.info("SIGHUP: re-reading the configuration, timeouts and rules")
                    self.reconfigure()
                    self.load_side()
                else:
                    self.pipe.flush(time.time())
                    log.info("exiting on signal %d: %s", sig, self.pipe.stats())
                    self.pipe.sender.close()
                    return 0


# --- process set-up ------------------------------------------------------------------

class SyslogHandler(logging.Handler):
    PRIORITY = {logging.DEBUG: syslog.LOG_DEBUG, logging.INFO: syslog.LOG_INFO,
                logging.WARNING: syslog.LOG_WARNING, logging.ERROR: syslog.LOG_ERR,
                logging.CRITICAL: syslog.LOG_CRIT}

    def __init__(self, ident: str):
        super().__init__()
        syslog.openlog(ident, syslog.LOG_PID, syslog.LOG_DAEMON)

    def emit(self, record: logging.LogRecord) -> None:
        syslog.syslog(self.PRIORITY.get(record.levelno, syslog.LOG_INFO), self.format(record))


def setup_logging(foreground: bool, verbose: bool, instance: str) -> None:
    if foreground:
        handler: logging.Handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"pflowbsd[{instance}]: %(message)s"))
    else:
        handler = SyslogHandler(f"pflowbsd/{instance}")
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def daemonize() -> None:
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    fd = os.open(os.devnull, os.O_RDWR)
    for n in (0, 1, 2):
        os.dup2(fd, n)


def write_pidfile(path: str) -> None:
    Path(path).write_text(f"{os.getpid()}\n")


def remove_pidfile(path: str) -> None:
    try:
        if Path(path).read_text().strip() == str(os.getpid()):
            Path(path).unlink()
    except OSError:
        pass
