"""`max-rate N`: at most N datagrams a second to each collector, without holding up a poll.

Strategy: each collector has a queue and a slot clock.  A datagram leaves when its
slot has come: the slot clock moves 1/N s per datagram and may lag the real clock by
at most BURST seconds, so a quiet collector may take BURST x N datagrams at once and a
burst (a flush, thousands of split records) drains at N a second.  offer() queues a
poll's datagrams and returns what may leave now; the daemon's loop sleeps no longer
than next_due() and calls release() then, so polls keep their schedule while a backlog
drains between them.  Order per collector is kept.  blocking() paces a Sender for
replay, which has no loop to come back to.  Monotonic seconds throughout.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from pflowbsd.config import Endpoint
from pflowbsd.shell.sender import Sender

BURST = 0.01  # seconds of datagrams a collector that was quiet may take at once


class Pacer:
    def __init__(self, rate: int) -> None:
        self.gap = 1.0 / rate if rate else 0.0
        self.queues: dict[Endpoint, deque[bytes]] = {}
        self.slots: dict[Endpoint, float] = {}  # the next datagram's slot, per collector
        self.held = 0  # datagrams queued now

    def offer(self, datagrams: dict[Endpoint, list[bytes]], now: float) -> dict[Endpoint, list[bytes]]:
        """Queue these behind what waits already; what may leave now."""
        for dst, items in datagrams.items():
            if items:
                self.queues.setdefault(dst, deque()).extend(items)
                self.held += len(items)
        return self.release(now)

    def release(self, now: float) -> dict[Endpoint, list[bytes]]:
        out: dict[Endpoint, list[bytes]] = {}
        for dst, queue in self.queues.items():
            slot = max(self.slots.get(dst, now - BURST), now - BURST)
            if not self.gap:
                slot = now  # unlimited: everything goes
            go = out.setdefault(dst, [])
            while queue and slot <= now:
                go.append(queue.popleft())
                slot += self.gap
            self.slots[dst] = slot
            self.held -= len(go)
        return out

    def set_rate(self, rate: int) -> None:
        """SIGHUP: another max-rate (0: unlimited; what waits then leaves at once)."""
        self.gap = 1.0 / rate if rate else 0.0

    def drain(self, send: Callable[[dict[Endpoint, list[bytes]]], None]) -> None:
        """Send everything queued, at the rate, sleeping in between (exit, replay)."""
        while (due := self.next_due()) is not None:
            time.sleep(max(0.0, due - time.monotonic()))
            send(self.release(time.monotonic()))

    def next_due(self) -> float | None:
        """When the next queued datagram may leave (None: nothing waits)."""
        return min((self.slots[d] for d, q in self.queues.items() if q), default=None)


def blocking(sender: Sender, rate: int) -> Sender:
    """The sender, its send() paced to `rate` by sleeping (replay); as it is for 0."""
    if not rate:
        return sender
    pacer, send = Pacer(rate), sender.send

    def paced(datagrams: dict[Endpoint, list[bytes]]) -> None:
        send(pacer.offer(datagrams, time.monotonic()))
        pacer.drain(send)

    sender.send = paced  # type: ignore[method-assign]
    return sender
