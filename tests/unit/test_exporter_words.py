"""The exporter's words of issue 13 through the Pipeline: sync own, our own export
traffic, if_index, templates to a new collector, ipfix-layout and sampling.  Snapshots
in, datagrams per flowdst out; each expected value is written out here."""

import socket
import struct

from pflowbsd.config import Config
from pflowbsd.export import ipfix, v5
from pflowbsd.pipeline import PfSide, Pipeline
from tests.support import replaydata as rd
from tests.support.pftext import record, sid

DST_A, DST_B = ("127.0.0.1", 9995), ("127.0.0.1", 9996)
T0 = rd.T0
EST = "ESTABLISHED:ESTABLISHED"
OUT = f"all tcp 10.0.0.5:50000 -> 93.184.216.34:443       {EST}"
NAT_OUT = f"em0 tcp 203.0.113.2:57342 (192.168.0.2:50000) -> 198.51.100.7:22       {EST}"
RDR_IN = f"em0 tcp 192.168.1.100:8080 (203.0.113.1:80) <- 198.51.100.5:51234       {EST}"
OPENBSD_IFCONFIG = """lo0: flags=2008049<UP,LOOPBACK,RUNNING,MULTICAST,LRO> mtu 32768
\tindex 3 priority 0 llprio 3
\tgroups: lo
\tinet 127.0.0.1 netmask 0xff000000
em0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1500
\tlladdr 00:11:22:33:44:55
\tindex 1 priority 0 llprio 3
\tgroups: egress
\tinet 203.0.113.2 netmask 0xffffff00 broadcast 203.0.113.255
"""


def pipeline(**words) -> Pipeline:
    cfg = Config(flowdst=words.pop("flowdst", [DST_A]), **words)
    side = PfSide(cfg)
    side.load(None, None, rd.INFO)  # Hostid: 0x1a2b3c4d
    return Pipeline(cfg, side, rd.BOOT)


def gone(pipe: Pipeline, *records: str, dst=DST_A) -> list[bytes]:
    """The records seen at T0, all gone at T0+10, flushed: every datagram to dst."""
    out = pipe.start(T0).datagrams.get(dst, [])
    out += pipe.poll("".join(records), T0)[1].datagrams.get(dst, [])
    out += pipe.poll("", T0 + 10)[1].datagrams.get(dst, [])
    return out + pipe.flush(T0 + 10).datagrams.get(dst, [])


def v5_records(datagrams: list[bytes]) -> list[tuple]:
    out = []
    for d in datagrams:
        count = v5.HEADER.unpack_from(d)[1]
        out += [v5.RECORD.unpack_from(d, v5.HEADER.size + i * v5.RECORD.size) for i in range(count)]
    return out


def sets(datagram: bytes) -> list[tuple[int, bytes]]:
    """(set id, body) of every set in one IPFIX message."""
    out, o = [], ipfix.HEADER.size
    while o < len(datagram):
        set_id, length = ipfix.SET_HEADER.unpack_from(datagram, o)
        out.append((set_id, datagram[o + 4:o + length]))
        o += length
    return out


def rec(head: str, n: int, creatorid: str = "1a2b3c4d") -> str:
    return record(head, id=sid(n), creatorid=creatorid, pkts="10:8", bytes="1200:4800")


def test_sync_own_exports_only_the_states_this_host_created():
    peer = rec(OUT.replace("10.0.0.5", "10.0.0.6"), 2, creatorid="0badcafe")
    both = [rec(OUT, 1), peer]
    srcs = {socket.inet_ntoa(r[0]) for r in v5_records(gone(pipeline(), *both))}
    assert {"10.0.0.5", "10.0.0.6"} <= srcs
    pipe = pipeline(sync="own")
    srcs = {socket.inet_ntoa(r[0]) for r in v5_records(gone(pipe, *both))}
    assert "10.0.0.6" not in srcs and "10.0.0.5" in srcs
    assert pipe.stats()["not_ours"] == 1


def test_states_carrying_our_own_datagrams_are_not_exported_unless_export_all():
    own = rec("all udp 10.0.0.1:40000 -> 127.0.0.1:9995       MULTIPLE:SINGLE", 3)
    other_port = rec("all udp 10.0.0.1:40001 -> 127.0.0.1:9997       MULTIPLE:SINGLE", 4)
    pipe = pipeline()
    ports = {r[10] for r in v5_records(gone(pipe, own, other_port))}
    assert ports == {9997, 40001}  # the state to 9997 both ways; nothing of 9995
    assert pipe.stats()["own_traffic"] == 1
    ports = {r[10] for r in v5_records(gone(pipeline(export_all=True), own, other_port))}
    assert 9995 in ports


def test_if_index_of_the_creating_interface_in_the_states_direction():
    pipe = pipeline()
    pipe.interfaces_read(OPENBSD_IFCONFIG)
    recs = v5_records(gone(pipe, rec(NAT_OUT, 5), rec(RDR_IN, 6), rec(OUT, 7)))
    by_src = {(socket.inet_ntoa(r[0]), r[9]): (r[3], r[4]) for r in recs}
    assert by_src[("192.168.0.2", 50000)] == (0, 1)  # out on em0: flow1's if_index_out
    assert by_src[("198.51.100.7", 22)] == (1, 0)  # flow2 mirrored
    assert by_src[("198.51.100.5", 51234)] == (1, 0)  # in on em0: flow1's if_index_in
    assert by_src[("10.0.0.5", 50000)] == (0, 0)  # floating: pf does not say


def test_a_collector_added_on_sighup_gets_the_templates_before_any_data():
    pipe = pipeline(pflowproto=10)
    pipe.start(T0)
    pipe.poll(rec(OUT, 1), T0)
    pipe.poll("", T0 + 10)  # held: the 30 s buffer
    cfg = Config(flowdst=[DST_A, DST_B], pflowproto=10)
    side = PfSide(cfg)
    out = pipe.reconfigure(cfg, side, T0 + 11).datagrams
    assert [s[0][0] for s in map(sets, out[DST_B])][0] == ipfix.TMPL_SET_ID
    assert ipfix.TMPL_IPV4_ID in [s[0][0] for s in map(sets, out[DST_B])]
    assert [s[0][0] for s in map(sets, out[DST_A])][0] == ipfix.TMPL_SET_ID


def template_ids(body: bytes) -> list[tuple[int, int]]:
    out, o = [], 0
    while o < len(body):
        tid, count = ipfix.TMPL_HEADER.unpack_from(body, o)
        out.append((tid, count))
        o += 4 + 4 * count
    return out


def test_openbsd_nat_layout_announces_257_nat_and_258_ipv6_and_uses_257():
    pipe = pipeline(pflowproto=10, ipfix_layout="openbsd-nat")
    out = gone(pipe, rec(NAT_OUT, 5), rec(OUT, 7))
    assert template_ids(sets(out[0])[0][1]) == [(256, 12), (257, 16), (258, 12)]
    data = {sid_: body for d in out[1:] for sid_, body in sets(d)}
    assert len(data[257]) == 2 * ipfix.FLOW4_NAT.size  # nat-out, both ways
    v = ipfix.FLOW4_NAT.unpack_from(data[257])
    assert (socket.inet_ntoa(v[0]), socket.inet_ntoa(v[8]), v[10], v[12]) == \
        ("192.168.0.2", "203.0.113.2", 57342, 50000)
    assert len(data[256]) == 2 * ipfix.FLOW4.size
    assert ipfix.maxcount(257, 1500, ipfix.LAYOUTS["openbsd-nat"]) == 22


def test_freebsd_layout_adds_nat44_create_and_delete_events():
    pipe = pipeline(pflowproto=10, ipfix_layout="freebsd")
    out = gone(pipe, rec(NAT_OUT, 5), rec(RDR_IN, 6))
    assert template_ids(sets(out[0])[0][1]) == [(256, 12), (257, 12), (258, 11)]
    data = b"".join(body for d in out[1:] for sid_, body in sets(d) if sid_ == 258)
    events = [ipfix.NAT44.unpack_from(data, o) for o in range(0, len(data), ipfix.NAT44.size)]
    assert len(events) == 8  # two states, both directions, create + delete each
    keyed = [(e[1], socket.inet_ntoa(e[3]), e[4], socket.inet_ntoa(e[5]), e[6],
              socket.inet_ntoa(e[7]), e[8], socket.inet_ntoa(e[9]), e[10]) for e in events]
    # nat-out, flow1: pre = stack key, post = wire key, src = addr[1]; flow2 mirrored
    nat_out = ("192.168.0.2", 50000, "203.0.113.2", 57342, "198.51.100.7", 22, "198.51.100.7", 22)
    # rdr-in, flow1: key[PF_SK_STACK] read src=1, dst=0 puts the internal server first
    rdr_in = ("192.168.1.100", 8080, "203.0.113.1", 80, "198.51.100.5", 51234, "198.51.100.5", 51234)
    mirror = lambda k: (*k[4:], *k[:4])
    want = {k for k in (nat_out, rdr_in, mirror(nat_out), mirror(rdr_in))}
    assert {k[1:] for k in keyed if k[0] == 4} == want
    assert {k[1:] for k in keyed if k[0] == 5} == want
    assert [k[0] for k in keyed] == [4, 5] * 4  # create, then delete, per direction
    assert events[0][0] <= events[1][0]  # create at the creation, delete at the last packet


def test_sampling_in_the_v5_header_and_an_ipfix_options_template():
    d = gone(pipeline(sampling=100), rec(OUT, 1))
    assert v5.HEADER.unpack_from(d[0])[-1] == 0x4000 | 100
    assert v5.HEADER.unpack_from(gone(pipeline(), rec(OUT, 1))[0])[-1] == 0
    tmpl = pipeline(pflowproto=10, sampling=100).start(T0).datagrams[DST_A][0]
    got = sets(tmpl)
    assert [s[0] for s in got] == [ipfix.TMPL_SET_ID, ipfix.OPTIONS_SET_ID, ipfix.OPTIONS_ID]
    assert struct.unpack("!HHHHHHH", got[1][1][:14]) == (ipfix.OPTIONS_ID, 2, 1, 149, 4, 305, 4)
    assert ipfix.OPTIONS.unpack(got[2][1]) == (42, 100)
    plain = pipeline(pflowproto=10).start(T0).datagrams[DST_A][0]
    assert [s[0] for s in sets(plain)] == [ipfix.TMPL_SET_ID]
