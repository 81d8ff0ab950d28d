"""The exporter: pflow(4)'s buffering, counting and timing, without sockets or clocks.

The caller feeds removed states and the current Clock in and gets datagrams out, to send
as they are.  It mirrors if_pflow.c: export_state is export_pflow_if, _add is
copy_flow_to_m / copy_flow_ipfix_{4,6}_to_m, _sendout is pflow_sendout_v5/_ipfix, due()
is the sc_tmo / sc_tmo6 / sc_tmo_tmpl timeouts firing, flush() is pflow_flush.

Rules kept from the kernel: a buffer's 30 s hold is armed once, when it gets its first
record; a full buffer (count >= maxcount) leaves at once; v5 flow_sequence is the record
counter at buffer allocation, IPFIX sequence the data-record counter at send time,
shared by every data message, and templates carry it without advancing it.  Timers run on
Clock.up (uptime seconds).  The version-specific parts are a table, PROTOCOLS.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from pflowbsd.export import ipfix, v5
from pflowbsd.export.pflow import MCLBYTES, PFLOW_MAXBYTES, PFLOW_MINMTU, PFLOW_TIMEOUT
from pflowbsd.flows import Clock, Flow

SPLIT_CAP = PFLOW_MAXBYTES * 65536  # at most 65536 v5 records a direction


@dataclass(slots=True)
class _Buffer:
    deadline: float  # Clock.up at which the hold expires
    sequence: int  # sc_gcounter when allocated (v5 header)
    records: list[bytes] = field(default_factory=list)


class _V5:
    """pflowproto 5: IPv4 only, one buffer, 32-bit counters split above 4 GiB."""

    order = (0,)  # buffer keys, in pflow_flush order

    def __init__(self, exporter: Exporter):
        self.x = exporter
        self.maxcount = {0: v5.maxcount(exporter.mtu)}

    def start(self, now: Clock) -> list[bytes]:
        return []

    def export_state(self, flow1: Flow, flow2: Flow, now: Clock, out: list[bytes]) -> None:
        x = self.x
        if flow1.af != socket.AF_INET:
            x.stats["skipped_v6"] += 1
            return
        b0, b1 = flow1.octets, flow2.octets
        if max(b0, b1) > SPLIT_CAP:
            # Past ~281 TB the kernel would still loop; a counter like 2^64-1 is a
            # corrupt line, and 2^32 records of it would stall the daemon.
            x.stats["split_clamped"] += 1
            b0, b1 = min(b0, SPLIT_CAP), min(b1, SPLIT_CAP)
        pairs = list(v5.split_octets(b0, b1))
        x.stats["split_records"] += len(pairs) - 1
        for bytes0, bytes1 in pairs:
            if bytes0:
                x._add(0, v5.pack_record(flow1, bytes0), now, out)
            if bytes1:
                x._add(0, v5.pack_record(flow2, bytes1), now, out)

    def datagram(self, key: int, buf: _Buffer, now: Clock) -> bytes:
        return v5.pack_header(len(buf.records), now, buf.sequence) + b"".join(buf.records)

    def template(self, now: Clock) -> bytes | None:
        return None


class _IPFIX:
    """pflowproto 10: a buffer and timer per template, templates every tmpl_interval."""

    def __init__(self, exporter: Exporter):
        self.x = exporter
        ids = [ipfix.TMPL_IPV4_ID, ipfix.TMPL_IPV6_ID]
        if exporter.nat:
            ids += [ipfix.TMPL_IPV4_NAT_ID, ipfix.TMPL_IPV6_NAT_ID]
        self.template_set = ipfix.template_set(ids)
        self.maxcount = {tid: ipfix.maxcount(tid, exporter.mtu) for tid in ids}
        # pflow_flush: AF_INET, then AF_INET6
        self.order = tuple(sorted(ids, key=lambda t: (ipfix.TEMPLATES[t].af != socket.AF_INET, t)))
        self.routes = {k: tid for k, tid in ipfix.TEMPLATE_FOR.items() if tid in ids}
        self.nat = exporter.nat

    def start(self, now: Clock) -> list[bytes]:
        return [self.x._sendout_tmpl(now)]

    def export_state(self, flow1: Flow, flow2: Flow, now: Clock, out: list[bytes]) -> None:
        for flow in (flow1, flow2):
            if not flow.octets:
                continue
            tid = self.routes.get((flow.af, self.nat and flow.natted))
            if tid is not None:
                self.x._add(tid, ipfix.TEMPLATES[tid].pack(flow, now), now, out)

    def datagram(self, key: int, buf: _Buffer, now: Clock) -> bytes:
        x = self.x
        msg = ipfix.message(ipfix.data_set(key, buf.records), now, x._sequence, x.domain)
        x._sequence += len(buf.records)
        return msg

    def template(self, now: Clock) -> bytes:
        return ipfix.message(self.template_set, now, self.x._sequence, self.x.domain)


PROTOCOLS = {5: _V5, 10: _IPFIX}


class Exporter:
    """One pflowN interface's export side.  All methods return datagrams to send now.

    stats: flows (records added, split chunks included: pflowstats.pflow_flows),
    datagrams (every datagram returned, templates included: pflow_packets), templates,
    skipped_v6 (IPv6 states a v5 exporter dropped), split_records (extra v5 records made
    by splitting counters above 0xffffffff), split_clamped (states whose counters
    passed SPLIT_CAP and were cut to it).  An mtu below 72 is refused as SIOCSIFMTU
    refuses it; above 2048 it is clamped.
    """

    def __init__(self, proto: int = 5, mtu: int = 1500, domain: int = 42, tmpl_interval: int = 30, nat: bool = False):
        if proto not in PROTOCOLS:
            raise ValueError(f"Invalid pflow protocol: {proto}")
        if mtu < PFLOW_MINMTU:  # SIOCSIFMTU answers EINVAL
            raise ValueError(f"mtu {mtu} below the minimum {PFLOW_MINMTU}")
        self.proto = proto
        self.mtu = min(mtu, MCLBYTES)
        self.domain = domain
        self.tmpl_interval = tmpl_interval
        self.nat = nat
        self.stats: dict[str, int] = dict(
            flows=0, datagrams=0, templates=0, skipped_v6=0, split_records=0, split_clamped=0
        )
        self._gcounter = 0  # sc_gcounter: records added
        self._sequence = 0  # sc_sequence: IPFIX data records sent
        self._buffers: dict[int, _Buffer] = {}
        self._tmpl_deadline: float | None = None
        self._p = PROTOCOLS[proto](self)

    def start(self, now: Clock) -> list[bytes]:
        """The interface becomes running: IPFIX templates go out at once."""
        return self._p.start(now)

    def export_state(self, flow1: Flow, flow2: Flow, now: Clock) -> list[bytes]:
        out: list[bytes] = []
        self._p.export_state(flow1, flow2, now, out)
        return out

    def due(self, now: Clock) -> list[bytes]:
        """The timeouts that have fired by now.up, earliest first, templates first on a tie."""
        fired = [(b.deadline, 1, key) for key, b in self._buffers.items() if b.deadline <= now.up]
        if self._tmpl_deadline is not None and self._tmpl_deadline <= now.up:
            fired.append((self._tmpl_deadline, 0, -1))
        out = []
        for _, is_data, key in sorted(fired):
            out.append(self._sendout(key, now) if is_data else self._sendout_tmpl(now))
        return out

    def flush(self, now: Clock) -> list[bytes]:
        return [self._sendout(key, now) for key in self._p.order if key in self._buffers]

    def next_deadline(self) -> float | None:
        deadlines = [b.deadline for b in self._buffers.values()]
        if self._tmpl_deadline is not None:
            deadlines.append(self._tmpl_deadline)
        return min(deadlines, default=None)

    def _add(self, key: int, record: bytes, now: Clock, out: list[bytes]) -> None:
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = _Buffer(now.up + PFLOW_TIMEOUT, self._gcounter)
        buf.records.append(record)
        self._gcounter += 1
        self.stats["flows"] += 1
        if len(buf.records) >= self._p.maxcount[key]:
            out.append(self._sendout(key, now))

    def _sendout(self, key: int, now: Clock) -> bytes:
        self.stats["datagrams"] += 1
        return self._p.datagram(key, self._buffers.pop(key), now)

    def _sendout_tmpl(self, now: Clock) -> bytes:
        """pflow_sendout_ipfix_tmpl re-arms its own timer, from the moment it runs."""
        self.stats["datagrams"] += 1
        self.stats["templates"] += 1
        self._tmpl_deadline = now.up + self.tmpl_interval
        return self._p.template(now)
