"""End to end, IPFIX: the replay of test_e2e_v5 with `pflowproto 10`, into nfcapd, into
tshark (templates, NAT fields, sequence numbers), and to several collectors at once."""

import datetime
import socket

import pytest

from tests.support import replaydata as rd
from tests.support.peers import free_udp_port, require, tshark_fields, write_pcap

NAT_V4 = ("cflow.post_natsource_ipv4_address", "cflow.post_natdestination_ipv4_address")
NAT_V6 = ("cflow.post_nat_source_ipv6_address", "cflow.post_nat_destination_ipv6_address")
NAT_PORTS = ("cflow.post_naptsource_transport_port", "cflow.post_naptdestination_transport_port")
FIELDS = ["cflow.version", "cflow.od_id", "cflow.sequence", "cflow.flowset_id",
          "cflow.template_id", "cflow.template_ipfix_field_type", "cflow.srcaddr",
          "cflow.srcaddrv6", "cflow.dstaddr", "cflow.dstaddrv6", "cflow.srcport",
          "cflow.dstport", "cflow.protocol", "cflow.packets", "cflow.octets",
          "cflow.abstimestart", "cflow.abstimeend", *NAT_V4, *NAT_V6, *NAT_PORTS,
          "cflow.exporttime"]  # fmt: skip
F = {name: k for k, name in enumerate(FIELDS)}


def expected(nat: bool):
    """(src, sport, dst, dport, proto, packets, bytes, first, last, post-NAT or None) of
    every IPFIX record: IPv4 and IPv6, 64-bit counters, never split."""
    want = []
    for s in rd.states():
        if s.exported:
            for src, sp, dst, dp, pkts, nbytes, post in rd.records(s, split=False):
                want.append((src, sp, dst, dp, s.proto, pkts, nbytes, s.first, s.last,
                             post if nat else None))
    return want


def epoch_ms(text: str) -> int:
    """tshark's 'Nov 14, 2023 22:11:41.000000000 UTC' -> epoch ms."""
    stamp, frac = text.removesuffix(" UTC").split(".")
    dt = datetime.datetime.strptime(stamp, "%b %d, %Y %H:%M:%S").replace(tzinfo=datetime.UTC)
    return int(dt.timestamp()) * 1000 + int(frac[:3])


@pytest.fixture(scope="module")
def folder(recording):
    return recording


def decode(datagrams, port, path):
    write_pcap(path, datagrams, port)
    return tshark_fields(path, port, FIELDS)


@pytest.mark.parametrize("nat", [False, True])
def test_nfcapd_shows_the_v5_flows_plus_ipv6_unsplit(folder, tmp_path, nat):
    nfdump = require("nfdump")
    words = ["pflowproto", "10"] + (["nat", "on"] if nat else [])
    rows, log, run = rd.nfcapd_collect(tmp_path / "flows",
                                       lambda port: rd.replay(folder, [f"127.0.0.1:{port}"], *words),
                                       nfdump)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Sequence Errors: 0" in log and "Bad Packets: 0" in log, log

    def key(src, sp, dst, dp, pr, pkt, byt, ts, te):  # ICMP "ports" are pf's id/type
        return (src, -1, dst, -1, pr, pkt, byt, ts, te) if pr == 1 else (src, sp, dst, dp, pr, pkt, byt, ts, te)

    got = sorted(key(r["sa"], int(r["sp"]), r["da"], int(float(r["dp"])), int(r["pr"]), int(r["pkt"]),
                     int(r["byt"]), int(float(r["ts"])), int(float(r["te"]))) for r in rows)  # fmt: skip
    want = expected(nat)
    assert got == sorted(key(*w[:9]) for w in want)
    assert any(r["byt"] == "9000000000" for r in rows)  # 64-bit, whole
    assert len([r for r in rows if ":" in r["sa"]]) == 4
    # nfdump 1.7.1 shows post-NAT IPv4 addresses and the ports (IPv6 ones: tshark below)
    for r in rows:
        w = next(w for w in want if (w[0], w[2], w[6]) == (r["sa"], r["da"], int(r["byt"])))
        post = w[9] or ("0.0.0.0", 0, "0.0.0.0", 0)
        assert (int(r["nsp"]), int(r["ndp"])) == (post[1], post[3])
        if ":" not in r["sa"]:
            assert (r["nsa"], r["nda"]) == (post[0], post[2])


@pytest.mark.parametrize("nat", [False, True])
def test_tshark_reads_every_template_and_record_and_the_sequence(folder, tmp_path, nat):
    words = ["pflowproto", "10"] + (["nat", "on"] if nat else [])
    run, datagrams, port = rd.capture(folder, *words)
    assert run.returncode == 0, run.stderr
    rows = decode(datagrams, port, tmp_path / "ipfix.pcap")  # no malformed, no unknown template
    assert {(r[F["cflow.version"]][0], r[F["cflow.od_id"]][0]) for r in rows} == {("10", "42")}
    tids = [256, 257, 258, 259] if nat else [256, 257]
    counter, got, template_times = 0, [], []
    for r in rows:
        [set_id] = r[F["cflow.flowset_id"]]
        [seq] = r[F["cflow.sequence"]]
        assert int(seq) == counter  # data records sent before this message (§3.2)
        if set_id == "2":  # templates carry the counter and do not advance it
            assert [int(t) for t in r[F["cflow.template_id"]]] == tids
            types = {int(t) for t in r[F["cflow.template_ipfix_field_type"]]}
            assert ({225, 226, 227, 228, 281, 282} <= types) == nat
            template_times.append(int(r[F["cflow.exporttime"]][0]))
            continue
        v6 = bool(r[F["cflow.srcaddrv6"]])
        src = r[F["cflow.srcaddrv6"]] if v6 else r[F["cflow.srcaddr"]]
        dst = r[F["cflow.dstaddrv6"]] if v6 else r[F["cflow.dstaddr"]]
        n = len(src)
        assert int(set_id) in tids and (int(set_id) in (257, 259)) == v6
        natted = int(set_id) >= 258
        cols = [src, r[F["cflow.srcport"]], dst, r[F["cflow.dstport"]], r[F["cflow.protocol"]],
                r[F["cflow.packets"]], r[F["cflow.octets"]], r[F["cflow.abstimestart"]],
                r[F["cflow.abstimeend"]]]  # fmt: skip
        assert all(len(c) == n for c in cols)
        if natted:
            na, nd = NAT_V6 if v6 else NAT_V4
            post = list(zip(r[F[na]], map(int, r[F[NAT_PORTS[0]]]), r[F[nd]], map(int, r[F[NAT_PORTS[1]]]),
                            strict=True))  # fmt: skip
        else:
            assert not any(r[F[f]] for f in (*NAT_V4, *NAT_V6, *NAT_PORTS))
            post = [None] * n
        for k in range(n):
            got.append((src[k], int(cols[1][k]), dst[k], int(cols[3][k]), int(cols[4][k]), int(cols[5][k]),
                        int(cols[6][k]), epoch_ms(cols[7][k]) // 1000, epoch_ms(cols[8][k]) // 1000, post[k]))
        counter += n
    assert sorted(got, key=repr) == sorted(expected(nat), key=repr)
    assert counter == 49
    # at start, then every 30 s of the replay's clock, whether data went or not
    assert template_times == [rd.T0, rd.T0 + 30, rd.T0 + 60]


def test_every_collector_gets_every_datagram_and_a_refusing_one_holds_up_none(folder):
    dead = free_udp_port()  # nothing listens there: the kernel answers "port unreachable"
    with rd.listener() as s4, rd.listener(socket.AF_INET6, "::1") as s6:
        dsts = [f"127.0.0.1:{s4.getsockname()[1]}", f"[::1]:{s6.getsockname()[1]}", f"127.0.0.1:{dead}"]
        run = rd.replay(folder, dsts, "pflowproto", "10")
        got4, got6 = rd.drain(s4), rd.drain(s6)
    assert run.returncode == 0, run.stderr
    assert got4 == got6
    records = 0
    for d in got4:
        assert int.from_bytes(d[8:12], "big") == records  # whole and in order
        set_id = int.from_bytes(d[16:18], "big")
        records += 0 if set_id == 2 else (len(d) - 20) // (54 if set_id == 256 else 78)
    assert records == 49 and len(got4) == 3 + 2 + 1  # templates; 26 + 19 IPv4; 4 IPv6


def test_a_refusing_collector_is_logged_once(folder):
    with rd.listener() as s:
        dsts = [f"127.0.0.1:{s.getsockname()[1]}", f"127.0.0.1:{free_udp_port()}"]
        run = rd.replay(folder, dsts, "pflowproto", "10")
        assert len(rd.drain(s)) == 6
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("Connection refused") == 1 and "sending again" not in run.stderr, run.stderr
