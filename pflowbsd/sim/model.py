"""The simulated pf's data: a state's two peers, the state, and what the workload
scripts may ask of the simulation (the Sim protocol), shared by the simulation
(simpf.py), its workload (traffic.py) and its printer (printer.py) without an import
between them going both ways.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from pflowbsd.pf.timeouts import DEFAULTS

Endpoint = tuple[str, int]  # (address, port)
Keys = tuple[Endpoint, Endpoint]  # initiator -> responder


@dataclass(slots=True)
class Peer:
    """One side of a state: its pf level and, for TCP, what print_seq() shows."""
    level: int = 0
    isn: int = 0  # seqlo before any data; 0 with window 1 until the peer is seen
    sent: int = 0  # sequence space used (payload, SYN, FIN)
    window: int = 1
    wscale: int = 0  # the raw byte: 0 = not negotiated


@dataclass(slots=True)
class SimState:
    id: int
    proto: int
    af: str  # inet / inet6
    direction: str  # in / out
    ifname: str
    wire: Keys  # ((src addr, port), (dst addr, port)), initiator -> responder
    stack: Keys
    rule: int
    pflow: bool
    created: int
    last: int = 0  # st->expire: the last packet
    removed: int | None = None
    klass: str = ""
    peers: tuple[Peer, Peer] = field(default_factory=lambda: (Peer(), Peer()))  # initiator, responder
    packets: list[int] = field(default_factory=lambda: [0, 0])
    bytes: list[int] = field(default_factory=lambda: [0, 0])

    @property
    def expires(self) -> int:
        return self.last + DEFAULTS[self.klass]


class Sim(Protocol):
    """What the scripts and the printer see of a SimPf."""

    now: int
    boot: int
    seed: int
    hostid: int
    states: dict[int, SimState]
    counters: dict[str, int]  # pf_status.fcounters by name

    def packet(self, st: SimState, side: int, flags: str, payload: int) -> None: ...


Script = Callable[[Sim, SimState, random.Random, int, int], Iterator[None]]
Endpoints = Callable[[random.Random, int, int], tuple[Keys, Keys]]  # (wire, stack)
# weight, proto, af, direction, rule, pflow, script, life (max s), down (max B),
# endpoints, service ports
Kind = tuple[int, int, str, str, int, bool, Script, int, int, Endpoints, tuple[int, ...]]
