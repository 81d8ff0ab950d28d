"""`pflowbsd dump`: a small collector for what pflowbsd (or pflow(4)) sends.

Four parts, each usable alone: `Decoder` is sans-I/O (bytes and the exporter's address in,
one dict per flow out; NetFlow v5, v9 and IPFIX, templates learned per (exporter, version,
domain, template id)); `read_pcap` walks a classic libpcap file down to UDP payloads;
`format_flow` makes one line of text or JSON; `cmd_dump` owns the socket, the file and
the signals.  A datagram that does not parse raises `Malformed` and counts once; a data
set whose template has not been seen is counted and skipped (reported once per template).
"""

from __future__ import annotations

import ipaddress
import json
import signal
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from pflowbsd.pf.netdb import proto_name

# NetFlow v5 header, 24 bytes: version 0, count 2, uptime_ms 4, time_sec 8,
# time_nanosec 12, flow_sequence 16, engine_type 20, engine_id 21, sampling 22.
V5_HEADER = struct.Struct("!HHIIIIBBH")
# NetFlow v5 record, 48 bytes: src_ip 0, dest_ip 4, nexthop_ip 8, if_index_in 12,
# if_index_out 14, flow_packets 16, flow_octets 20, flow_start 24, flow_finish 28,
# src_port 32, dest_port 34, pad1 36, tcp_flags 37, protocol 38, tos 39, src_as 40,
# dest_as 42, src_mask 44, dest_mask 45, pad2 46.
V5_RECORD = struct.Struct("!4s4s4sHHIIIIHHBBBBHHBBH")
# NetFlow v9 header, 20 bytes: version 0, count 2, sys_uptime 4, unix_secs 8,
# sequence 12, source_id 16.
V9_HEADER = struct.Struct("!HHIIII")
# IPFIX message header, 16 bytes (RFC 7011 3.1): version 0, length 2, export time 4,
# sequence 8, observation domain 12.
IPFIX_HEADER = struct.Struct("!HHIII")
# Set / FlowSet header, and a template record's header and field specifier: id, length.
PAIR = struct.Struct("!HH")
ENTERPRISE = struct.Struct("!I")
OPTIONS_HEADER = struct.Struct("!HHH")  # IPFIX options template: id, fields, scope fields

VARLEN = 65535
TEMPLATE_SET = {9: 0, 10: 2}
OPTIONS_SET = {9: 1, 10: 3}


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
IE = {
    1: ("bytes", _uint), 2: ("packets", _uint), 4: ("proto", _uint), 5: ("tos", _uint),
    7: ("src_port", _uint), 8: ("src", _addr), 10: ("if_in", _uint), 11: ("dst_port", _uint),
    12: ("dst", _addr), 14: ("if_out", _uint), 21: ("last_uptime", _uint),
    22: ("first_uptime", _uint), 32: ("icmp_type_code", _uint), 27: ("src", _addr), 28: ("dst", _addr),
    150: ("start_s", _uint), 151: ("end_s", _uint), 152: ("start", _uint), 153: ("end", _uint),
    225: ("nat_src", _addr), 226: ("nat_dst", _addr), 227: ("nat_src_port", _uint),
    139: ("icmp_type_code", _uint), 228: ("nat_dst_port", _uint), 281: ("nat_src", _addr), 282: ("nat_dst", _addr),
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
    templates: int = 0
    gaps: Counter = field(default_factory=Counter)  # (exporter, domain) -> sequence gaps

    def summary(self) -> str:
        gaps = " ".join(f"{e}/{d}:{n}" for (e, d), n in sorted(self.gaps.items()))
        return (f"{self.datagrams} datagrams, {self.flows} flows, {self.malformed} malformed, "
                f"{self.unknown_template} unknown-template sets, {self.templates} templates, "
                f"sequence gaps: {gaps or 'none'}")


def _signed32(x: int) -> int:
    return ((x + 0x80000000) & 0xFFFFFFFF) - 0x80000000


class Decoder:
    """Decode NetFlow v5 / v9 / IPFIX datagrams, one exporter address at a time."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.templates: dict[tuple, Template] = {}
        self.notices: list[str] = []  # one-time reports (unknown templates), for the caller
        self._expected: dict[tuple, int | None] = {}
        self._reported: set[tuple] = set()

    def feed(self, datagram: bytes, exporter: str) -> list[dict]:
        self.stats.datagrams += 1
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
        return flows

    def _sequence(self, key: tuple, seq: int, advance: int | None) -> None:
        """Count a gap when `seq` is not what the previous datagram announced."""
        expected = self._expected.get(key)
        if expected is not None and seq != expected:
            self.stats.gaps[key] += 1
        self._expected[key] = None if advance is None else (seq + advance) & 0xFFFFFFFF

    def decode_v5(self, d: bytes, exporter: str) -> list[dict]:
        if len(d) < V5_HEADER.size:
            raise Malformed(f"truncated header: {len(d)} of {V5_HEADER.size} bytes")
        _, count, uptime, secs, nsecs, seq, etype, eid, _ = V5_HEADER.unpack_from(d)
        need = V5_HEADER.size + count * V5_RECORD.size
        if need > len(d):
            raise Malformed(f"count {count} needs {need} bytes, datagram has {len(d)}")
        self._sequence((exporter, f"{etype}/{eid}"), seq, count)
        now_ms = secs * 1000 + nsecs // 1_000_000
        flows = []
        for i in range(count):
            (src, dst, _, if_in, if_out, pkts, octets, first, last, sport, dport, _, _, proto,
             tos, *_) = V5_RECORD.unpack_from(d, V5_HEADER.size + i * V5_RECORD.size)
            flows.append({
                "version": 5, "exporter": exporter, "sequence": seq, "engine_type": etype,
                "engine_id": eid, "src": _addr(src), "dst": _addr(dst), "src_port": sport,
                "dst_port": dport, "proto": proto, "tos": tos, "packets": pkts,
                "bytes": octets, "if_in": if_in, "if_out": if_out, "start": first,
                "end": last, "uptime": uptime, "export_ms": now_ms,
                "start_epoch": now_ms - _signed32(uptime - first),
                "end_epoch": now_ms - _signed32(uptime - last)})
        return flows

    def decode_v9(self, d: bytes, exporter: str) -> list[dict]:
        if len(d) < V9_HEADER.size:
            raise Malformed(f"truncated header: {len(d)} of {V9_HEADER.size} bytes")
        _, _, uptime, secs, seq, domain = V9_HEADER.unpack_from(d)
        head = {"version": 9, "exporter": exporter, "sequence": seq, "domain": domain,
                "uptime": uptime, "export_ms": secs * 1000}
        flows, _, unknown = self._sets(d, V9_HEADER.size, len(d), 9, head)
        self._sequence((exporter, domain), seq, None if unknown else 1)  # v9 counts datagrams
        return flows

    def decode_ipfix(self, d: bytes, exporter: str) -> list[dict]:
        if len(d) < IPFIX_HEADER.size:
            raise Malformed(f"truncated header: {len(d)} of {IPFIX_HEADER.size} bytes")
        _, length, secs, seq, domain = IPFIX_HEADER.unpack_from(d)
        if not IPFIX_HEADER.size <= length <= len(d):
            raise Malformed(f"message length {length}, datagram has {len(d)} bytes")
        head = {"version": 10, "exporter": exporter, "sequence": seq, "domain": domain,
                "export_ms": secs * 1000}
        flows, options, unknown = self._sets(d, IPFIX_HEADER.size, length, 10, head)
        self._sequence((exporter, domain), seq, None if unknown else len(flows) + options)
        return flows

    def _sets(self, d: bytes, off: int, end: int, version: int, head: dict):
        """Walk one message's sets: (flows, options records, whether a template was missing)."""
        flows: list[dict] = []
        unknown, options = False, 0
        domain = head["domain"]
        while off < end:
            if end - off < PAIR.size:
                if version == 9:
                    break  # v9 exporters may pad the datagram
                raise Malformed(f"set header truncated at offset {off}")
            set_id, set_len = PAIR.unpack_from(d, off)
            if set_len < PAIR.size or off + set_len > end:
                raise Malformed(f"set {set_id} length {set_len} at offset {off} "
                                f"runs past the end ({end})")
            body = d[off + PAIR.size:off + set_len]
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

    def _learn(self, body: bytes, key: tuple, version: int, options: bool) -> None:
        off = 0
        while len(body) - off >= PAIR.size + (2 if options and version == 10 else 0):
            if options and version == 10:
                tid, count, scope = OPTIONS_HEADER.unpack_from(body, off)
                off += OPTIONS_HEADER.size
            elif options:  # v9 options: scope and option lengths in bytes
                tid, scope_len = PAIR.unpack_from(body, off)
                (opt_len,) = struct.unpack_from("!H", body, off + 4)
                off += 6
                count = (scope_len + opt_len) // 4
            else:
                tid, count = PAIR.unpack_from(body, off)
                off += PAIR.size
            if tid < 256:
                break  # padding
            if count == 0:  # withdrawal (RFC 7011 8.1)
                self.templates.pop(key + (tid,), None)
                continue
            fields = []
            for _ in range(count):
                if off + PAIR.size > len(body):
                    raise Malformed(f"template {tid} runs past its set")
                ie, n = PAIR.unpack_from(body, off)
                off += PAIR.size
                if version == 10 and ie & 0x8000:
                    off += ENTERPRISE.size
                    ie = -1
                if version == 9 and n == VARLEN:
                    raise Malformed(f"template {tid}: variable length in v9")
                fields.append((ie, n))
            if off > len(body):
                raise Malformed(f"template {tid} runs past its set")
            self.templates[key + (tid,)] = Template(fields, options)
            self._reported.discard(key + (tid,))
            self.stats.templates += 1

    @staticmethod
    def _records(body: bytes, tmpl: Template) -> Iterator[dict]:
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


def _flow(head: dict, tid: int, rec: dict) -> dict:
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


DECODERS = {5: Decoder.decode_v5, 9: Decoder.decode_v9, 10: Decoder.decode_ipfix}


from pflowbsd.collector.pcap import PcapError, read_pcap  # noqa: E402  (dump -r)

# --- output ---------------------------------------------------------------------------

COLUMNS = (f"{'exported':<19} {'ver':<3} {'proto':<5} {'src':>23}    {'dst':<23} "
           f"{'pkts':>10} {'bytes':>13} {'start':<12} {'end':<12}")


def _endpoint(addr: str | None, port: int) -> str:
    addr = addr or "?"
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _clock(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}"


def format_flow(flow: dict, as_json: bool = False) -> str:
    """One line: JSON, or the columns of COLUMNS (times in UTC)."""
    if as_json:
        return json.dumps(flow, separators=(",", ":"))
    exported = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(flow["export_ms"] // 1000))
    line = (f"{exported:<19} v{flow['version']:<2} "
            f"{proto_name(flow['proto']):<5} "
            f"{_endpoint(flow['src'], flow['src_port']):>23} -> "
            f"{_endpoint(flow['dst'], flow['dst_port']):<23} {flow['packets']:>10} "
            f"{flow['bytes']:>13} {_clock(flow['start_epoch']):<12} {_clock(flow['end_epoch'])}")
    if "nat_src" in flow or "nat_dst" in flow:
        line += (f"  nat {_endpoint(flow.get('nat_src'), flow.get('nat_src_port', 0))} -> "
                 f"{_endpoint(flow.get('nat_dst'), flow.get('nat_dst_port', 0))}")
    return line


# --- the command ----------------------------------------------------------------------

class _Stop(Exception):
    pass


def parse_endpoint(text: str) -> tuple[int, str, int]:
    """`ADDR:PORT` or `[V6]:PORT` -> (family, address, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text}: expected ADDR:PORT or [ADDR]:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socket.inet_pton(family, host)  # raises OSError on a bad address
    return family, host, int(port)


class _Sink:
    """Feed datagrams to a Decoder and print what comes out, up to `count` flows."""

    def __init__(self, as_json: bool, count: int | None, out, err):
        self.decoder, self.as_json, self.left, self.out, self.err = (
            Decoder(), as_json, count, out, err)

    def datagram(self, payload: bytes, exporter: str) -> bool:
        """Returns False once `count` flows have been printed."""
        try:
            flows = self.decoder.feed(payload, exporter)
        except Malformed as e:
            flows = []
            self.err.write(f"pflowbsd dump: {exporter}: malformed datagram "
                           f"({len(payload)} bytes): {e.reason}\n")
        for notice in self.decoder.notices:
            self.err.write(f"pflowbsd dump: {notice}\n")
        self.decoder.notices.clear()
        for flow in flows[:self.left]:
            self.out.write(format_flow(flow, self.as_json) + "\n")
        self.out.flush()
        if self.left is not None:
            self.left -= min(self.left, len(flows))
            return self.left > 0
        return True


def serve(sock: socket.socket, sink: _Sink) -> None:
    """Receive until `sink` has its count, a signal stops us, or the socket times out."""
    try:
        while True:
            payload, peer = sock.recvfrom(65535)
            if not sink.datagram(payload, peer[0]):
                return
    except (_Stop, KeyboardInterrupt, TimeoutError):
        return


def _raise_stop(signum, frame):
    raise _Stop()


def cmd_dump(listen: str, as_json: bool, pcap: str | None, count: int | None,
             out, err) -> int:
    sink = _Sink(as_json, count, out, err)
    if not as_json:
        out.write(COLUMNS + "\n")
    if pcap is not None:
        try:
            with open(pcap, "rb") as f:
                data = f.read()
            for _, src, _, _, _, payload in read_pcap(data):
                if not sink.datagram(payload, src):
                    break
        except (OSError, PcapError) as e:
            err.write(f"pflowbsd dump: {pcap}: {e}\n")
            return 1
    else:
        try:
            family, host, port = parse_endpoint(listen)
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((host, port))
        except (OSError, ValueError) as e:
            err.write(f"pflowbsd dump: cannot listen on {listen}: {e}\n")
            return 1
        err.write(f"pflowbsd dump: listening on {_endpoint(*sock.getsockname()[:2])}\n")
        err.flush()
        previous = {}
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, _raise_stop)
        except ValueError:  # not the main thread: count or a timeout will stop us
            pass
        try:
            serve(sock, sink)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            sock.close()
    err.write(f"pflowbsd dump: {sink.decoder.stats.summary()}\n")
    return 0
