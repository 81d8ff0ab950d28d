"""Running pf's own tools: pfctl, sysctl and ifconfig, with their output as text.

pfctl goes through sh with a pipe (not a pty) and 1 MiB buffers: a 50 MB table in about
0.1 s instead of 3-4 s with sh's defaults, and under LC_ALL=C so that it prints what
the parsers expect.  stderr (ALTQ notices) is ignored unless the command fails; every
failure becomes one PfctlError whose reason is the same from one poll to the next, so
the daemon can log it once per change.
"""

from __future__ import annotations

import os
import time

import sh

from pflowbsd.config import Config
from pflowbsd.pf import carp, timeouts

MiB = 1 << 20


class PfctlError(RuntimeError):
    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"{command}: {reason}")
        self.reason = reason  # what went wrong, whichever pfctl call it was


class Pfctl:
    """The pfctl calls the daemon makes, each returning pfctl's whole output."""

    def __init__(self, path: str = "pfctl", timeout: float = 60.0) -> None:
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


def pfctl_for(cfg: Config) -> Pfctl:
    return Pfctl(cfg.pfctl, timeout=max(30.0, cfg.interval * 3))


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


def carp_status(interface: str) -> str:
    """`ifconfig carpN`'s state: MASTER, BACKUP, INIT or `unknown (why)`."""
    try:
        out = str(sh.Command("ifconfig")(interface, _tty_out=False, _timeout=10))
        return carp.parse_status(out) or "unknown (no carp: line)"
    except Exception as e:  # no such interface, no ifconfig
        return f"unknown ({str(e).strip().splitlines()[0] if str(e).strip() else e})"
