"""Running pf's own tools: pfctl, sysctl and ifconfig, with their output as text.

Strategy: each run is a child in a session (and process group) of its own, read through
pipes in 1 MiB reads (a 50 MB table in about 0.1 s) under LC_ALL=C, so that it prints
what the parsers expect.  The run is bounded three ways: a timeout (`pfctl-timeout`),
a size (what the caller allows: derived from `current entries`, else MAX_OUTPUT), and
the caller's `interrupted()` (a SIGTERM waiting), checked at least every 0.2 s.  Past
any of them the whole process group is killed (grandchildren too) and the run fails.
stderr (ALTQ notices) is ignored unless the command fails; every failure becomes one
PfctlError whose reason is the same from one poll to the next, so the daemon can log
it once per change.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

from pflowbsd.config import Config
from pflowbsd.pf import carp, timeouts

log = logging.getLogger("pflowbsd")

MiB = 1 << 20
MAX_OUTPUT = 1 << 30  # bytes, when the table's size is not known
BYTES_PER_STATE = 1024  # a -vv record is 250-450 bytes; FreeBSD's origif line included
STDERR_KEPT = 1 << 16
Interrupted = Callable[[], bool]
# -u USER: the privileged helper's client (shell/privsep.py) runs every command instead
RUNNER: Callable[[list[str], float, int, Interrupted], str] | None = None
# ... and streams -ss -vv (privsep.Client.stream)
STREAMER: Callable[[list[str], float, int, Interrupted], Iterator[bytes]] | None = None


class PfctlError(RuntimeError):
    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"{command}: {reason}")
        self.reason = reason  # what went wrong, whichever pfctl call it was


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()


def run_command(argv: list[str], timeout: float, limit: int = MAX_OUTPUT,
                interrupted: Callable[[], bool] = lambda: False) -> str:
    """argv's stdout as text; PfctlError on a failure, a timeout, more than `limit`
    bytes, or interrupted()."""
    if RUNNER is not None:
        return RUNNER(argv, timeout, limit, interrupted)
    return b"".join(_blocks(argv, timeout, limit, interrupted)).decode(errors="replace")


class Stream:
    """A run's stdout as it arrives: iterate for its blocks (1 MiB reads); afterwards
    ok() says whether the run ended well, `error` why not, `size` how much it wrote."""

    def __init__(self, argv: list[str], timeout: float, limit: int,
                 interrupted: Callable[[], bool]) -> None:
        self.argv, self.timeout, self.limit, self.interrupted = argv, timeout, limit, interrupted
        self.error: PfctlError | None = None
        self.size = 0
        self.done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            for block in stream_blocks(self.argv, self.timeout, self.limit, self.interrupted):
                self.size += len(block)
                yield block
        except PfctlError as e:
            self.error = e
        finally:
            self.done = True

    def ok(self) -> bool:
        return self.done and self.error is None


def stream_blocks(argv: list[str], timeout: float, limit: int,
                  interrupted: Callable[[], bool]) -> Iterator[bytes]:
    """argv's stdout blocks as they are read (through the privileged helper with -u)."""
    if STREAMER is not None:
        return STREAMER(argv, timeout, limit, interrupted)
    return _blocks(argv, timeout, limit, interrupted)


def _blocks(argv: list[str], timeout: float, limit: int,
            interrupted: Callable[[], bool]) -> Iterator[bytes]:
    """argv's stdout blocks as they are read; PfctlError (at the end, or where it goes
    wrong) as run_command() says.  The time bound counts pfctl's time only: while the
    reader parses a block, pfctl (its ioctl done) only waits on the full pipe."""
    command = " ".join(argv)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                env={**os.environ, "LC_ALL": "C"})
    except FileNotFoundError:
        raise PfctlError(argv[0], "cannot be run (its #! interpreter is missing?)"
                         if os.path.exists(argv[0]) else "no such program: give its path "
                         "(--pfctl PATH, or pfctl in the configuration)") from None
    except PermissionError:
        raise PfctlError(argv[0], "not executable (permission denied): chmod +x it, or give "
                         "the path of pf's own program") from None
    except OSError as e:
        raise PfctlError(argv[0], (e.strerror or type(e).__name__).lower()) from None
    assert proc.stdout is not None and proc.stderr is not None
    err = bytearray()
    size, deadline = 0, time.monotonic() + timeout
    why: str | None = None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            sel.register(proc.stderr, selectors.EVENT_READ)
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    why = f"timed out after {timeout:g} s"
                elif interrupted():
                    why = "interrupted"
                if why:
                    break
                for key, _ in sel.select(min(left, 0.2)):
                    chunk = os.read(key.fd, MiB)
                    if not chunk:
                        sel.unregister(key.fileobj)
                    elif key.fileobj is proc.stdout:
                        size += len(chunk)
                        if size > limit:
                            why = f"output over {limit} bytes"
                            break
                        paused = time.monotonic()
                        yield chunk
                        deadline += time.monotonic() - paused  # the reader's time is not pfctl's
                    elif len(err) < STDERR_KEPT:
                        err += chunk
                if why:
                    break
        if why is None:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                why = f"timed out after {timeout:g} s"
    finally:  # also when the reader stops early: no child is left behind
        if why is not None or proc.returncode is None:
            _kill_group(proc)
        else:  # its output is closed: whatever it left behind goes too
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
        proc.stderr.close()
    if why is not None:
        raise PfctlError(command, why)
    if proc.returncode:
        lines = err.decode(errors="replace").strip().splitlines()
        status = (f"exit {proc.returncode}" if proc.returncode > 0
                  else f"killed by signal {-proc.returncode}")
        raise PfctlError(command, status + (f": {lines[-1][:200]}" if lines else ""))


class Pfctl:
    """The pfctl calls the daemon makes, each returning pfctl's whole output (-ss also
    as a Stream)."""

    def __init__(self, path: str = "pfctl", timeout: float = 60.0,
                 interrupted: Callable[[], bool] = lambda: False) -> None:
        self.path, self.timeout, self.interrupted = path, timeout, interrupted
        self.limit = MAX_OUTPUT  # for -ss: set from `current entries` by the daemon

    def run(self, *args: str, limit: int = MAX_OUTPUT) -> str:
        return run_command([self.path, *args], self.timeout, limit, self.interrupted)

    def expect(self, entries: int | None) -> None:
        """The next -ss may hold `entries` states (None: unknown): its size bound."""
        self.limit = (MAX_OUTPUT if entries is None
                      else min(MAX_OUTPUT, 2 * MiB + 2 * entries * BYTES_PER_STATE))

    def states(self) -> str:
        return self.run("-ss", "-vv", limit=self.limit)

    def states_stream(self) -> Stream | None:
        """-ss -vv as it arrives (also through the privileged helper: -u); None where
        only whole texts can be had (a runner that does not stream)."""
        if RUNNER is not None and STREAMER is None:
            return None
        return Stream([self.path, "-ss", "-vv"], self.timeout, self.limit, self.interrupted)

    def timeouts(self) -> str:
        return self.run("-st", limit=MiB)

    def info(self) -> str:
        return self.run("-si", "-v", limit=MiB)

    def rules(self) -> str:
        return self.run("-a", "*", "-sr", "-vv")


def pfctl_timeout(cfg: Config) -> float:
    """`pfctl-timeout`, by default max(30, 3 x interval)."""
    return cfg.pfctl_timeout or max(30.0, cfg.interval * 3)


def pfctl_for(cfg: Config, interrupted: Callable[[], bool] = lambda: False) -> Pfctl:
    return Pfctl(cfg.pfctl, timeout=pfctl_timeout(cfg), interrupted=interrupted)


def boottime() -> int:
    """The kernel's boot time, whole epoch seconds, so that uptimes match pf's.  Without
    kern.boottime (not a BSD) it is now, said once a process: a state older than that
    gets First clamped to now in NetFlow v5, whose times are uptimes."""
    try:
        bt = timeouts.parse_boottime(run_command(["sysctl", "-n", "kern.boottime"], 5, MiB))
        if bt:
            return bt
        why = "kern.boottime unreadable"
    except PfctlError as e:  # not a BSD: no such sysctl, or no sysctl at all
        why = e.reason
    if not _said_boottime:
        _said_boottime.append(why)
        log.info("no kern.boottime (%s): uptimes count from now, so NetFlow v5 First/Last "
                 "of states older than this start are clamped to it", why)
    return int(time.time())


_said_boottime: list[str] = []  # the fallback was logged


def ifconfig_all() -> str:
    """`ifconfig -a`: the host's interfaces, for pf.conf rules that name them."""
    return run_command(["ifconfig", "-a"], 10, MiB)


def carp_status(interface: str) -> str:
    """`ifconfig carpN`'s state: MASTER, BACKUP, INIT or `unknown (why)`."""
    try:
        out = run_command(["ifconfig", interface], 10, MiB)
        return carp.parse_status(out) or "unknown (no carp: line)"
    except PfctlError as e:  # no such interface, no ifconfig
        return f"unknown ({e.reason})"


@functools.lru_cache(maxsize=256)
def host_protocol(name: str) -> int | None:
    """getprotobyname() of this host, for netdb.set_resolver(): pfctl printed the name
    from this host's /etc/protocols."""
    try:
        return socket.getprotobyname(name)
    except OSError:
        return None
