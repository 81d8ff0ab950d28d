"""Rate-limited logging: each kind of fault said at most once a minute, with a count.

The core returns what went wrong (parse errors, why a poll was partial, a pfctl
failure); the shell names each a kind and passes it here.  The first of a kind is
logged at once; later ones within PERIOD seconds are counted, and the next one after
it is logged with "(N more since)".  The clock is monotonic, read here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

log = logging.getLogger("pflowbsd")


class RateLog:
    PERIOD = 60.0

    def __init__(self) -> None:
        self.last: dict[str, float] = {}  # kind -> when it was last logged
        self.held: dict[str, int] = {}  # kind -> how many went unsaid since
        self.counts: dict[str, int] = {}  # kind -> how many in all

    def __call__(self, kind: str, level: int, message: str, *args: object) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        now = time.monotonic()
        at = self.last.get(kind)
        if at is not None and now - at < self.PERIOD:
            self.held[kind] = self.held.get(kind, 0) + 1
            return
        held = self.held.pop(kind, 0)
        self.last[kind] = now
        if held:
            message += f" ({held} more since)"
        log.log(level, message, *args)

    def forget(self, kind: str) -> None:
        """The fault is over: its next occurrence is logged at once."""
        self.last.pop(kind, None)
        self.held.pop(kind, None)


def report_poll(say: RateLog, errors: Sequence[tuple[int, str, str]],
                partial: str | None) -> None:
    """A poll's unparseable lines (line, text, reason: pf.states.ParseError) and why it
    was partial, if it was."""
    for line, text, reason in errors[:3]:
        kind = "unparseable: " + reason.split("'")[0].split(":")[0]
        say(kind, logging.WARNING, "pfctl -ss line %d: %s (skipped; the state counts as "
            "present): %.80s", line, reason[:120], text)
    if len(errors) > 3:
        say("unparseable: more", logging.WARNING, "pfctl -ss: %d more unparseable lines",
            len(errors) - 3)
    if partial:
        kind = "partial: " + "".join(c for c in partial if not c.isdigit())
        say(kind, logging.WARNING, "partial snapshot (%s): nothing expires this poll", partial)
