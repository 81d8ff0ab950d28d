"""Flows: one direction of one pf state, as pflow's copy_flow_data() sees it.

A state becomes a pair (flow1, flow2): flow1 initiator -> responder from counters[0],
flow2 its mirror from counters[1].  The key is the one pflow takes,
`st->key[st->direction == PF_IN ? PF_SK_WIRE : PF_SK_STACK]`: the packet as it first
reached pf, before any translation.  The other key, when it differs, rides along as the
post-NAT fields for the IPFIX NAT templates.  Times are kernel uptime in milliseconds.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import NamedTuple


class Clock(NamedTuple):
    """A moment in both frames the exporters need: epoch seconds and seconds since boot."""

    wall: float
    up: float


@dataclass(slots=True, frozen=True)
class Flow:
    af: int  # socket.AF_INET or socket.AF_INET6
    src: bytes  # packed address, 4 or 16 bytes
    dst: bytes
    src_port: int
    dst_port: int
    proto: int
    packets: int  # 64-bit; v5 keeps the low 32 bits, as htonl() does
    octets: int  # 64-bit; v5 splits above 0xffffffff
    start: int  # ms since boot: the state's creation
    end: int  # ms since boot: the state's last packet (st->expire)
    if_in: int = 0  # not known to userland
    if_out: int = 0
    tos: int = 0  # the creating rule's `tos` match value
    nat_src: bytes | None = None  # the other key, set only when the state was translated
    nat_dst: bytes | None = None
    nat_src_port: int = 0
    nat_dst_port: int = 0

    @property
    def natted(self) -> bool:
        return self.nat_src is not None


AF = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}
