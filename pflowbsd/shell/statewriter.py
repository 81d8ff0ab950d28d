"""The state file on disk (--state-file, PARAM state-file): read once at start, written
after each step that changed what the pipeline knows, before that step's datagrams go.

Strategy.  The bytes are pflowbsd.statefile's; this module only reads, checks where the
file belongs and writes it atomically (statsfile.write_atomically: temporary file,
fsync, rename, folder fsync; mode 0600).  save() is called by the sender's caller
before every send: it compares statefile.fingerprint() (counters, no scan) with the
last written one and writes only on a change.  Writing before sending is the order
that never duplicates: a SIGKILL between the two loses that step's datagrams (at most
one poll's, or one held buffer's), while the other order would send them again after
the restart.  At start a file that cannot be read (corrupt, truncated, foreign, of
another format version) or that belongs to another pflow instance is moved aside to
PATH.bad with one line; one of an earlier boot (the pf table is a new one) is left
unused and overwritten; the daemon starts fresh in each case.
"""

from __future__ import annotations

import logging
import os

from pflowbsd import statefile
from pflowbsd.config import Config
from pflowbsd.pipeline import Pipeline
from pflowbsd.shell.statsfile import STATE_DIR, AtomicFile, in_state_dir

log = logging.getLogger("pflowbsd")


def state_path(cfg: Config, state_dir: str = STATE_DIR) -> str | None:
    """`state-file PATH`; by default STATE_DIR/IF.state when STATE_DIR exists; `none`: off."""
    path = in_state_dir(cfg.state_file, f"{cfg.instance}.state", state_dir)
    return os.path.abspath(path) if path else None


class StateKeeper:
    def __init__(self, path: str) -> None:
        self.path = path
        self.written: tuple[object, ...] | None = None
        self.file = AtomicFile(path, "state file", logging.ERROR, 0o600)

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
        log.info("state file %s: %d states, %d held records, sequence %d restored%s",
                 self.path, len(saved.entries), held,
                 pipe.exporter.snapshot(records=False)[1 if pipe.cfg.pflowproto == 10 else 0],
                 "" if whole else f"; the exporter's words changed: its counters start "
                 f"over and {saved.held()} held records are dropped")
        return True

    def save(self, pipe: Pipeline) -> None:
        """The file, if what it would hold changed; a failure is logged once per change
        and the daemon goes on."""
        mark = statefile.fingerprint(pipe)
        if mark == self.written:
            return
        if self.file.write(statefile.encode(statefile.capture(pipe))):
            self.written = mark
