"""IPFIX (pflowproto 10) wire layout, as pflow(4) fills it (if_pflow.h, copy_flow_ipfix_*).

Every message carries exactly one set: the template set (id 2) alone, or one data set
whose id is its template's.  Templates are a table keyed by id; each names its fields
(IE id, length) in record order and the struct.Struct that packs a record in that order,
so the template we announce and the bytes we write cannot drift apart.

Template ids:

  =====  ==========  ======  ==========================================================
  id     family      record  use
  =====  ==========  ======  ==========================================================
  256    IPv4        54      every IPv4 state (the kernel's PFLOW_IPFIX_TMPL_IPV4_ID)
  257    IPv6        78      every IPv6 state (the kernel's PFLOW_IPFIX_TMPL_IPV6_ID)
  258    IPv4 + NAT  66      translated IPv4 states, only with nat=True
  259    IPv6 + NAT  114     translated IPv6 states, only with nat=True
  =====  ==========  ======  ==========================================================

The NAT templates add postNATSource/DestinationIPv4Address (225/226) or IPv6Address
(281/282) and postNAPTSource/DestinationTransportPort (227/228) after the times, in the
order of OpenBSD's Nov 2025 NAT template.  That kernel numbers IPv4-NAT 257 and moves IPv6
to 258; we keep 256/257 as every released pflow(4) sends them and put NAT at 258/259.

Layouts (`ipfix-layout`), each a table template id -> Template (LAYOUTS), checked
against the kernel sources named:

  openbsd      256 IPv4, 257 IPv6 (+ our 258/259 NAT with `nat on`): OpenBSD
               sys/net/if_pflow.h 1.13 (2015) and 1.23, if_pflow.c 1.111 (2025-07-07)
               `pflow_clone_create`, `copy_flow_ipfix_{4,6}_data`.
  openbsd-nat  256 IPv4, 257 IPv4-NAT (16 fields, 66 bytes, the order above), 258 IPv6;
               maxcount of every IPv4 buffer from the 66-byte record.  OpenBSD
               if_pflow.h 1.24 / if_pflow.c 1.112 (2025-11-13): no C copy of these was
               found; the only source read is a Rust port carrying their RCS ids
               (pflow-semantics.md §3.3).  Unverified against C.
  freebsd      256 IPv4, 257 IPv6, 258 NAT44 events (RFC 8158: 11 fields, 34 bytes), two
               records (natEvent 4 create at the creation, 5 delete at the last packet)
               after each IPv4 record of a translated state.  FreeBSD sys/net/pflow.h
               (its RCS line still says OpenBSD if_pflow.h 1.19; struct
               pflow_ipfix_tmpl_nat44, pflow_ipfix_nat4) and sys/netpfil/pf/pflow.c
               @082f9a6e (`copy_nat_ipfix_4_data`, `pflow_pack_flow_ipfix`,
               `pflow_calc_mtu`).  FreeBSD's millisecond times are not reproduced: pfctl
               prints whole seconds.

Sampling (`sampling N`, ours): an options template (set id 3, OPTIONS_ID, scope
observationDomainId) with samplingPacketInterval, and its one data record, ride in the
template message after the template set.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable
from typing import NamedTuple

from pflowbsd.export.pflow import PFLOW_IPFIX_TMPL_IPV4_ID as TMPL_IPV4_ID
from pflowbsd.export.pflow import PFLOW_IPFIX_TMPL_IPV6_ID as TMPL_IPV6_ID
from pflowbsd.export.pflow import PFLOW_IPFIX_TMPL_SET_ID as TMPL_SET_ID
from pflowbsd.export.pflow import PFLOW_MAXFLOWS, U32, U64, UDPIP_HDRLEN
from pflowbsd.export.pflow import PFLOW_PROTO_10 as VERSION
from pflowbsd.flows import Clock, Flow

TMPL_IPV4_NAT_ID, TMPL_IPV6_NAT_ID = 258, 259  # ours, not the kernel's: see the table above

# struct pflow_v10_header, 16 bytes:
#  0 version u16 | 2 length u16 | 4 time_sec u32 (export time) | 8 flow_sequence u32
#  12 observation_dom u32
HEADER = struct.Struct("!HHIII")
# struct pflow_set_header / pflow_tmpl_hdr / pflow_tmpl_fspec, 4 bytes each:
#  set: 0 set_id u16 | 2 set_length u16;  template: 0 tmpl_id u16 | 2 field_count u16;
#  field specifier: 0 field_id u16 | 2 len u16 (enterprise bit always 0)
SET_HEADER = struct.Struct("!HH")
TMPL_HEADER = struct.Struct("!HH")
FIELD_SPEC = struct.Struct("!HH")

# IANA IPFIX information elements used here (PFIX_IE_* in if_pflow.h, plus NAT ones).
IE_octetDeltaCount = 1
IE_packetDeltaCount = 2
IE_protocolIdentifier = 4
IE_ipClassOfService = 5
IE_sourceTransportPort = 7
IE_sourceIPv4Address = 8
IE_ingressInterface = 10
IE_destinationTransportPort = 11
IE_destinationIPv4Address = 12
IE_egressInterface = 14
IE_sourceIPv6Address = 27
IE_destinationIPv6Address = 28
IE_flowStartMilliseconds = 152
IE_flowEndMilliseconds = 153
IE_postNATSourceIPv4Address = 225
IE_postNATDestinationIPv4Address = 226
IE_postNAPTSourceTransportPort = 227
IE_postNAPTDestinationTransportPort = 228
IE_postNATSourceIPv6Address = 281
IE_postNATDestinationIPv6Address = 282
IE_natEvent = 230  # FreeBSD pflow.h PFIX_IE_natEvent
IE_timeStamp = 323  # FreeBSD pflow.h PFIX_IE_timeStamp
IE_observationDomainId = 149
IE_samplingPacketInterval = 305
NAT_EVENT_SESSION_CREATE, NAT_EVENT_SESSION_DELETE = 4, 5  # PFIX_NAT_EVENT_SESSION_*
OPTIONS_SET_ID = 3  # RFC 7011 3.4.2.1: options template set
OPTIONS_ID = 400  # ours: the sampling options template, clear of every layout's ids

# struct pflow_ipfix_flow4, 54 bytes:
#  0 src_ip | 4 dest_ip | 8 if_index_in u32 | 12 if_index_out u32 | 16 flow_packets u64
#  24 flow_octets u64 | 32 flow_start i64 ms | 40 flow_finish i64 ms | 48 src_port u16
#  50 dest_port u16 | 52 tos u8 | 53 protocol u8
FLOW4 = struct.Struct("!4s4sIIQQqqHHBB")
# struct pflow_ipfix_flow6, 78 bytes: as FLOW4 with 16-byte addresses
#  0 src_ip | 16 dest_ip | 32 if_index_in | 36 if_index_out | 40 packets | 48 octets
#  56 start | 64 finish | 72 src_port | 74 dest_port | 76 tos | 77 protocol
FLOW6 = struct.Struct("!16s16sIIQQqqHHBB")
# IPv4 NAT record, 66 bytes:
#  0 src | 4 dst | 8 in | 12 out | 16 packets | 24 octets | 32 start | 40 finish
#  48 post_src | 52 post_dst | 56 post_sport | 58 post_dport | 60 sport | 62 dport
#  64 tos | 65 protocol
FLOW4_NAT = struct.Struct("!4s4sIIQQqq4s4sHHHHBB")
# IPv6 NAT record, 114 bytes:
#  0 src | 16 dst | 32 in | 36 out | 40 packets | 48 octets | 56 start | 64 finish
#  72 post_src | 88 post_dst | 104 post_sport | 106 post_dport | 108 sport | 110 dport
#  112 tos | 113 protocol
FLOW6_NAT = struct.Struct("!16s16sIIQQqq16s16sHHHHBB")
# FreeBSD struct pflow_ipfix_nat4, 34 bytes:
#  0 timestamp u64 ms | 8 nat_event u8 | 9 protocol u8 | 10 src_ip | 14 src_port u16
#  16 postnat_src_ip | 20 postnat_src_port u16 | 22 dest_ip | 26 dest_port u16
#  28 postnat_dest_ip | 32 postnat_dest_port u16
NAT44 = struct.Struct("!QBB4sH4sH4sH4sH")
# The sampling options record: observationDomainId u32, samplingPacketInterval u32
OPTIONS = struct.Struct("!II")
# options template header: template_id u16 | field_count u16 | scope_field_count u16
OPTIONS_HEADER = struct.Struct("!HHH")


def _plain_fields(src_ie: int, dst_ie: int, alen: int) -> tuple[tuple[int, int], ...]:
    return (
        (src_ie, alen),
        (dst_ie, alen),
        (IE_ingressInterface, 4),
        (IE_egressInterface, 4),
        (IE_packetDeltaCount, 8),
        (IE_octetDeltaCount, 8),
        (IE_flowStartMilliseconds, 8),
        (IE_flowEndMilliseconds, 8),
        (IE_sourceTransportPort, 2),
        (IE_destinationTransportPort, 2),
        (IE_ipClassOfService, 1),
        (IE_protocolIdentifier, 1),
    )


def _nat_fields(
    plain: tuple[tuple[int, int], ...], post_src_ie: int, post_dst_ie: int, alen: int
) -> tuple[tuple[int, int], ...]:
    return plain[:8] + (
        (post_src_ie, alen),
        (post_dst_ie, alen),
        (IE_postNAPTSourceTransportPort, 2),
        (IE_postNAPTDestinationTransportPort, 2),
    ) + plain[8:]


def flow_millis(flow: Flow, now: Clock) -> tuple[int, int]:
    """copy_flow_ipfix_*_data: uptime seconds to epoch ms, evaluated at export time.

    Whole seconds, as OpenBSD's time_second/time_uptime; a start after the end (pfsync)
    becomes the boot time.  No `< 0` guard, unlike v5."""
    wall, up = int(now.wall), int(now.up)
    if flow.start > flow.end:
        start = (wall - up) * 1000
    else:
        start = (wall - (up - flow.start // 1000)) * 1000
    return start, (wall - (up - flow.end // 1000)) * 1000


# _pack_plain and _pack_nat repeat each other on purpose.  The NAT record is the plain one
# with the four post-NAT values after the eighth, where _nat_fields() puts them, and
# struct.pack wants every value in one call.  Sharing the first eight as a tuple spliced
# into both calls (pack(*head(flow, now), ...)) measured 13-15 % fewer IPFIX records a
# second in bench/encode.py (~785k -> ~670k).  Generating one packer from the field list
# with exec() would cost nothing, but would hide the packing from mypy and from a reader
# holding it next to copy_flow_ipfix_4_data.  test_ipfix.py checks both against the layouts.


def _pack_plain(layout: struct.Struct) -> Callable[[Flow, Clock], bytes]:
    pack = layout.pack

    def pack_flow(flow: Flow, now: Clock) -> bytes:
        start, end = flow_millis(flow, now)
        return pack(
            flow.src, flow.dst, flow.if_in & U32, flow.if_out & U32,
            flow.packets & U64, flow.octets & U64, start, end,
            flow.src_port, flow.dst_port, flow.tos, flow.proto,
        )  # fmt: skip

    return pack_flow


def _pack_nat(layout: struct.Struct) -> Callable[[Flow, Clock], bytes]:
    pack = layout.pack

    def pack_flow(flow: Flow, now: Clock) -> bytes:
        start, end = flow_millis(flow, now)
        return pack(
            flow.src, flow.dst, flow.if_in & U32, flow.if_out & U32,
            flow.packets & U64, flow.octets & U64, start, end,
            flow.nat_src or flow.src, flow.nat_dst or flow.dst,
            flow.nat_src_port, flow.nat_dst_port,
            flow.src_port, flow.dst_port, flow.tos, flow.proto,
        )  # fmt: skip

    return pack_flow


def _pack_nat44(layout: struct.Struct) -> Callable[[Flow, Clock], bytes]:
    """copy_nat_ipfix_4_data + copy_nat_ipfix_4_to_m, FreeBSD: the create and the delete
    record of one exported direction, concatenated (the exporter cuts them apart).  Pre
    is key[PF_SK_STACK], post key[PF_SK_WIRE], both read with src=1, dst=0 whatever the
    state's direction: for an outbound state that is the flow's own key and its other
    key; for an inbound one they come the other way round."""
    pack = layout.pack

    def pack_events(flow: Flow, now: Clock) -> bytes:
        start, end = flow_millis(flow, now)
        nsrc, ndst = flow.nat_src or flow.src, flow.nat_dst or flow.dst
        if flow.outbound:
            pre = (flow.src, flow.src_port, flow.dst, flow.dst_port)
            post = (nsrc, flow.nat_src_port, ndst, flow.nat_dst_port)
        else:
            pre = (ndst, flow.nat_dst_port, nsrc, flow.nat_src_port)
            post = (flow.dst, flow.dst_port, flow.src, flow.src_port)
        rest = (pre[0], pre[1], post[0], post[1], pre[2], pre[3], post[2], post[3])
        return (pack(start, NAT_EVENT_SESSION_CREATE, flow.proto, *rest)
                + pack(end, NAT_EVENT_SESSION_DELETE, flow.proto, *rest))

    return pack_events


class Template(NamedTuple):
    id: int
    af: int
    nat: bool
    fields: tuple[tuple[int, int], ...]  # (IE id, length) in record order
    layout: struct.Struct
    pack: Callable[[Flow, Clock], bytes]  # the record for one Flow, times taken at `now`


_V4 = _plain_fields(IE_sourceIPv4Address, IE_destinationIPv4Address, 4)
_V6 = _plain_fields(IE_sourceIPv6Address, IE_destinationIPv6Address, 16)
_V4_NAT = _nat_fields(_V4, IE_postNATSourceIPv4Address, IE_postNATDestinationIPv4Address, 4)
_V6_NAT = _nat_fields(_V6, IE_postNATSourceIPv6Address, IE_postNATDestinationIPv6Address, 16)

TEMPLATES: dict[int, Template] = {
    t.id: t
    for t in (
        Template(TMPL_IPV4_ID, socket.AF_INET, False, _V4, FLOW4, _pack_plain(FLOW4)),
        Template(TMPL_IPV6_ID, socket.AF_INET6, False, _V6, FLOW6, _pack_plain(FLOW6)),
        Template(TMPL_IPV4_NAT_ID, socket.AF_INET, True, _V4_NAT, FLOW4_NAT, _pack_nat(FLOW4_NAT)),
        Template(TMPL_IPV6_NAT_ID, socket.AF_INET6, True, _V6_NAT, FLOW6_NAT, _pack_nat(FLOW6_NAT)),
    )
}
# (address family, translated) -> template id
TEMPLATE_FOR: dict[tuple[int, bool], int] = {(t.af, t.nat): t.id for t in TEMPLATES.values()}

_NAT44_FIELDS = (
    (IE_timeStamp, 8), (IE_natEvent, 1), (IE_protocolIdentifier, 1),
    (IE_sourceIPv4Address, 4), (IE_sourceTransportPort, 2),
    (IE_postNATSourceIPv4Address, 4), (IE_postNAPTSourceTransportPort, 2),
    (IE_destinationIPv4Address, 4), (IE_destinationTransportPort, 2),
    (IE_postNATDestinationIPv4Address, 4), (IE_postNAPTDestinationTransportPort, 2),
)  # fmt: skip
NAT44_EVENTS = Template(258, socket.AF_INET, True, _NAT44_FIELDS, NAT44, _pack_nat44(NAT44))

# ipfix-layout -> template id -> Template; see the module's docstring for the sources.
LAYOUTS: dict[str, dict[int, Template]] = {
    "openbsd": TEMPLATES,
    "openbsd-nat": {
        256: TEMPLATES[TMPL_IPV4_ID],
        257: TEMPLATES[TMPL_IPV4_NAT_ID]._replace(id=257),
        258: TEMPLATES[TMPL_IPV6_ID]._replace(id=258),
    },
    "freebsd": {256: TEMPLATES[TMPL_IPV4_ID], 257: TEMPLATES[TMPL_IPV6_ID], 258: NAT44_EVENTS},
}

for _table in LAYOUTS.values():
    for _t in _table.values():
        assert _t.layout.size == sum(length for _, length in _t.fields), _t.id


def maxcount(template_id: int, mtu: int, table: dict[int, Template] = TEMPLATES) -> int:
    """pflow_calc_mtu: records per message.  The 4-byte set header is not counted, as in
    the kernel."""
    size = table[template_id].layout.size
    return min(PFLOW_MAXFLOWS, (mtu - HEADER.size - UDPIP_HDRLEN) // size)


def template_set(template_ids: Iterable[int], table: dict[int, Template] = TEMPLATES) -> bytes:
    """The template set (id 2) announcing `template_ids` in that order."""
    body = b"".join(
        TMPL_HEADER.pack(tid, len(table[tid].fields))
        + b"".join(FIELD_SPEC.pack(ie, length) for ie, length in table[tid].fields)
        for tid in template_ids
    )
    return SET_HEADER.pack(TMPL_SET_ID, SET_HEADER.size + len(body)) + body


def sampling_sets(domain: int, interval: int) -> tuple[bytes, bytes]:
    """The options template set (id 3) for samplingPacketInterval, scoped to the
    observation domain, and the data set holding its one record."""
    fields = ((IE_observationDomainId, 4), (IE_samplingPacketInterval, 4))
    body = OPTIONS_HEADER.pack(OPTIONS_ID, len(fields), 1) + b"".join(
        FIELD_SPEC.pack(ie, length) for ie, length in fields)
    options = SET_HEADER.pack(OPTIONS_SET_ID, SET_HEADER.size + len(body)) + body
    return options, data_set(OPTIONS_ID, [OPTIONS.pack(domain & U32, interval & U32)])


def data_set(template_id: int, records: list[bytes]) -> bytes:
    body = b"".join(records)
    return SET_HEADER.pack(template_id, SET_HEADER.size + len(body)) + body


def message(one_set: bytes, now: Clock, sequence: int, domain: int) -> bytes:
    """pflow_sendout_ipfix / _tmpl: header prepended at send time."""
    return (
        HEADER.pack(VERSION, HEADER.size + len(one_set), int(now.wall) & U32, sequence & U32, domain & U32)
        + one_set
    )
