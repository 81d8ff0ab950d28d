"""The process around the daemon: logging (stderr or syslog), detaching, the pidfile."""

from __future__ import annotations

import logging
import os
import syslog
from pathlib import Path

log = logging.getLogger("pflowbsd")


class SyslogHandler(logging.Handler):
    PRIORITY = {logging.DEBUG: syslog.LOG_DEBUG, logging.INFO: syslog.LOG_INFO,
                logging.WARNING: syslog.LOG_WARNING, logging.ERROR: syslog.LOG_ERR,
                logging.CRITICAL: syslog.LOG_CRIT}

    def __init__(self, ident: str) -> None:
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
