"""Flows: one direction of one pf state, as pflow's copy_flow_data() sees it.

A state becomes a pair (flow1, flow2): flow1 initiator -> responder from counters[0],
flow2 its mirror from counters[1].  The key is the one pflow takes,
`st->key[st->direction == PF_IN ? PF_SK_WIRE : PF_SK_STACK]`: the packet as it first
reached pf, before any translation.  The other key, when it differs, rides along as the
post-NAT fields for the IPFIX NAT templates.  Times are kernel uptime in milliseconds.

Between first sight and export a selected state is kept as an Entry: what export
needs (the pflow key, the other key when translated, counters, First and Last) packed
in one bytes object, so the tracker holds a few hundred bytes a state, not a parsed
record.  pack_entry() makes one from a parsed state; flow_pair() makes the flows.

if_index.  The kernel fills if_index_in/out from the interfaces the state's packets
used; userland sees only the interface a state was created on: an if-bound state's
first column, FreeBSD's `origif:` (State.orig_ifname).  if_indexes() puts that
interface's index in the direction the state's `in`/`out` says and leaves the other 0;
a floating state (`all`) with no origif gets 0 both ways, as do names the host's
interface table does not know.
"""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, NamedTuple

from pflowbsd.pf import record
from pflowbsd.pf.record import check_addresses

if TYPE_CHECKING:
    from pflowbsd.pf.record import State


class Clock(NamedTuple):
    """A moment in both frames the exporters need: epoch seconds and seconds since boot."""

    wall: float
    up: float


class Flow(NamedTuple):
    """One direction of a state.  A NamedTuple: made twice per expired state, and a
    frozen dataclass costs five times as much to make."""

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
    if_in: int = 0  # the state's creating interface, in its direction (if_indexes)
    if_out: int = 0
    tos: int = 0  # the creating rule's `tos` match value
    nat_src: bytes | None = None  # the other key, set only when the state was translated
    nat_dst: bytes | None = None
    nat_src_port: int = 0
    nat_dst_port: int = 0
    outbound: bool = False  # the state's direction is out (FreeBSD's NAT44 records need it)

    @property
    def natted(self) -> bool:
        return self.nat_src is not None


AF = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}

Entry = bytes
# The packed entry:
#   0 flags B (NATTED, INET6, OUTBOUND)   1 proto B
#   2 src_port H   4 dst_port H   6 first s i   10 last s i
#   14 packets[0] Q  22 packets[1] Q  30 bytes[0] Q  38 bytes[1] Q
#   46 if_index_in H  48 if_index_out H (before ENTRY.size: not part of entry_key)
#   50 src, dst (4 or 16 bytes each), then when NATTED the other key:
#      nat_src_port H, nat_dst_port H, nat_src, nat_dst
# First and Last are uptime seconds in 32 signed bits, clamped (clamp_time) to 68 years
# either side of boot.  An IPv4 entry is then 58 bytes, a 96-byte object where 64-bit
# times made it 112 (about half of a table's entries: 8 B a state).
ENTRY = struct.Struct("<BBHHiiQQQQHH")
NAT_PORTS = struct.Struct("<HH")
NATTED, INET6, OUTBOUND = 0x01, 0x02, 0x04  # OUTBOUND: st->direction == PF_OUT
TIME_MAX = (1 << 31) - 1  # First and Last are held in [-TIME_MAX, TIME_MAX]
_COUNTERS = 14  # packets[0], packets[1], bytes[0], bytes[1]
_QQQQ = struct.Struct("<QQQQ")
_FIRST = 6  # first, then last
_TIMES = struct.Struct("<ii")
_LAST = struct.Struct("<i")
_LAST_AT = _FIRST + _LAST.size
_KEY_HEAD = struct.Struct("<BBHH")  # flags, proto, src_port, dst_port
# pf/_fastbuild.c's pack_entry(), when the C builder imported (record.py) and packs the
# layout above: with ENTRY or a flag changed here and not there, every entry is Python's.
_fb = record._fastbuild
pack_c = (_fb.pack_entry if _fb is not None
           and (ENTRY.format, NATTED, INET6, OUTBOUND) == _fb.ENTRY_LAYOUT else None)
# Its change(): with_update() of a known state from its record's counter fields, read
# in C (sightings.py), under the same guard; None: the Python path alone.
change_c = _fb.change if pack_c is not None else None
# Its admit(): pack_entry() of a new state with its First and Last (sightings.py's first
# poll), under the same guard.
admit_c = _fb.admit if pack_c is not None else None
# Its admit_all(): the loop of admit() over a batch of new states, select() asked from C.
admit_all_c = _fb.admit_all if pack_c is not None else None
# Its changes(): change() over a poll's (tail, record) pairs in one C loop (sightings.py).
changes_c = _fb.changes if pack_c is not None else None
# Its gone(): the tracker's loop over the states a poll saw gone (Tracker._final's
# clamping of Last), in C.
gone_c = _fb.gone if pack_c is not None else None
# Its keys_of(): the tracker's {tail[-TRACK_KEY:]: tail} of the states a poll did not see.
keys_c = _fb.keys_of if pack_c is not None else None


def clamp_time(t: int) -> int:
    """An uptime second as an entry holds it (the C packer clamps alike)."""
    return -TIME_MAX if t < -TIME_MAX else TIME_MAX if t > TIME_MAX else t


def if_indexes(st: State, table: dict[str, int]) -> tuple[int, int]:
    """(if_index_in, if_index_out) from the interface the state was created on."""
    name = st.orig_ifname or st.ifname
    index = table.get(name, 0) if name != "all" else 0
    return (index, 0) if st.direction == "in" else (0, index)


def pack_entry(st: State, first: int, last: int, ifidx: tuple[int, int] = (0, 0)) -> Entry:
    """The entry of a parsed state; ValueError (as record.check_addresses words it)
    when an address is not one inet_pton() takes in its side's family: every address
    of the state is checked here, so the tracker need not check them twice.  The C
    builder packs the common case (the same bytes); the rest, and every refusal, is
    pack_entry_py()'s."""
    if pack_c is not None:
        out = pack_c(st, first, last, ifidx[0], ifidx[1])
        if out is not None:
            return out
    return pack_entry_py(st, first, last, ifidx)


def pack_entry_py(st: State, first: int, last: int, ifidx: tuple[int, int] = (0, 0)) -> Entry:
    """pack_entry() in Python, the reference."""
    # pflow's key, `key[direction == in ? WIRE : STACK]`, and the other one
    if st.direction == "in":
        af, src, dst, oaf, osrc, odst = (st.af, st.wire_src, st.wire_dst, st.stack_af,
                                         st.stack_src, st.stack_dst)
    else:
        af, src, dst, oaf, osrc, odst = (st.stack_af, st.stack_src, st.stack_dst, st.af,
                                         st.wire_src, st.wire_dst)
    fam = AF[af]
    # (the parser shares one Host for both keys where nothing was translated)
    natted = oaf == af and (osrc is not src or odst is not dst) and (
        osrc[:2] != src[:2] or odst[:2] != dst[:2])
    flags = ((NATTED if natted else 0) | (INET6 if af == "inet6" else 0)
             | (OUTBOUND if st.direction == "out" else 0))
    out = ENTRY.pack(flags, st.proto, src.port, dst.port, clamp_time(first), clamp_time(last),
                     st.packets[0], st.packets[1], st.bytes[0], st.bytes[1],
                     ifidx[0] & 0xFFFF, ifidx[1] & 0xFFFF)
    try:
        out += socket.inet_pton(fam, src.addr) + socket.inet_pton(fam, dst.addr)
        if natted:
            out += (NAT_PORTS.pack(osrc.port, odst.port) + socket.inet_pton(fam, osrc.addr)
                    + socket.inet_pton(fam, odst.addr))
        elif oaf != af:  # af-to: the other key, unpacked, still checked in its family
            socket.inet_pton(AF[oaf], osrc.addr)
            socket.inet_pton(AF[oaf], odst.addr)
    except OSError:
        check_addresses(st)  # names the first bad one, as the parser's check does
        raise ValueError("bad address") from None
    return out


def key_is(entry: Entry, src: str, sport: int, dst: str, dport: int) -> bool:
    """Whether the entry's pflow key is src:sport -> dst:dport (addresses as text): a
    known state's record checked cheaply (a bad address is simply not the key)."""
    flags, _proto, esport, edport = _KEY_HEAD.unpack_from(entry)
    if sport != esport or dport != edport:
        return False
    fam, n = (socket.AF_INET6, 16) if flags & INET6 else (socket.AF_INET, 4)
    o = ENTRY.size
    try:
        return (socket.inet_pton(fam, src) == entry[o:o + n]
                and socket.inet_pton(fam, dst) == entry[o + n:o + 2 * n])
    except (OSError, ValueError):  # ValueError: a NUL in the text
        return False


def with_update(entry: Entry, last: int, counters: tuple[int, int, int, int]) -> Entry:
    """The entry with a later Last and new counters (First kept): a changed state."""
    return (entry[:_LAST_AT] + _LAST.pack(clamp_time(last)) + _QQQQ.pack(*counters)
            + entry[_COUNTERS + _QQQQ.size:])


def entry_counters(entry: Entry) -> tuple[int, int, int, int]:
    """packets[0], packets[1], bytes[0], bytes[1]."""
    return _QQQQ.unpack_from(entry, _COUNTERS)


def with_span(entry: Entry, first: int, last: int, counters: tuple[int, int, int, int]) -> Entry:
    """The entry with other times and counters: one active-timeout span of the state."""
    return entry[:_FIRST] + _times(first, last) + _QQQQ.pack(*counters) + entry[_COUNTERS + _QQQQ.size:]


def entry_times(entry: Entry) -> tuple[int, int]:
    """First and Last, uptime seconds."""
    return _TIMES.unpack_from(entry, _FIRST)


def with_times(entry: Entry, first: int, last: int) -> Entry:
    return entry[:_FIRST] + _times(first, last) + entry[_FIRST + _TIMES.size:]


def _times(first: int, last: int) -> bytes:
    """First and Last as an entry holds them."""
    return _TIMES.pack(clamp_time(first), clamp_time(last))


def entry_key(entry: Entry) -> bytes:
    """What identifies the connection: everything but times and counters."""
    return entry[:_FIRST] + entry[ENTRY.size:]


def flow_pair(entry: Entry) -> tuple[Flow, Flow]:
    """flow1 initiator -> responder from counters[0], flow2 the mirror (copy_flow_data)."""
    flags, proto, sport, dport, first, last, p0, p1, b0, b1, ifin, ifout = ENTRY.unpack_from(entry)
    n = 16 if flags & INET6 else 4
    out = bool(flags & OUTBOUND)
    fam = socket.AF_INET6 if flags & INET6 else socket.AF_INET
    o = ENTRY.size
    src, dst = entry[o:o + n], entry[o + n:o + 2 * n]
    start, end = first * 1000, last * 1000
    if not flags & NATTED:
        return (Flow(fam, src, dst, sport, dport, proto, p0, b0, start, end, ifin, ifout,
                     outbound=out),
                Flow(fam, dst, src, dport, sport, proto, p1, b1, start, end, ifout, ifin,
                     outbound=out))
    nsport, ndport = NAT_PORTS.unpack_from(entry, o + 2 * n)
    o += 2 * n + NAT_PORTS.size
    nsrc, ndst = entry[o:o + n], entry[o + n:o + 2 * n]
    return (Flow(fam, src, dst, sport, dport, proto, p0, b0, start, end, ifin, ifout,
                 nat_src=nsrc, nat_dst=ndst, nat_src_port=nsport, nat_dst_port=ndport,
                 outbound=out),
            Flow(fam, dst, src, dport, sport, proto, p1, b1, start, end, ifout, ifin,
                 nat_src=ndst, nat_dst=nsrc, nat_src_port=ndport, nat_dst_port=nsport,
                 outbound=out))
