"""The exporter: pflow(4)'s buffering, counting and timing, without sockets or clocks.

The caller feeds removed states and the current Clock in and gets datagrams out, to send
as they are.  It mirrors if_pflow.c: export_state is export_pflow_if and copy_flow_to_m /
copy_flow_ipfix_{4,6}_to_m, _sendout is pflow_sendout_v5/_ipfix, due() is the sc_tmo /
sc_tmo6 / sc_tmo_tmpl timeouts firing, flush() is pflow_flush.

What differs by pflowproto is an Encoding, picked from the table PROTOCOLS: it turns a
state into (buffer key, record) pairs and a buffer into a datagram, and holds nothing
that changes.  The Exporter owns every buffer, timer and counter and hands an encoding the
ones it needs as arguments.

Rules kept from the kernel: a buffer's 30 s hold is armed once, when it gets its first
record; a full buffer (count >= maxcount) leaves at once; v5 flow_sequence is the record
counter at buffer allocation, IPFIX sequence the data-record counter at send time,
shared by every data message, and templates carry it without advancing it.  Timers run on
Clock.up (uptime seconds).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from pflowbsd.export import ipfix, v5
from pflowbsd.export.pflow import (
    ETHERMTU,
    MCLBYTES,
    PFLOW_ENGINE_TYPE,
    PFLOW_MAXBYTES,
    PFLOW_MINMTU,
    PFLOW_PROTO_5,
    PFLOW_PROTO_10,
    PFLOW_PROTO_DEFAULT,
    PFLOW_TIMEOUT,
    PFLOW_TMPL_TIMEOUT,
)
from pflowbsd.flows import Clock, Entry, Flow, flow_pair

SPLIT_CAP = PFLOW_MAXBYTES * 65536  # at most 65536 v5 records a direction


class Encoding(Protocol):
    """One pflowproto, as the Exporter drives it.  Made once from (mtu, domain, nat,
    layout, sampling).

    order: the buffer keys, in pflow_flush order.  maxcount: records a buffer of that
    key holds before it leaves (0 is possible: then every record leaves alone).
    """

    order: tuple[int, ...]
    maxcount: dict[int, int]

    def records(self, flow1: Flow, flow2: Flow, now: Clock, stats: dict[str, int]) -> list[tuple[int, bytes]]:
        """The records one removed state makes, in the order they are added, each with
        the key of the buffer it goes to.  Adds to `stats` what it drops or splits."""
        ...

    def entry_run(self, entries: list[Entry], now: Clock, stats: dict[str, int]
                  ) -> tuple[int, list[bytes]] | None:
        """records() of every tracker entry's flows (flows.flow_pair), in order, by a
        shorter way, when they all go to one buffer: its key and the records.  None
        where the protocol has none (then each entry goes through records())."""
        ...

    def datagram(self, key: int, records: list[bytes], now: Clock, gcounter: int, sequence: int) -> bytes:
        """Buffer `key` as it leaves at `now`.  gcounter: records added before its first
        one (sc_gcounter at allocation); sequence: data records sent before it
        (sc_sequence).  Each protocol writes the one its header carries."""
        ...

    template_records: int  # data records a template message carries (sampling: 1)

    def template(self, now: Clock, sequence: int, records: bool = True) -> bytes | None:
        """The template message at `now`, or None for a protocol without templates.
        records=False leaves out its data records (the sampling options record)."""
        ...


class _V5:
    """pflowproto 5: IPv4 only, one buffer, 32-bit counters split above 4 GiB."""

    def __init__(self, mtu: int, domain: int, nat: bool, layout: str = "openbsd",
                 sampling: int = 0):
        self.order: tuple[int, ...] = (0,)
        self.maxcount = {0: v5.maxcount(mtu)}
        self.sampling = sampling
        self.template_records = 0

    def records(self, flow1: Flow, flow2: Flow, now: Clock, stats: dict[str, int]) -> list[tuple[int, bytes]]:
        if flow1.af != socket.AF_INET:
            stats["skipped_v6"] += 1
            return []
        out = []
        for bytes0, bytes1 in self._packs(flow1.octets, flow2.octets, stats):
            if bytes0:  # pflow_pack_flow: a direction without bytes is no record
                out.append((0, v5.pack_record(flow1, bytes0)))
            if bytes1:
                out.append((0, v5.pack_record(flow2, bytes1)))
        return out

    @staticmethod
    def _packs(b0: int, b1: int, stats: dict[str, int]) -> list[tuple[int, int]]:
        """export_pflow_if's (bytes[0], bytes[1]) per pflow_pack_flow, counted."""
        if b0 < PFLOW_MAXBYTES and b1 < PFLOW_MAXBYTES:  # one pflow_pack_flow
            return [(b0, b1)]
        if max(b0, b1) > SPLIT_CAP:
            # Past ~281 TB the kernel would still loop; a counter like 2^64-1 is a
            # corrupt line, and 2^32 records of it would stall the daemon.
            stats["split_clamped"] += 1
            b0, b1 = min(b0, SPLIT_CAP), min(b1, SPLIT_CAP)
        packs = list(v5.split_octets(b0, b1))
        stats["split_records"] += len(packs) - 1
        return packs

    def entry_run(self, entries: list[Entry], now: Clock, stats: dict[str, int]
                  ) -> tuple[int, list[bytes]]:
        split = partial(self._packs, stats=stats)  # past PFLOW_MAXBYTES, counted here
        out: list[bytes] = []
        i, n, run = 0, len(entries), v5.run_c
        while i < n:  # no Flow made, but for IPv6
            if run is not None and (i := run(entries, i, out)) == n:
                break  # the C packer's, up to an entry it leaves to the one below
            fast = v5.entry_records(entries[i], split)
            if fast is None:
                fast = [r for _k, r in self.records(*flow_pair(entries[i]), now, stats)]
            out += fast
            i += 1
        return 0, out

    def datagram(self, key: int, records: list[bytes], now: Clock, gcounter: int, sequence: int) -> bytes:
        return v5.pack_header(len(records), now, gcounter, self.sampling) + b"".join(records)

    def template(self, now: Clock, sequence: int, records: bool = True) -> bytes | None:
        return None


class _IPFIX:
    """pflowproto 10: a buffer and timer per template, templates every tmpl_interval."""

    def __init__(self, mtu: int, domain: int, nat: bool, layout: str = "openbsd",
                 sampling: int = 0):
        table = ipfix.LAYOUTS[layout]
        if layout == "openbsd":
            ids = [ipfix.TMPL_IPV4_ID, ipfix.TMPL_IPV6_ID]
            if nat:
                ids += [ipfix.TMPL_IPV4_NAT_ID, ipfix.TMPL_IPV6_NAT_ID]
        else:  # the later kernels announce every template they have
            ids = sorted(table)
        self.domain = domain
        self.nat = nat or layout != "openbsd"
        self.template_set = ipfix.template_set(ids, table)
        self.options = ipfix.sampling_sets(domain, sampling) if sampling else (b"", b"")
        # RFC 7011 10.3.2: the options data record counts in the sequence like any other
        self.template_records = 1 if sampling else 0
        self.maxcount = {tid: ipfix.maxcount(tid, mtu, table) for tid in ids}
        if layout == "openbsd-nat":  # if_pflow.c 1.112: maxcount4 from the NAT record
            self.maxcount[256] = self.maxcount[257]
        # pflow_flush: AF_INET, then AF_INET6
        self.order = tuple(sorted(ids, key=lambda t: (table[t].af != socket.AF_INET, t)))
        # (address family, translated) -> (template id, its packer)
        self.routes = {(t.af, t.nat): (tid, t.pack) for tid, t in table.items()
                       if tid in ids and t is not ipfix.NAT44_EVENTS}
        # FreeBSD: NAT44 event records follow each IPv4 record of a translated state
        self.events = ipfix.NAT44_EVENTS.pack if ipfix.NAT44_EVENTS in table.values() else None

    def records(self, flow1: Flow, flow2: Flow, now: Clock, stats: dict[str, int]) -> list[tuple[int, bytes]]:
        out = []
        for flow in (flow1, flow2):
            if not flow.octets:
                continue
            route = self.routes.get((flow.af, self.nat and flow.natted))
            if route is None:
                route = self.routes.get((flow.af, False))  # no NAT template for this family
            if route is not None:
                tid, pack = route
                out.append((tid, pack(flow, now)))
            if self.events is not None and flow.natted and flow.af == socket.AF_INET:
                both = self.events(flow, now)
                half = len(both) // 2
                out += [(ipfix.NAT44_EVENTS.id, both[:half]), (ipfix.NAT44_EVENTS.id, both[half:])]
        return out

    def entry_run(self, entries: list[Entry], now: Clock, stats: dict[str, int]) -> None:
        return None  # a buffer per template

    def datagram(self, key: int, records: list[bytes], now: Clock, gcounter: int, sequence: int) -> bytes:
        return ipfix.message(ipfix.data_set(key, records), now, sequence, self.domain)

    def template(self, now: Clock, sequence: int, records: bool = True) -> bytes:
        options, record = self.options
        return ipfix.message(self.template_set + options + (record if records else b""),
                             now, sequence, self.domain)


PROTOCOLS: dict[int, Callable[..., Encoding]] = {PFLOW_PROTO_5: _V5, PFLOW_PROTO_10: _IPFIX}


@dataclass(slots=True)
class _Buffer:
    deadline: float  # Clock.up at which the hold expires
    gcounter: int  # sc_gcounter when allocated (v5 header)
    records: list[bytes] = field(default_factory=list)


class Exporter:
    """One pflowN interface's export side.  All methods return datagrams to send now.

    stats: flows (records added, split chunks included: pflowstats.pflow_flows),
    datagrams (every datagram returned, templates included: pflow_packets), templates,
    skipped_v6 (IPv6 states a v5 exporter dropped), split_records (extra v5 records made
    by splitting counters above 0xffffffff), split_clamped (states whose counters
    passed SPLIT_CAP and were cut to it).  An mtu below 72 is refused as SIOCSIFMTU
    refuses it; above 2048 it is clamped.  The defaults are the kernel's (the domain
    is the PFLOW_ENGINE_TYPE pflow_sendout_ipfix writes).
    """

    def __init__(
        self,
        proto: int = PFLOW_PROTO_DEFAULT,
        mtu: int = ETHERMTU,
        domain: int = PFLOW_ENGINE_TYPE,
        tmpl_interval: int = PFLOW_TMPL_TIMEOUT,
        nat: bool = False,
        layout: str = "openbsd",
        sampling: int = 0,
    ):
        if proto not in PROTOCOLS:
            raise ValueError(f"Invalid pflow protocol: {proto}")
        if mtu < PFLOW_MINMTU:  # SIOCSIFMTU answers EINVAL
            raise ValueError(f"mtu {mtu} below the minimum {PFLOW_MINMTU}")
        self.tmpl_interval = tmpl_interval
        self.stats: dict[str, int] = dict(
            flows=0, datagrams=0, templates=0, skipped_v6=0, split_records=0, split_clamped=0
        )
        self._gcounter = 0  # sc_gcounter: records added
        self._sequence = 0  # sc_sequence: data records sent (only IPFIX headers carry it)
        self._buffers: dict[int, _Buffer] = {}
        self._tmpl_deadline: float | None = None
        self._encoding = PROTOCOLS[proto](min(mtu, MCLBYTES), domain, nat, layout, sampling)

    def start(self, now: Clock) -> list[bytes]:
        """The interface becomes running: IPFIX templates go out at once."""
        return self._sendout_tmpl(now)

    def templates(self, now: Clock) -> list[bytes]:
        """The template message for one new collector, out of turn: the timer is left
        as it is (every collector then gets the next one on it), and so is the
        sequence: the sampling record waits for that next one."""
        msg = self._encoding.template(now, self._sequence, records=False)
        if msg is None:
            return []
        self.stats["datagrams"] += 1
        self.stats["templates"] += 1
        return [msg]

    def export_state(self, flow1: Flow, flow2: Flow, now: Clock) -> list[bytes]:
        return self._add(self._encoding.records(flow1, flow2, now, self.stats), now)

    def export_entries(self, entries: list[Entry], now: Clock) -> list[bytes]:
        """export_state() of each tracker entry's flow pair (flows.flow_pair), in order:
        what a poll's removed states send."""
        run = self._encoding.entry_run(entries, now, self.stats)
        if run is not None:  # one buffer: its records added a datagram at a time
            return self._add_run(*run, now)
        out: list[bytes] = []
        for entry in entries:
            out += self.export_state(*flow_pair(entry), now)
        return out

    def _add_run(self, key: int, records: list[bytes], now: Clock) -> list[bytes]:
        """_add() of records all of one buffer, as many at a time as the buffer has room
        for (at least one: a buffer of maxcount 0 leaves with each)."""
        out: list[bytes] = []
        buffers, cap, i = self._buffers, self._encoding.maxcount[key], 0
        while i < len(records):
            buf = buffers.get(key)
            if buf is None:
                buf = buffers[key] = _Buffer(now.up + PFLOW_TIMEOUT, self._gcounter)
            take = records[i:i + max(1, cap - len(buf.records))]
            buf.records += take
            self._gcounter += len(take)
            i += len(take)
            if len(buf.records) >= cap:
                out.append(self._sendout(key, now))
        self.stats["flows"] += len(records)
        return out

    def _add(self, records: list[tuple[int, bytes]], now: Clock) -> list[bytes]:
        """The records of one state into their buffers; the buffers that filled up."""
        out: list[bytes] = []
        buffers, maxcount = self._buffers, self._encoding.maxcount
        for key, record in records:  # copy_flow_to_m, inlined: this is the hot path
            buf = buffers.get(key)
            if buf is None:
                buf = buffers[key] = _Buffer(now.up + PFLOW_TIMEOUT, self._gcounter)
            buf.records.append(record)
            self._gcounter += 1
            if len(buf.records) >= maxcount[key]:
                out.append(self._sendout(key, now))
        self.stats["flows"] += len(records)
        return out

    def due(self, now: Clock) -> list[bytes]:
        """The timeouts that have fired by now.up, earliest first, templates first on a tie."""
        fired = [(b.deadline, 1, key) for key, b in self._buffers.items() if b.deadline <= now.up]
        if self._tmpl_deadline is not None and self._tmpl_deadline <= now.up:
            fired.append((self._tmpl_deadline, 0, -1))
        out = []
        for _, is_data, key in sorted(fired):
            if is_data:
                out.append(self._sendout(key, now))
            else:
                out += self._sendout_tmpl(now)
        return out

    def flush(self, now: Clock) -> list[bytes]:
        return [self._sendout(key, now) for key in self._encoding.order if key in self._buffers]

    def next_deadline(self) -> float | None:
        deadlines = [b.deadline for b in self._buffers.values()]
        if self._tmpl_deadline is not None:
            deadlines.append(self._tmpl_deadline)
        return min(deadlines, default=None)

    def snapshot(self, records: bool = True
                 ) -> tuple[int, int, float | None, list[tuple[int, float, int, list[bytes]]]]:
        """What a state file keeps: gcounter, sequence, the template deadline and each
        held buffer as (key, deadline, gcounter, records) (records=False: none copied)."""
        return (self._gcounter, self._sequence, self._tmpl_deadline,
                [(k, b.deadline, b.gcounter, list(b.records) if records else [])
                 for k, b in self._buffers.items()])

    def restore(self, gcounter: int, sequence: int, tmpl_deadline: float | None,
                buffers: list[tuple[int, float, int, list[bytes]]]) -> None:
        """A restart: the counters continue and the held records leave at their
        deadlines.  ValueError for a buffer this encoding does not have."""
        for key, _deadline, _gc, records in buffers:
            if key not in self._encoding.maxcount or not records \
                    or len(records) >= max(1, self._encoding.maxcount[key]):
                raise ValueError(f"a held buffer {key} of {len(records)} records")
        self._gcounter, self._sequence, self._tmpl_deadline = gcounter, sequence, tmpl_deadline
        self._buffers = {k: _Buffer(d, g, list(r)) for k, d, g, r in buffers}

    def _sendout(self, key: int, now: Clock) -> bytes:
        buf = self._buffers.pop(key)
        self.stats["datagrams"] += 1
        msg = self._encoding.datagram(key, buf.records, now, buf.gcounter, self._sequence)
        self._sequence += len(buf.records)
        return msg

    def _sendout_tmpl(self, now: Clock) -> list[bytes]:
        """pflow_sendout_ipfix_tmpl re-arms its own timer, from the moment it runs."""
        msg = self._encoding.template(now, self._sequence)
        if msg is None:
            return []
        self.stats["datagrams"] += 1
        self.stats["templates"] += 1
        self._sequence += self._encoding.template_records
        self._tmpl_deadline = now.up + self.tmpl_interval
        return [msg]
