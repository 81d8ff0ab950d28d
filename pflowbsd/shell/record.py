"""Recording and replaying: what pfctl printed, kept so a problem can be run again.

A --record DIR holds `boottime`, the side files `timeouts`, `rules` and `info` (as
first read), and one `<unix-seconds>.states` per poll.  replay() runs the same pipeline
over such a folder as fast as it can, its snapshot names as the clock, sending each
due datagram at its exact deadline on that clock.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pflowbsd.config import Config
from pflowbsd.pf import timeouts
from pflowbsd.pf.states import parse_states
from pflowbsd.pipeline import PfSide, Pipeline
from pflowbsd.shell.sender import Sender

log = logging.getLogger("pflowbsd")


def read_optional(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None


class Recorder:
    """Writes what the daemon read from pfctl into a --record folder."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def start(self, boot: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "boottime").write_text(f"{boot}\n")

    def side(self, texts: dict[str, str | None]) -> None:
        """timeouts, rules, info: each kept as it was first read."""
        for name, text in texts.items():
            if text is not None and not (self.folder / name).exists():
                (self.folder / name).write_text(text)

    def snapshot(self, text: str, wall: float) -> None:
        (self.folder / f"{int(wall)}.states").write_text(text)


def replay(cfg: Config, folder: str) -> int:
    """Run the pipeline over a --record folder, its snapshot names as the clock."""
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
    pipe = Pipeline(cfg, side, boot)
    sender.send(pipe.start(snaps[0][0]).datagrams)
    for t, path in snaps:
        sender.send(pipe.due(t).datagrams)
        _up, out = pipe.poll(path.read_text(errors="replace"), t)
        sender.send(out.datagrams)
    sender.send(pipe.due(snaps[-1][0]).datagrams)
    sender.send(pipe.flush(snaps[-1][0]).datagrams)
    log.info("replay done: %d snapshots; %s", len(snaps), stats_line(pipe, sender))
    sender.close()
    return 0


def stats_line(pipe: Pipeline, sender: Sender) -> str:
    return " ".join(f"{k}={v}" for k, v in {**pipe.stats(), **sender.stats}.items())
