"""The UDP side: one connected socket per flowdst, all bound to the one flowsrc.

Each collector gets its own datagrams (the pipeline says which) and never holds up the
others: a send that fails is counted and logged once per change of error, not per
datagram.  A connected UDP socket reports a refusal (ICMP port unreachable) on the send
after the one that caused it: so a send that fails with ECONNREFUSED is tried once
more (the error was the last datagram's, and counts as its loss; this one may well
arrive).  Sends alternate between failing and "working" while a collector is
down, so it is called back only after a quiet spell.  The counters outlive a new
Sender (a SIGHUP that changes flowdst): pass the old one's stats.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from typing import Protocol

from pflowbsd.config import Endpoint, endpoint_text

log = logging.getLogger("pflowbsd")


# What to do, by the errno a flowsrc bind or flowdst connect failed with.
HINTS = {errno.EADDRINUSE: ": another program has that port: stop it, or give flowsrc "
                           "another port (or none)",
         errno.EADDRNOTAVAIL: ": not an address of this host: give flowsrc one of its own",
         errno.EACCES: ": a port below 1024 needs root: give flowsrc another port",
         errno.ENETUNREACH: ": no route to the collector: check flowdst and the routes"}


class Tap(Protocol):
    def sent(self, src: Endpoint, dst: Endpoint, datagram: bytes) -> None: ...
    def failed(self, dst: Endpoint) -> None: ...


class Sender:
    RECOVERED_AFTER = 60.0  # seconds without an error before a collector counts as back

    def __init__(self, dsts: list[Endpoint], src: Endpoint | None = None,
                 stats: dict[str, int] | None = None) -> None:
        self.sockets: list[tuple[Endpoint, socket.socket]] = []
        self.errors: dict[Endpoint, str | None] = {}
        self.failed_at: dict[Endpoint, float] = {}
        self.stats = stats if stats is not None else dict(datagrams=0, bytes=0, send_errors=0)
        self.taps: list[Tap] = []  # told of each datagram sent or not (statistics, -w)
        for dst in dsts:
            fam = socket.AF_INET6 if ":" in dst[0] else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setblocking(False)
            try:
                if src and (":" in src[0]) == (fam == socket.AF_INET6):
                    if src[1]:  # one source port shared by every collector's socket
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        if hasattr(socket, "SO_REUSEPORT"):
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    s.bind((src[0], src[1]))
                s.connect((dst[0], dst[1]))
            except OSError as e:
                s.close()
                self.close()
                source = (endpoint_text(*src) if src[1] else src[0]) if src else "any"
                err = OSError(f"flowsrc {source} to flowdst {endpoint_text(*dst)}: "
                              f"{(e.strerror or type(e).__name__).lower()}"
                              + HINTS.get(e.errno or 0, ""))  # one line, no [Errno N]
                err.errno = e.errno
                raise err from None
            self.sockets.append((dst, s))
            self.errors[dst] = None

    def send(self, datagrams: dict[Endpoint, list[bytes]]) -> None:
        """Each flowdst its own datagrams, in order."""
        for dst, s in self.sockets:
            for d in datagrams.get(dst, ()):
                try:
                    try:
                        s.send(d)
                    except ConnectionRefusedError as e:  # an earlier datagram's ICMP error:
                        self.stats["send_errors"] += 1  # that one was lost; this one goes
                        self._fail(dst, e)
                        for tap in self.taps:
                            tap.failed(dst)
                        s.send(d)
                    self.stats["datagrams"] += 1
                    self.stats["bytes"] += len(d)
                    self._ok(dst)
                except OSError as e:
                    self.stats["send_errors"] += 1
                    self._fail(dst, e)
                    for tap in self.taps:
                        tap.failed(dst)
                else:
                    for tap in self.taps:
                        tap.sent(s.getsockname()[:2], dst, d)

    def _ok(self, dst: Endpoint) -> None:
        if self.errors[dst] and time.monotonic() - self.failed_at[dst] > self.RECOVERED_AFTER:
            log.warning("flowdst %s: sending again", endpoint_text(*dst))
            self.errors[dst] = None

    def _fail(self, dst: Endpoint, e: OSError) -> None:
        msg = errno.errorcode.get(e.errno or 0, str(e))
        self.failed_at[dst] = time.monotonic()
        if self.errors[dst] != msg:
            log.warning("flowdst %s: %s", endpoint_text(*dst), e.strerror or type(e).__name__)
            self.errors[dst] = msg

    def close(self) -> None:
        for _, s in self.sockets:
            s.close()
