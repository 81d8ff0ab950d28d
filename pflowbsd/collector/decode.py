"""The collector's decoder: NetFlow v5, v9 and IPFIX datagrams in, one dict per flow out.

Strategy.  Sans-I/O: `Decoder.feed` takes a datagram and the exporter's address and
returns the flows; no sockets, files or clocks.  The wire layouts are the exporter's own
(export/v5.py, export/ipfix.py: one declaration each); only what pflowbsd never sends is
declared here (the v9 header, options template headers, the enterprise number).
Templates are learned per (exporter, version, domain, template id); sequence numbers are
followed per (exporter, domain, destination), since pflowbsd sends the same datagrams,
numbered once, to every flowdst, and a capture may hold several of those copies.  A
datagram that does not parse raises `Malformed` and counts once; a data set whose
template has not been seen is counted and skipped, with one notice per template in
`Decoder.notices`.  `templates` counts template records, `template_messages` the
datagrams that carried them: an exporter's "template" is the latter (pflow_sendout_ipfix_tmpl
sends all of its templates in one message).
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pflowbsd.export import ipfix, v5

FlowRecord = dict[str, Any]  # one decoded flow, the keys format_flow and --json show

# NetFlow v9 header, 20 bytes (RFC 3954 5.1): version 0, count 2, sys_uptime 4,
# unix_secs 8, sequence 12, source_id 16.  A v9 FlowSet header is IPFIX's set header
# (id, length), as are its template record header and field specifier.
V9_HEADER = struct.Struct("!HHIIII")
# v9 options template record header (RFC 3954 6.1), 6 bytes: template id 0, option scope
# length 2, option length 4 (both in bytes).  Read as a template header (id, scope length)
# and then OPTION_LENGTH, so that a short one fails with the words it always has.
OPTION_LENGTH = struct.Struct("!H")
# IPFIX options template record header (RFC 7011 3.4.2.2): template id, field count,
# scope field count.
OPTIONS_HEADER = struct.Struct("!HHH")
# The enterprise number after a field specifier whose id has the top bit set.
ENTERPRISE = struct.Struct("!I")

VARLEN = 65535
TEMPLATE_SET = {9: 0, 10: ipfix.TMPL_SET_ID}
OPTIONS_SET = {9: 1, 10: 3}

Key = tuple[Any, ...]  # (exporter, version, domain[, template id]) and sequence keys


class Malformed(ValueError):
    """A datagram that cannot be decoded; carries its exporter and bytes."""

    def __init__(self, reason: str, exporter: str = "", datagram: bytes = b""):
        super().__init__(reason)
        self.reason, self.exporter, self.datagram = reason, exporter, datagram


def _uint(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _addr(b: bytes) -> str:
    return str(ipaddress.ip_address(b)) if len(b) in (4, 16) else b.hex()


# Information elements we show, by id (RFC 7012 / IANA; v9 shares ids 1-127):
# id -> (key, decoder).  Anything else is skipped by its length.
IE: dict[int, tuple[str, Callable[[bytes], Any]]] = {
    1: ("bytes", _uint), 2: ("packets", _uint), 4: ("proto", _uint), 5: ("tos", _uint),
    7: ("src_port", _uint), 8: ("src", _addr), 10: ("if_in", _uint), 11: ("dst_port", _uint),
    12: ("dst", _addr), 14: ("if_out", _uint), 21: ("last_uptime", _uint),
    22: ("first_uptime", _uint), 32: ("icmp_type_code", _uint), 27: ("src", _addr),
    28: ("dst", _addr), 150: ("start_s", _uint), 151: ("end_s", _uint), 152: ("start", _uint),
    153: ("end", _uint), 225: ("nat_src", _addr), 226: ("nat_dst", _addr),
    227: ("nat_src_port", _uint), 139: ("icmp_type_code", _uint), 228: ("nat_dst_port", _uint),
    281: ("nat_src", _addr), 282: ("nat_dst", _addr),
}


@dataclass(slots=True)
class Template:
    fields: list[tuple[int, int]]  # (ie id, length or VARLEN); enterprise IEs get id -1
    options: bool = False

    @property
    def min_length(self) -> int:
        return sum(1 if n == VARLEN else n for _, n in self.fields)


@dataclass
class Stats:
    datagrams: int = 0
    flows: int = 0
    malformed: int = 0
    unknown_template: int = 0  # data sets skipped for want of their template
    templates: int = 0  # template records learned
    template_messages: int = 0  # datagrams that carried at least one template record
    # (exporter, domain, destination) -> sequence gaps; destination "" when not known
    gaps: Counter[Key] = field(default_factory=Counter)

    def summary(self) -> str:
        gaps = " ".join(f"{e}{' to ' + to if to else ''}/{d}:{n}"
                        for (e, d, to), n in sorted(self.gaps.items()))
        return (f"{self.datagrams} datagrams, {self.flows} flows, {self.malformed} malformed, "
                f"{self.unknown_template} unknown-template sets, {self.templates} template "
                f"records in {self.template_messages} template messages, "
                f"sequence gaps: {gaps or 'none'}")


def _signed32(x: int) -> int:
    return ((x + 0x80000000) & 0xFFFFFFFF) - 0x80000000


# What the decoder keeps per exporter, domain and template (templates, sequence numbers,
# gap counts) is bounded: a sender spraying new keys makes the oldest go, not memory grow.
MAX_KEYS = 4096


def _bounded(table: dict[Any, Any], key: object) -> None:
    """Make room for `key` in `table` (insertion order: the oldest key goes first)."""
    if key not in table and len(table) >= MAX_KEYS:
        del table[next(iter(table))]


class Decoder:
    """Decode NetFlow v5 / v9 / IPFIX datagrams, one exporter address at a time."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.templates: dict[Key, Template] = {}
        self.notices: list[str] = []  # one-time reports (unknown templates), for the caller
        self._expected: dict[Key, int | None] = {}
        self._reported: set[Key] = set()
        self._destination = ""  # the datagram's, for _sequence

    def feed(self, datagram: bytes, exporter: str, destination: str = "") -> list[FlowRecord]:
        """The flows of one datagram from `exporter` (an address) sent to `destination`
        (ADDR:PORT as config.endpoint_text writes it, or "" when there is only one)."""
        self.stats.datagrams += 1
        self._destination = destination
        templates = self.stats.templates
        try:
            if len(datagram) < 2:
                raise Malformed("truncated header")
            version = _uint(datagram[:2])
            decode = DECODERS.get(version)
            if decode is None:
                raise Malformed(f"not NetFlow v5/v9 or IPFIX (version {version})")
            flows = decode(self, datagram, exporter)
        except Malformed as e:
            self.stats.malformed += 1
            raise Malformed(e.reason, exporter, datagram) from None
        except (struct.error, IndexError, ValueError) as e:  # defence: never crash
            self.stats.malformed += 1
            raise Malformed(f"undecodable: {e}", exporter, datagram) from None
        self.stats.flows += len(flows)
        self.stats.template_messages += self.stats.templates > templates
        return flows

    def _sequence(self, key: Key, seq: int, advance: int | None) -> None:
        """Count a gap when `seq` is not what the previous datagram announced."""
        key += (self._destination,)
        expected = self._expected.get(key)
        if expected is not None and seq != expected:
            _bounded(self.stats.gaps, key)
            self.stats.gaps[key] += 1
        _bounded(self._expected, key)
        self._expected[key] = None if advance is None else (seq + advance) & 0xFFFFFFFF

    def decode_v5(self, d: bytes, exporter: str) -> list[FlowRecord]:
        header, record = v5.HEADER, v5.RECORD
        if len(d) < header.size:
            raise Malformed(f"truncated header: {len(d)} of {header.size} bytes")
        _, count, uptime, secs, nsecs, seq, etype, eid, _ = header.unpack_from(d)
        need = header.size + count * record.size
        if need > len(d):
            raise Malformed(f"count {count} needs {need} bytes, datagram has {len(d)}")
        self._sequence((exporter, f"{etype}/{eid}"), seq, count)
        now_ms = secs * 1000 + nsecs // 1_000_000
        flows = []
        for i in range(count):
            (src, dst, _nexthop, if_in, if_out, pkts, octets, first, last, sport, dport, _, _,
             proto, tos, *_) = record.unpack_from(d, header.size + i * record.size)
            flows.append({
                "version": 5, "exporter": exporter, "sequence": seq, "engine_type": etype,
                "engine_id": eid, "src": _addr(src), "dst": _addr(dst), "src_port": sport,
                "dst_port": dport, "proto": proto, "tos": tos, "packets": pkts,
                "bytes": octets, "if_in": if_in, "if_out": if_out, "start": first,
                "end": last, "uptime": uptime, "export_ms": now_ms,
                "start_epoch": now_ms - _signed32(uptime - first),
                "end_epoch": now_ms - _signed32(uptime - last)})
        return flows

    def decode_v9(self, d: bytes, exporter: str) -> list[FlowRecord]:
        if len(d) < V9_HEADER.size:
            raise Malformed(f"truncated header: {len(d)} of {V9_HEADER.size} bytes")
        _, _, uptime, secs, seq, domain = V9_HEADER.unpack_from(d)
        head = {"version": 9, "exporter": exporter, "sequence": seq, "domain": domain,
                "uptime": uptime, "export_ms": secs * 1000}
        flows, _, unknown = self._sets(d, V9_HEADER.size, len(d), 9, head)
        self._sequence((exporter, domain), seq, None if unknown else 1)  # v9 counts datagrams
        return flows

    def decode_ipfix(self, d: bytes, exporter: str) -> list[FlowRecord]:
        header = ipfix.HEADER
        if len(d) < header.size:
            raise Malformed(f"truncated header: {len(d)} of {header.size} bytes")
        _, length, secs, seq, domain = header.unpack_from(d)
        if not header.size <= length <= len(d):
            raise Malformed(f"message length {length}, datagram has {len(d)} bytes")
        head = {"version": 10, "exporter": exporter, "sequence": seq, "domain": domain,
                "export_ms": secs * 1000}
        flows, options, unknown = self._sets(d, header.size, length, 10, head)
        self._sequence((exporter, domain), seq, None if unknown else len(flows) + options)
        return flows

    def _sets(self, d: bytes, off: int, end: int, version: int,
              head: FlowRecord) -> tuple[list[FlowRecord], int, bool]:
        """Walk one message's sets: (flows, options records, whether a template was missing)."""
        set_header = ipfix.SET_HEADER
        flows: list[FlowRecord] = []
        unknown, options = False, 0
        domain = head["domain"]
        while off < end:
            if end - off < set_header.size:
                if version == 9:
                    break  # v9 exporters may pad the datagram
                raise Malformed(f"set header truncated at offset {off}")
            set_id, set_len = set_header.unpack_from(d, off)
            if set_len < set_header.size or off + set_len > end:
                raise Malformed(f"set {set_id} length {set_len} at offset {off} "
                                f"runs past the end ({end})")
            body = d[off + set_header.size:off + set_len]
            key = (head["exporter"], version, domain)
            if set_id == TEMPLATE_SET[version]:
                self._learn(body, key, version, options=False)
            elif set_id == OPTIONS_SET[version]:
                self._learn(body, key, version, options=True)
            elif set_id >= 256:
                tmpl = self.templates.get(key + (set_id,))
                if tmpl is None:
                    unknown = True
                    self.stats.unknown_template += 1
                    if key + (set_id,) not in self._reported:
                        if len(self._reported) >= MAX_KEYS:
                            self._reported.clear()
                        self._reported.add(key + (set_id,))
                        self.notices.append(
                            f"{head['exporter']}: data set for unknown template {set_id} "
                            f"(v{version}, domain {domain}): skipped until its template arrives")
                else:
                    for rec in self._records(body, tmpl):
                        if tmpl.options:
                            options += 1
                        else:
                            flows.append(_flow(head, set_id, rec))
            off += set_len
        return flows, options, unknown

    def _learn(self, body: bytes, key: Key, version: int, options: bool) -> None:
        tmpl_header, field_spec = ipfix.TMPL_HEADER, ipfix.FIELD_SPEC
        off = 0
        while len(body) - off >= tmpl_header.size + (2 if options and version == 10 else 0):
            if options and version == 10:
                tid, count, _scope = OPTIONS_HEADER.unpack_from(body, off)
                off += OPTIONS_HEADER.size
            elif options:  # v9 options: scope and option lengths in bytes
                tid, scope_len = tmpl_header.unpack_from(body, off)
                (opt_len,) = OPTION_LENGTH.unpack_from(body, off + tmpl_header.size)
                off += tmpl_header.size + OPTION_LENGTH.size
                count = (scope_len + opt_len) // 4
            else:
                tid, count = tmpl_header.unpack_from(body, off)
                off += tmpl_header.size
            if tid < 256:
                break  # padding
            if count == 0:  # withdrawal (RFC 7011 8.1)
                self.templates.pop(key + (tid,), None)
                continue
            fields = []
            for _ in range(count):
                if off + field_spec.size > len(body):
                    raise Malformed(f"template {tid} runs past its set")
                ie, n = field_spec.unpack_from(body, off)
                off += field_spec.size
                if version == 10 and ie & 0x8000:
                    off += ENTERPRISE.size
                    ie = -1
                if version == 9 and n == VARLEN:
                    raise Malformed(f"template {tid}: variable length in v9")
                fields.append((ie, n))
            if off > len(body):
                raise Malformed(f"template {tid} runs past its set")
            _bounded(self.templates, key + (tid,))
            self.templates[key + (tid,)] = Template(fields, options)
            self._reported.discard(key + (tid,))
            self.stats.templates += 1

    @staticmethod
    def _records(body: bytes, tmpl: Template) -> Iterator[FlowRecord]:
        off, minimum = 0, tmpl.min_length
        while minimum and len(body) - off >= minimum:
            rec = {}
            for ie, n in tmpl.fields:
                if n == VARLEN:  # RFC 7011 7: one length byte, or 255 and two more
                    n = body[off]
                    off += 1
                    if n == 255:
                        n = _uint(body[off:off + 2])
                        off += 2
                if off + n > len(body):
                    raise Malformed("record runs past the end of its set")
                spec = IE.get(ie)
                if spec is not None:
                    rec[spec[0]] = spec[1](body[off:off + n])
                off += n
            yield rec


def _flow(head: FlowRecord, tid: int, rec: FlowRecord) -> FlowRecord:
    flow = dict(head, template=tid, src=None, dst=None, src_port=0, dst_port=0, proto=0,
                packets=0, bytes=0, start=None, end=None)
    flow.update(rec)
    if not flow["dst_port"] and flow.get("icmp_type_code"):  # v5 carries it there
        flow["dst_port"] = flow["icmp_type_code"]
    for ms, s in (("start", "start_s"), ("end", "end_s")):
        if s in flow:
            value = flow.pop(s) * 1000
            flow[ms] = value if flow[ms] is None else flow[ms]
    if "uptime" in head:  # v9: switched times are sysUpTime
        for ms, up in (("start", "first_uptime"), ("end", "last_uptime")):
            if up in flow and flow[ms] is None:
                flow[ms] = head["export_ms"] - _signed32(head["uptime"] - flow[up])
    flow["start_epoch"], flow["end_epoch"] = flow["start"], flow["end"]
    return flow


DECODERS: dict[int, Callable[[Decoder, bytes, str], list[FlowRecord]]] = {
    5: Decoder.decode_v5, 9: Decoder.decode_v9, 10: Decoder.decode_ipfix}
