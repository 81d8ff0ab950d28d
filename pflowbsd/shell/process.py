"""The process around the daemon: logging (stderr or syslog), detaching, the pidfile.

Start-up is checked before the daemon detaches: a failure is one line on the terminal
and in syslog (startup_error), and exit 1.  The pidfile is locked (flock) before the
fork and stays locked by the child, so a second instance with the same -p is refused
instead of overwriting it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import syslog
from pathlib import Path

log = logging.getLogger("pflowbsd")


class SyslogHandler(logging.Handler):
    PRIORITY = {logging.DEBUG: syslog.LOG_DEBUG, logging.INFO: syslog.LOG_INFO,
                logging.WARNING: syslog.LOG_WARNING, logging.ERROR: syslog.LOG_ERR,
                logging.CRITICAL: syslog.LOG_CRIT}

    def __init__(self, ident: str, facility: str = "daemon") -> None:
        super().__init__()
        syslog.openlog(ident, syslog.LOG_PID, syslog_facility(facility))

    def emit(self, record: logging.LogRecord) -> None:
        syslog.syslog(self.PRIORITY.get(record.levelno, syslog.LOG_INFO), self.format(record))


def syslog_facility(name: str) -> int:
    """`log-facility NAME` (config.LOG_FACILITIES) as syslog's LOG_NAME."""
    return int(getattr(syslog, f"LOG_{name.upper()}", syslog.LOG_DAEMON))


def setup_logging(foreground: bool, verbose: bool, instance: str,
                  facility: str = "daemon") -> None:
    """-d: to stderr, each line stamped as syslogd stamps it (local time, to the
    second: 2026-12-03T14:25:01); else to syslog under `log-facility`."""
    if foreground:
        handler: logging.Handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"%(asctime)s pflowbsd[{instance}]: %(message)s",
                                               "%Y-%m-%dT%H:%M:%S"))
    else:
        handler = SyslogHandler(f"pflowbsd/{instance}", facility)
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


class PidfileError(OSError):
    """The pidfile is held by a running instance, or cannot be made."""


_pidfile_fd: int | None = None


def lock_pidfile(path: str) -> None:
    """Open and lock `path` (before detaching); write_pidfile() fills it in."""
    global _pidfile_fd
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise PidfileError(f"pidfile {path}: {e.strerror or 'cannot open'}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        held = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        raise PidfileError(f"pidfile {path}: held by a running pflowbsd"
                           + (f" (pid {held})" if held.isdigit() else "")) from None
    _pidfile_fd = fd


def write_pidfile(path: str) -> None:
    """The pid of the process that runs (after detaching), into the locked pidfile."""
    if _pidfile_fd is None:
        lock_pidfile(path)
    assert _pidfile_fd is not None
    os.ftruncate(_pidfile_fd, 0)
    os.pwrite(_pidfile_fd, f"{os.getpid()}\n".encode(), 0)


def remove_pidfile(path: str) -> None:
    try:
        if Path(path).read_text().strip() == str(os.getpid()):
            Path(path).unlink()
    except OSError:
        pass


def startup_error(message: str, instance: str, facility: str = "daemon") -> None:
    """A start-up failure: one line to the terminal and to syslog."""
    print(f"pflowbsd: {message}", file=sys.stderr)
    syslog.openlog(f"pflowbsd/{instance}", syslog.LOG_PID, syslog_facility(facility))
    syslog.syslog(syslog.LOG_ERR, message)
