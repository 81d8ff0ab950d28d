"""The state file on disk (--state-file, PARAM state-file): read once at start, written
after each step that changed what the pipeline knows, before that step's datagrams go.

Strategy.  The bytes are pflowbsd.statefile's; this module only reads, checks where the
file belongs and writes it.  save() is called by the sender's caller before every
send.  It writes nothing when nothing changed (statefile.fingerprint(): counters, no
scan; and the tracker's take_changes() empty).  Otherwise it appends a delta, what the
step changed, and fsyncs it (statsfile.append_synced): a cost that follows what changed,
not the table.  A base, the whole of it, is written atomically instead (statsfile.
write_atomically: temporary file, fsync, rename, folder fsync; mode 0600) on the first
save, after a failed write, for another tracker, when the base is smaller than
WHOLE_BELOW (a whole small file costs what a delta does, and is one piece to read), and
when the deltas would grow past COMPACT_SHARE of the base (they are read at every start,
and the file's size stays under 1 + COMPACT_SHARE times the table's).  Writing before
sending is the order that never duplicates: a SIGKILL between the two loses that step's
datagrams (at most one poll's, or one held buffer's), while the other order would send
them again after the restart.  A crash while a delta is appended leaves it torn: at the
next start it is dropped (one line) and the states it would have changed are still the
file's, so those the step saw gone are exported then, once.  At start a file that cannot
be read (corrupt, truncated, foreign, of another format version) or that belongs to
another pflow instance is moved aside to PATH.bad with one line; one of an earlier boot
(the pf table is a new one) is left unused and overwritten; the daemon starts fresh in
each case.
"""

from __future__ import annotations

import logging
import os

from pflowbsd import statefile
from pflowbsd.config import Config
from pflowbsd.pipeline import Pipeline
from pflowbsd.shell.statsfile import STATE_DIR, AtomicFile, in_state_dir
from pflowbsd.tracker import Tracker

log = logging.getLogger("pflowbsd")
COMPACT_SHARE = 0.5  # deltas past this share of the base's bytes: a new base
WHOLE_BELOW = 64 << 10  # bytes: a base smaller than this is rewritten whole every time


def state_path(cfg: Config, state_dir: str = STATE_DIR) -> str | None:
    """`state-file PATH`; by default STATE_DIR/IF.state when STATE_DIR exists; `none`: off."""
    path = in_state_dir(cfg.state_file, f"{cfg.instance}.state", state_dir)
    return os.path.abspath(path) if path else None


class StateKeeper:
    def __init__(self, path: str, share: float = COMPACT_SHARE,
                 whole_below: int = WHOLE_BELOW) -> None:
        self.path, self.share, self.whole_below = path, share, whole_below
        self.written: tuple[object, ...] | None = None
        self.file = AtomicFile(path, "state file", logging.ERROR, 0o600)
        # What is on disk: the tracker whose changes it follows (None: a base is due),
        # the base's size and CRC, the deltas after it and their bytes.
        self.tracker: Tracker | None = None
        self.base_size = self.base_crc = self.deltas = self.delta_bytes = 0

    def _aside(self, why: str) -> None:
        bad = self.path + ".bad"
        try:
            os.replace(self.path, bad)
            log.error("state file %s: %s; moved aside to %s, starting fresh", self.path, why, bad)
        except OSError as e:
            log.error("state file %s: %s; not moved aside (%s), starting fresh", self.path,
                      why, e.strerror or e)

    def load(self, pipe: Pipeline) -> bool:
        """What the file holds, into a new pipeline (False: starting fresh)."""
        self.tracker = None  # the next save writes a base, whatever this finds
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            log.info("state file %s: none yet, starting fresh", self.path)
            return False
        except OSError as e:
            log.error("state file %s: %s; starting fresh", self.path, e.strerror or e)
            return False
        try:
            instance, boot = statefile.header(data)
            if instance != pipe.cfg.instance:
                self._aside(f"written by {instance}, not {pipe.cfg.instance}")
                return False
            if boot != pipe.boot:
                log.warning("state file %s: of an earlier boot (boot time %d, now %d): pf's "
                            "table is a new one, starting fresh", self.path, boot, pipe.boot)
                return False
            saved = statefile.decode(data)
            whole = statefile.restore(pipe, saved)
        except statefile.StateFileError as e:
            self._aside(str(e))
            return False
        held = saved.held() if whole else 0
        log.log(logging.WARNING if saved.torn else logging.INFO,
                "state file %s: %d states, %d held records, sequence %d restored%s%s",
                self.path, len(saved.entries), held,
                pipe.exporter.snapshot(records=False)[1 if pipe.cfg.pflowproto == 10 else 0],
                "" if whole else f"; the exporter's words changed: its counters start "
                f"over and {saved.held()} held records are dropped",
                f"; the last write was torn ({saved.torn}: a crash while it was written), "
                "dropped" if saved.torn else "")
        return True

    def save(self, pipe: Pipeline) -> None:
        """The file, if what it would hold changed: a delta, or a base when one is due;
        a failure is logged once per change and the daemon goes on (and the next save
        writes a base: the changes taken are on disk only in one)."""
        mark = statefile.fingerprint(pipe)
        tracker = pipe.tracker
        if tracker is self.tracker:
            tails, keys = tracker.take_changes()
            if not tails and not keys and mark == self.written:
                return
            if self.base_size >= self.whole_below:
                data = statefile.encode_delta(statefile.changes(pipe, tails, keys),
                                              self.deltas + 1, self.base_crc)
                if self.delta_bytes + len(data) <= self.share * self.base_size:
                    if self.file.append(data):
                        self.written, self.deltas = mark, self.deltas + 1
                        self.delta_bytes += len(data)
                    else:
                        self.tracker = None
                    return
        tracker.take_changes()  # from here on, the changes since this base
        data = statefile.encode(statefile.capture(pipe))
        if self.file.write(data):
            self.written, self.tracker = mark, tracker
            self.base_size, self.base_crc = len(data), statefile.base_crc(data)
            self.deltas = self.delta_bytes = 0
        else:
            self.tracker = None
