"""The statistics file: what the shell counts itself, and the file it writes after each poll.

Strategy.  The pipeline and the sender keep their own counters; the Meter adds what only
the shell sees (each poll's result, duration and pfctl output size, and each collector's
sends, counted through the sender's tap so that they survive a new Sender on SIGHUP),
hands all of it to stats.collect(), and StatsFile writes stats.prometheus() of the
result atomically (a temporary file in the same folder, fsync, rename), so
node_exporter's textfile collector never reads half a file.  The file is reopened by name
each time: whoever can write its folder can write it, root or not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

from pflowbsd import stats
from pflowbsd.config import Config, Endpoint, endpoint_text
from pflowbsd.pipeline import Pipeline

log = logging.getLogger("pflowbsd")
STATE_DIR = "/var/db/pflowbsd"  # made by the rc.d scripts


def stats_path(cfg: Config, state_dir: str = STATE_DIR) -> str | None:
    """`stats-file PATH`; by default STATE_DIR/IF.prom when STATE_DIR exists; `none`: off."""
    return in_state_dir(cfg.stats_file, f"{cfg.instance}.prom", state_dir)


def in_state_dir(word: str | None, name: str, state_dir: str = STATE_DIR) -> str | None:
    """A file word's path: `none` is off, a PATH is itself, unset is state_dir/name
    when state_dir exists (else off)."""
    if word == "none":
        return None
    if word:
        return word
    return os.path.join(state_dir, name) if os.path.isdir(state_dir) else None


class Meter:
    """The shell's counters: polls by result, the last poll's figures, sends per flowdst.
    It is the Sender's tap (sent/failed)."""

    def __init__(self, instance: str, started: float) -> None:
        self.instance = instance
        self.polls = dict.fromkeys(stats.POLL_RESULTS, 0)
        self.gauges: dict[str, float | None] = {"started": started, "poll_seconds": None,
                                                "pfctl_bytes": None, "last_poll": None}
        self.per_collector: dict[str, dict[str, int]] = {}

    def polled(self, result: str, seconds: float | None, pfctl_bytes: int | None,
               wall: float) -> None:
        """A poll ended at `wall` (None: not measured, as in a replay)."""
        self.polls[result] += 1
        self.gauges["last_poll"] = wall
        if seconds is not None:
            self.gauges["poll_seconds"] = seconds
        if pfctl_bytes is not None:
            self.gauges["pfctl_bytes"] = pfctl_bytes

    def _counts(self, dst: Endpoint) -> dict[str, int]:
        return self.per_collector.setdefault(endpoint_text(*dst), dict.fromkeys(stats.PER_COLLECTOR, 0))

    def sent(self, src: Endpoint, dst: Endpoint, datagram: bytes) -> None:
        c = self._counts(dst)
        c["datagrams"] += 1
        c["bytes"] += len(datagram)

    def failed(self, dst: Endpoint) -> None:
        self._counts(dst)["send_errors"] += 1

    def collectors(self, dsts: list[Endpoint]) -> None:
        """The configured flowdsts are listed from the start, at 0."""
        for dst in dsts:
            self._counts(dst)

    def statistics(self, pipe: Pipeline) -> stats.Statistics:
        return stats.collect(self.instance, pipe.stats(), self.per_collector, self.polls,
                             len(pipe.tracker), self.gauges)


class StatsFile:
    """Writes the Prometheus text to `path` after each poll; a failure is logged once per
    change of error and the daemon goes on."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file = AtomicFile(path, "statistics file", logging.WARNING)

    def write(self, st: stats.Statistics) -> None:
        self.file.write(stats.prometheus(st))


class AtomicFile:
    """A file rewritten whole (write_atomically), or appended to (append_synced); a
    failure is logged once per change of error, and once more when writing works
    again, and the daemon goes on."""

    def __init__(self, path: str, what: str, level: int, mode: int = 0o644) -> None:
        self.path, self.what, self.level, self.mode = path, what, level, mode
        self.error: str | None = None

    def write(self, data: str | bytes) -> bool:
        try:
            write_atomically(self.path, data, self.mode)
        except OSError as e:
            return self._failed(e)
        return self._worked()

    def append(self, data: bytes) -> bool:
        try:
            append_synced(self.path, data)
        except OSError as e:
            return self._failed(e)
        return self._worked()

    def _failed(self, e: OSError) -> bool:
        if self.error != e.strerror:
            log.log(self.level, "%s %s: %s", self.what, self.path, e.strerror or e)
            self.error = e.strerror
        return False

    def _worked(self) -> bool:
        if self.error:
            log.warning("%s %s: written again", self.what, self.path)
            self.error = None
        return True


def write_atomically(path: str, data: str | bytes, mode: int = 0o644) -> None:
    """A temporary file in path's folder, fsync, rename over path, fsync the folder:
    a reader (or a crash) sees the old file or the new one, whole.  The mode defaults
    to 0644: node_exporter reads the statistics as its own user."""
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def append_synced(path: str, data: bytes) -> None:
    """data at the end of the file at path (which must exist), then fsync: once this
    returns, a crash keeps it.  A write that fails part way is cut off again where it
    can be, so what follows is never appended after half a record."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def read(path: str) -> stats.Statistics:
    """The statistics in a file the daemon wrote (OSError, stats.StatsError)."""
    return stats.parse_prometheus(Path(path).read_text(errors="replace"))
