"""NetFlow v5 wire layout, as pflow(4) fills it (if_pflow.h struct pflow_header/pflow_flow).

Two layouts, each declared once; `pack_header` and `pack_record` are the kernel's
pflow_get_mbuf/pflow_sendout_v5 header and copy_flow_data, `split_octets` the >4 GiB loop
of export_pflow_if.  The buffering is the Exporter's (exporter.py).  Everything here is
pure: time comes in as a Clock.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator

from pflowbsd.export.pflow import PFLOW_ENGINE_ID as ENGINE_ID
from pflowbsd.export.pflow import PFLOW_ENGINE_TYPE as ENGINE_TYPE
from pflowbsd.export.pflow import PFLOW_MAXBYTES as MAXBYTES
from pflowbsd.export.pflow import PFLOW_MAXFLOWS, PFLOW_MINMTU, U32, UDPIP_HDRLEN
from pflowbsd.export.pflow import PFLOW_PROTO_5 as VERSION
from pflowbsd.flows import ENTRY, INET6, Clock, Entry, Flow

# struct pflow_header, 24 bytes:
#  0 version u16 | 2 count u16 | 4 uptime_ms u32 | 8 time_sec u32 | 12 time_nanosec u32
#  16 flow_sequence u32 | 20 engine_type u8 | 21 engine_id u8 | 22 reserved1 u8, reserved2 u8
HEADER = struct.Struct("!HHIIIIBBH")

# struct pflow_flow, 48 bytes:
#  0 src_ip | 4 dest_ip | 8 nexthop_ip | 12 if_index_in u16 | 14 if_index_out u16
#  16 flow_packets u32 | 20 flow_octets u32 | 24 flow_start u32 | 28 flow_finish u32
#  32 src_port u16 | 34 dest_port u16 | 36 pad1 | 37 tcp_flags | 38 protocol | 39 tos
#  40 src_as u16 | 42 dest_as u16 | 44 src_mask | 45 dest_mask | 46 pad2 u16
RECORD = struct.Struct("!4s4sIHHIIIIHHBBBBHHBBH")
SAMPLING_MODE_PACKET = 1  # sampling_interval's mode bits: deterministic 1-in-N packets

assert HEADER.size == 24 and RECORD.size == 48
assert HEADER.size + RECORD.size == PFLOW_MINMTU


def maxcount(mtu: int) -> int:
    """pflow_setmtu: records per datagram.  0 is possible at the minimum MTU; the
    `count >= maxcount` test in copy_flow_to_m then sends every record alone."""
    return min(PFLOW_MAXFLOWS, (mtu - HEADER.size - UDPIP_HDRLEN) // RECORD.size)


def pack_header(count: int, now: Clock, sequence: int, sampling: int = 0) -> bytes:
    """The header as it leaves: uptime and wall time are read at send time.

    sampling: 0 as pflow (reserved1/2), else the NetFlow v5 sampling_interval field,
    mode 01 (packet interval) in the top two bits and the interval in the low 14."""
    wall_s = int(now.wall)
    nsec = min(int((now.wall - wall_s) * 1e9), 999_999_999)
    return HEADER.pack(
        VERSION,
        count,
        (int(now.up) * 1000) & U32,
        wall_s & U32,
        nsec,
        sequence & U32,
        ENGINE_TYPE,
        ENGINE_ID,
        (SAMPLING_MODE_PACKET << 14 | sampling) if sampling else 0,
    )


def flow_times(flow: Flow) -> tuple[int, int]:
    """copy_flow_data's times of a flow (record_times())."""
    return record_times(flow.start, flow.end)


def record_times(start: int, end: int) -> tuple[int, int]:
    """copy_flow_data's guards on a flow's start and end (uptime ms): pfsync-imported
    states may predate boot or end before they start; pflow then 'pretends' they did so
    at boot (time 0)."""
    return (0 if start < 0 or start > end else start & U32), (0 if end < 0 else end & U32)


def pack_record(flow: Flow, octets: int | None = None) -> bytes:
    """One struct pflow_flow.  `octets` overrides flow.octets for the >4 GiB split."""
    start, finish = flow_times(flow)
    return _record(flow.src, flow.dst, flow.if_in & 0xFFFF, flow.if_out & 0xFFFF,
                   flow.packets & U32, (flow.octets if octets is None else octets) & U32,
                   start, finish, flow.src_port, flow.dst_port, flow.proto, flow.tos)


def entry_records(entry: Entry,
                  split: Callable[[int, int], list[tuple[int, int]]] | None = None
                  ) -> list[bytes] | None:
    """pack_record() of both flows of a tracker entry (flows.flow_pair's) without making
    them, for an IPv4 entry: with each direction under PFLOW_MAXBYTES one record per
    direction that has bytes; past it, those of each (bytes[0], bytes[1]) that `split`
    gives (the exporter's: split_octets, clamped and counted there).  None for the rest
    (IPv6, or a split with no `split`), which the caller takes through flow_pair()."""
    flags, proto, sport, dport, first, last, p0, p1, b0, b1, ifin, ifout = \
        ENTRY.unpack_from(entry)
    if flags & INET6:
        return None
    if b0 < MAXBYTES and b1 < MAXBYTES:
        packs = [(b0, b1)]
    elif split is None:
        return None
    else:
        packs = split(b0, b1)
    start, end = record_times(first * 1000, last * 1000)
    o = ENTRY.size
    src, dst = entry[o:o + 4], entry[o + 4:o + 8]
    out = []
    p0, p1 = p0 & U32, p1 & U32  # packets are not split: each record has them all
    for bytes0, bytes1 in packs:
        if bytes0:
            out.append(_record(src, dst, ifin, ifout, p0, bytes0, start, end, sport, dport,
                               proto, 0))
        if bytes1:
            out.append(_record(dst, src, ifout, ifin, p1, bytes1, start, end, dport, sport,
                               proto, 0))
    return out


def _record(src: bytes, dst: bytes, if_in: int, if_out: int, packets: int, octets: int,
            start: int, finish: int, sport: int, dport: int, proto: int, tos: int) -> bytes:
    """RECORD's fields in order; nexthop, tcp_flags, AS numbers and masks are 0 (pflow
    fills none of them)."""
    return _PACK(src, dst, 0, if_in, if_out, packets, octets, start, finish, sport, dport,
                 0, 0, proto, tos, 0, 0, 0, 0, 0)


_PACK = RECORD.pack

try:  # entry_records()' common case in C (export/_v5pack.c), if it built
    if os.environ.get("PFLOWBSD_PURE") == "1":
        raise ImportError("PFLOWBSD_PURE=1")
    from pflowbsd.export import _v5pack
except ImportError:
    _v5pack = None  # type: ignore[assignment]
# Its run(entries, i, out): entry_records() of entries[i:] appended to out, up to the
# first entry it leaves to Python (its index).  Only while it packs the layouts above.
run_c: Callable[[list[Entry], int, list[bytes]], int] | None = (
    _v5pack.run if _v5pack is not None
    and (RECORD.format, ENTRY.format, INET6, MAXBYTES) == _v5pack.LAYOUT else None)


def split_octets(bytes0: int, bytes1: int) -> Iterator[tuple[int, int]]:
    """export_pflow_if's >PFLOW_MAXBYTES loop: yields (bytes[0], bytes[1]) per pack.

    Fast path when both are below the limit; otherwise 0xffffffff chunks of direction 0,
    then of direction 1, then the two remainders.  Packets are not split (the caller
    repeats the full count in every record, as the kernel does)."""
    if bytes0 < MAXBYTES and bytes1 < MAXBYTES:
        yield bytes0, bytes1
        return
    while bytes0 > MAXBYTES:
        yield MAXBYTES, 0
        bytes0 -= MAXBYTES
    while bytes1 > MAXBYTES:
        yield 0, MAXBYTES
        bytes1 -= MAXBYTES
    yield bytes0, bytes1
