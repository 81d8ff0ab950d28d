"""The simulated pf's workload: which connections arrive and what each one sends.

Strategy.  A connection is a kind (KINDS: weight, protocol, family, direction, rule,
whether its rule has `pflow`, script, endpoints) and a script: a generator that sends
packets through `sim.packet` and yields once per simulated second, so SimPf runs every
live state one step per tick.  Endpoints come from fixed documentation address pools
with NAT/rdr translations as pf would make them.  Randomness is the `rng` each call is
given (seeded per state by SimPf), never a global one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from pflowbsd.pf.timeouts import ESTABLISHED
from pflowbsd.sim.model import Keys, Kind, Sim, SimState

MSS = 1400
NAT_ADDR = "203.0.113.1"


# --- connection scripts: generators, one step per tick ------------------------------

def _exchange(sim: Sim, st: SimState, rng: random.Random, up: int, down: int) -> None:
    """A request of `up` bytes and a response of `down`, in MSS segments, acked."""
    for side, size in ((0, up), (1, down)):
        segs = max(1, -(-size // MSS))
        for i in range(segs):
            sim.packet(st, side, "A", min(MSS, size - i * MSS) if size else 0)
        for _ in range(segs // 2 + 1):
            sim.packet(st, 1 - side, "A", 0)


def _tcp(sim: Sim, st: SimState, rng: random.Random, life: int, down: int) -> Iterator[None]:
    sim.packet(st, 0, "S", 0)
    if rng.random() < 0.05:  # nobody answers: two retransmits, then pf gives up
        for wait in (1, 2):
            for _ in range(wait):
                yield
            sim.packet(st, 0, "S", 0)
        return
    for _ in range(rng.choice((0, 0, 0, 1, 2))):
        yield
    sim.packet(st, 1, "SA", 0)
    sim.packet(st, 0, "A", 0)
    for _ in range(life):
        if rng.random() < 0.6:
            _exchange(sim, st, rng, rng.randint(80, 900), rng.randint(0, down))
        yield
    end = rng.random()
    if end < 0.1:  # the server resets
        sim.packet(st, 1, "RA", 0)
    elif end < 0.2:  # half-close: the server keeps sending for a while
        sim.packet(st, 0, "FA", 0)
        sim.packet(st, 1, "A", 0)
        for _ in range(rng.randint(1, 8)):
            yield
            _exchange(sim, st, rng, 0, rng.randint(1000, down + 1000))
        sim.packet(st, 1, "FA", 0)
        sim.packet(st, 0, "A", 0)
    else:
        sim.packet(st, 0, "FA", 0)
        sim.packet(st, 1, "FA", 0)
        sim.packet(st, 0, "A", 0)


def _udp(sim: Sim, st: SimState, rng: random.Random, life: int, down: int) -> Iterator[None]:
    sim.packet(st, 0, "", rng.randint(30, 60))
    if down == 0:  # a DNS query and its answer
        sim.packet(st, 1, "", rng.randint(60, 400))
        return
    for _ in range(life):
        yield
        if rng.random() < 0.7:
            for _ in range(rng.randint(1, 6)):
                sim.packet(st, 0, "", rng.randint(40, 1200))
            for _ in range(rng.randint(1, 12)):
                sim.packet(st, 1, "", rng.randint(40, min(1350, down)))


def _ping(sim: Sim, st: SimState, rng: random.Random, life: int, down: int) -> Iterator[None]:
    for i in range(max(1, life)):  # ping(8)'s 56 data bytes, once a second
        if i:
            yield
        sim.packet(st, 0, "", 56)
        if rng.random() < 0.95:
            sim.packet(st, 1, "", 56)


def _long_lived(sim: Sim, st: SimState, rng: random.Random, life: int,
                down: int) -> Iterator[None]:
    """An ssh session that was open before the run and outlives it."""
    for peer, isn, win in zip(st.peers, (3466395587, 1285282327), (8388480, 65792)):
        peer.level, peer.isn, peer.sent, peer.window = ESTABLISHED, isn, 1, win
    st.packets[:], st.bytes[:] = [48211, 60117], [4201183, 79532211]
    st.last, st.klass = sim.now - 2, "tcp.established"
    while True:
        if rng.random() < 0.5:
            _exchange(sim, st, rng, rng.randint(36, 200), rng.randint(36, 3000))
        yield


# --- endpoints ------------------------------------------------------------------------

_LAN = [f"10.0.0.{i}" for i in range(2, 60)]
_LAN6 = [f"2001:db8:1::{i:x}" for i in range(0x10, 0x40)]
_NET = ["93.184.216.34", "198.51.100.7", "198.51.100.23", "192.0.2.80", "198.51.100.200"]
_NET6 = ["2001:db8:ffff::1", "2001:db8:beef::443", "2001:db8:ffff:0:1::5"]
_RESOLVERS = ["9.9.9.9", "1.1.1.1"]


def _client_port(rng: random.Random, proto: int) -> int:
    return rng.randint(1, 65535) if proto in (1, 58) else rng.randint(32768, 60999)


# Endpoints of a new state: (wire, stack), each ((src, port), (dst, port)) initiator first.
# ICMP "ports" are the echo id and the type (8, or 128 for ICMPv6).
def _nat_to(rng: random.Random, proto: int, service: int) -> tuple[Keys, Keys]:
    stack = ((rng.choice(_LAN), _client_port(rng, proto)), (rng.choice(_NET), service))
    return ((NAT_ADDR, rng.randint(50001, 65535)), stack[1]), stack


def _self(rng: random.Random, proto: int, service: int) -> tuple[Keys, Keys]:
    # the firewall's own resolver asking upstream
    keys = ((NAT_ADDR, _client_port(rng, proto)), (rng.choice(_RESOLVERS), service))
    return keys, keys


def _inet6_out(rng: random.Random, proto: int, service: int) -> tuple[Keys, Keys]:
    keys = ((rng.choice(_LAN6), _client_port(rng, proto)), (rng.choice(_NET6), service))
    return keys, keys


def _rdr_to(rng: random.Random, proto: int, service: int) -> tuple[Keys, Keys]:
    client = (rng.choice(_NET), _client_port(rng, proto))
    return (client, (NAT_ADDR, service)), (client, ("10.0.0.10", 8080))


def _inet6_in(rng: random.Random, proto: int, service: int) -> tuple[Keys, Keys]:
    keys = ((rng.choice(_NET6), _client_port(rng, proto)), (_LAN6[0], service))
    return keys, keys


def _ssh_in(rng: random.Random, proto: int, service: int) -> tuple[Keys, Keys]:
    keys = (("198.51.100.23", 51234), (NAT_ADDR, service))
    return keys, keys


# kind -> weight, proto, af, direction, rule, pflow, script, life (max s), down (max B),
#         endpoints, service ports.  Rule 5 (DNS) has no `pflow`: a share not exported.
KINDS: dict[str, Kind] = {
    "web nat-to": (30, 6, "inet", "out", 4, True, _tcp, 40, 60000, _nat_to, (443, 443, 80)),
    "web inet6": (14, 6, "inet6", "out", 3, True, _tcp, 40, 60000, _inet6_out, (443, 80)),
    "www rdr-to": (10, 6, "inet", "in", 7, True, _tcp, 15, 20000, _rdr_to, (80,)),
    "www inet6 in": (5, 6, "inet6", "in", 8, True, _tcp, 15, 20000, _inet6_in, (443,)),
    "dns": (16, 17, "inet", "out", 5, False, _udp, 0, 0, _self, (53,)),
    "quic nat-to": (8, 17, "inet", "out", 4, True, _udp, 30, 1350, _nat_to, (443, 123)),
    "quic inet6": (5, 17, "inet6", "out", 3, True, _udp, 30, 1350, _inet6_out, (443,)),
    "ping nat-to": (7, 1, "inet", "out", 9, True, _ping, 8, 0, _nat_to, (8,)),
    "ping6": (5, 58, "inet6", "out", 3, True, _ping, 8, 0, _inet6_out, (128,)),
}
# The one state open before the run: as a KINDS entry, with its name for the weight.
LONG_LIVED = ("ssh", 6, "inet", "in", 2, True, _long_lived, 0, 0, _ssh_in, (22,))
