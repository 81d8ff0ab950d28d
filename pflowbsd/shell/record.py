"""Recording and replaying: what pfctl printed, kept so a problem can be run again.

A --record DIR holds `boottime`, the side files `timeouts`, `rules` and `info` (as
first read), and per poll `<unix-seconds>.states` with the `-si -v` of the same poll
as `<unix-seconds>.info` (a second poll in the same second: `<s>.<n>.states`).
replay() runs the same pipeline over such a folder as fast as it can, its snapshot
names as the clock, sending each due datagram at its exact deadline on that clock; a
snapshot with its own `.info` is judged whole or partial against that poll's
`current entries`, as live (older recordings, one `info` for the run, replay as before).

The daemon usually runs as root, so the folder is the operator's alone: it must be
owned by the user we run as and writable by no one else (created 0700 if missing), it
is opened once without following a symlink, and every file is made inside it with
O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600.  `record-max` bounds what it holds: the oldest
snapshots go first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from pflowbsd import stats
from pflowbsd.config import Config
from pflowbsd.pf import timeouts
from pflowbsd.pf.ifaces import IfconfigError, parse_ifconfig
from pflowbsd.pf.states import parse_states
from pflowbsd.pipeline import Output, PfSide, Pipeline
from pflowbsd.shell import pacer
from pflowbsd.shell.pcapout import PcapWriter
from pflowbsd.shell.ratelog import RateLog, report_poll
from pflowbsd.shell.sender import Sender
from pflowbsd.shell.statewriter import StateKeeper
from pflowbsd.shell.statsfile import Meter, StatsFile

log = logging.getLogger("pflowbsd")
SIDE_FILES = ("timeouts", "rules", "info")


class RecordError(OSError):
    """A --record folder that is not safe to write into (one line, no errno)."""


def read_optional(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None


def _snapshot_key(name: str) -> tuple[int, int] | None:
    """`<s>.states` -> (s, 0), `<s>.<n>.states` -> (s, n); None for other names."""
    stem = name[:-len(".states")] if name.endswith(".states") else ""
    parts = stem.split(".")
    if 1 <= len(parts) <= 2 and all(p.isascii() and p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1]) if len(parts) == 2 else 0
    return None


class Recorder:
    """Writes what the daemon read from pfctl into a --record folder."""

    writer: int | None = None  # -u USER: the uid that writes it after the drop

    def __init__(self, folder: str, max_bytes: int = 1 << 30) -> None:
        self.folder, self.max_bytes = folder, max_bytes
        self.fd = self._open(folder)
        self.held: list[tuple[tuple[int, int], str, int]] = []  # (key, stem, bytes), oldest first
        for name in os.listdir(self.fd):
            key = _snapshot_key(name)
            if key is not None:
                stem = name[:-len(".states")]
                self.held.append((key, stem, self._size(name) + self._size(stem + ".info")))
        self.held.sort()
        self.total = sum(n for _, _, n in self.held)

    @staticmethod
    def _open(folder: str) -> int:
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as e:
            raise RecordError(f"--record {folder}: {e.strerror or 'cannot open'}"
                              " (a directory, not a symlink)") from None
        st = os.fstat(fd)
        why = None
        if st.st_uid not in (os.geteuid(), Recorder.writer):
            why = f"owned by uid {st.st_uid}, not by uid {os.geteuid()} that pflowbsd runs as"
        elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            why = f"writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
        if why:
            os.close(fd)
            raise RecordError(f"--record {folder}: {why}")
        return fd

    def _size(self, name: str) -> int:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_size
        except FileNotFoundError:
            return 0

    def _write(self, name: str, text: str, replace: bool = False) -> int:
        """A new file `name` holding text (FileExistsError unless replace); its size."""
        if replace:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self.fd)
        data = text.encode(errors="surrogateescape")
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                     dir_fd=self.fd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return len(data)

    def start(self, boot: int) -> None:
        self._write("boottime", f"{boot}\n", replace=True)

    def side(self, texts: dict[str, str | None]) -> None:
        """timeouts, rules, info: each kept as it was first read."""
        for name, text in texts.items():
            if text is not None:
                with contextlib.suppress(FileExistsError):
                    self._write(name, text)

    def snapshot(self, text: str, wall: float, info: str | None = None) -> None:
        """One poll's `-ss -vv` and, when it was read, its `-si -v`."""
        key, stem = (int(wall), 0), str(int(wall))
        while True:
            try:
                size = self._write(stem + ".states", text)
                break
            except FileExistsError:
                key = (key[0], key[1] + 1)
                stem = f"{key[0]}.{key[1]}"
        if info is not None:
            with contextlib.suppress(FileExistsError):
                size += self._write(stem + ".info", info)
        self.held.append((key, stem, size))
        self.total += size
        self.prune()

    def interfaces(self, text: str, wall: float) -> None:
        """`ifconfig -a` (if_index): DIR/ifconfig as first read, then `<t>.ifconfig`
        each time its names or indexes change (not its counters), so a replay resolves
        the same names to the same indexes."""
        try:
            seen: object = [(i.name, i.index) for i in parse_ifconfig(text)]
        except IfconfigError:
            seen = text
        if seen == getattr(self, "_ifconfig", None):
            return
        self._ifconfig = seen
        with contextlib.suppress(FileExistsError):
            self._write("ifconfig" if not self._size("ifconfig") else f"{int(wall)}.ifconfig", text)

    def prune(self) -> None:
        """record-max: the oldest snapshots go until the folder holds no more (the
        newest always stays)."""
        while self.total > self.max_bytes and len(self.held) > 1:
            _key, stem, size = self.held.pop(0)
            for name in (stem + ".states", stem + ".info"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=self.fd)
            self.total -= size

    def close(self) -> None:
        os.close(self.fd)


def replay(cfg: Config, folder: str, capture: str | None = None) -> int:
    """Run the pipeline over a --record folder, its snapshot names as the clock; with
    `capture` (-w), every datagram sent also goes to that pcap file.  With `state-file
    PATH` (none by default here) it is read at start and written before each send, as
    live: a recording replayed in two parts sends what one replay sends."""
    d = Path(folder)
    found = ((_snapshot_key(p.name), p) for p in d.glob("*.states"))
    snaps = [(k[0], p) for k, p in sorted((k, p) for k, p in found if k is not None)]
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
    sender = pacer.blocking(Sender(cfg.flowdst, cfg.flowsrc), cfg.max_rate)
    if capture:
        sender.taps.append(PcapWriter(capture))
    meter = Meter(cfg.instance, snaps[0][0])  # the statistics, on the recording's clock
    meter.collectors(cfg.flowdst)
    sender.taps.append(meter)
    pipe = Pipeline(cfg, side, boot)
    pipe.interfaces_read(read_optional(d / "ifconfig"))
    keeper = StateKeeper(os.path.abspath(cfg.state_file)) \
        if cfg.state_file not in (None, "none") else None
    if keeper:
        keeper.load(pipe)

    def send(out: Output) -> None:
        if keeper:
            keeper.save(pipe)  # before sending: a crash loses, never repeats
        sender.send(out.datagrams)

    send(pipe.start(snaps[0][0]))
    say = RateLog()
    for t, path in snaps:
        send(pipe.due(t))
        pipe.interfaces_read(read_optional(d / f"{t}.ifconfig"))
        info = read_optional(path.with_suffix(".info"))
        entries = timeouts.parse_info(info).states if info is not None else None
        up, out = pipe.poll(path.read_text(errors="replace"), t, entries=entries)
        report_poll(say, up.errors, pipe.partial_reason)
        meter.polled("partial" if up.partial else "ok", None, None, t)
        send(out)
    send(pipe.due(snaps[-1][0]))
    send(pipe.flush(snaps[-1][0]))
    st = meter.statistics(pipe)
    log.info("replay done: %d snapshots; %s", len(snaps), stats.line(st))
    if cfg.stats_file not in (None, "none"):  # only when asked: not the live default
        StatsFile(cfg.stats_file).write(st)
    sender.close()
    return 0
