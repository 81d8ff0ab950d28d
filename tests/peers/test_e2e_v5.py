"""End to end, NetFlow v5: `pflowbsd -d --replay` over a hand-made record folder, sent
to a real nfcapd and to a socket of ours (decoded by tshark); every expected value is
worked out here from the numbers written into the snapshots (replaydata.py)."""

import pytest

from tests.support import replaydata as rd
from tests.support.peers import require, tshark_fields, write_pcap

PROTO = {"TCP": 6, "UDP": 17, "ICMP": 1}


expected_v5 = rd.expected_v5


def no_icmp_ports(rows):
    """ICMP "ports" are pf's virtual id/type; collectors print them as type.code, so
    those rows are compared without ports (test_export checks the bytes)."""
    return sorted((r[0], -1, r[2], -1, *r[4:]) if r[4] == 1 else r for r in rows)


@pytest.fixture(scope="module")
def folder(recording):
    return recording


@pytest.fixture(scope="module")
def nfcapd_rows(folder, tmp_path_factory):
    nfdump = require("nfdump")
    rows, log, run = rd.nfcapd_collect(tmp_path_factory.mktemp("flows"),
                                       lambda port: rd.replay(folder, [f"127.0.0.1:{port}"]),
                                       nfdump)
    assert run.returncode == 0, run.stderr
    return rows, log


@pytest.fixture(scope="module")
def captured(folder):
    run, datagrams, port = rd.capture(folder)
    assert run.returncode == 0, run.stderr
    return datagrams, port


def test_the_scenario_is_what_the_tests_think():
    want = expected_v5()
    assert len(want) == 47  # 45 records removed at T0+10, tcp-out's 2 at T0+20
    big = [w for w in want if w[0] == "198.51.100.20"]
    assert [w[6] for w in big] == [rd.M, rd.M, 9_000_000_000 - 2 * rd.M]


def test_nfcapd_receives_every_v5_record(nfcapd_rows):
    rows, log = nfcapd_rows
    assert "Sequence Errors: 0" in log and "Bad Packets: 0" in log, log
    got = [(r["sa"], int(r["sp"]), r["da"], int(float(r["dp"])), int(r["pr"]), int(r["pkt"]),
            int(r["byt"]), int(float(r["ts"])), int(float(r["te"]))) for r in rows]  # fmt: skip
    assert {r["eng"] for r in rows} == {"42/42"}
    assert no_icmp_ports(got) == no_icmp_ports(expected_v5())


def test_nfcapd_shows_pre_translation_keys_and_no_ipv6(nfcapd_rows):
    rows, _ = nfcapd_rows
    pairs = {(r["sa"], r["sp"], r["da"], r["dp"]) for r in rows}
    assert ("192.168.0.2", "50000", "198.51.100.7", "22") in pairs  # nat-to: internal source
    assert ("198.51.100.5", "51234", "203.0.113.1", "80") in pairs  # rdr-to: public destination
    assert not {r["sa"] for r in rows} & {"203.0.113.2", "192.168.1.100"}
    assert not any(":" in r["sa"] for r in rows)  # v5 carries IPv4 only
    assert not {r["sa"] for r in rows} & {"10.0.0.7", "10.0.0.8"}  # alive; not flagged
    one_sided = [r for r in rows if "192.0.2.9" in (r["sa"], r["da"])]
    assert [(r["sa"], r["byt"]) for r in one_sided] == [("10.0.0.5", "500")]


def test_v5_datagrams_split_when_full_sequence_counts_records(captured, tmp_path):
    datagrams, port = captured
    write_pcap(tmp_path / "v5.pcap", datagrams, port)
    rows = tshark_fields(tmp_path / "v5.pcap", port, [
        "cflow.version", "cflow.count", "cflow.sequence", "cflow.unix_secs", "cflow.sysuptime",
        "cflow.engine_type", "cflow.engine_id", "cflow.srcaddr", "cflow.srcport", "cflow.dstaddr",
        "cflow.dstport", "cflow.protocol", "cflow.packets", "cflow.octets"])  # fmt: skip
    counts = [int(r[1][0]) for r in rows]
    assert counts == [30, 17]  # full at 30; the rest 30 s after its first record
    seq = [int(r[2][0]) for r in rows]
    assert seq == [0, 30]  # records before each datagram
    assert [int(r[3][0]) for r in rows] == [rd.T0 + 10, rd.T0 + 40]
    assert [float(r[4][0]) for r in rows] == [rd.T0 + 10 - rd.BOOT, rd.T0 + 40 - rd.BOOT]
    assert {(r[0][0], r[5][0], r[6][0]) for r in rows} == {("5", "42", "42")}
    got = []
    for r in rows:
        for rec in zip(*r[7:14], strict=True):
            sa, sp, da, dp, pr, pk, by = rec
            got.append((sa, int(sp), da, int(dp), int(pr), int(pk), int(by)))
    assert sorted(got) == sorted(w[:7] for w in expected_v5())


def test_v5_split_records_each_carry_the_whole_packet_count(nfcapd_rows):
    rows, _ = nfcapd_rows
    reply = [(int(r["pkt"]), int(r["byt"])) for r in rows if r["sa"] == "198.51.100.20"]
    assert sorted(reply) == sorted([(6_500_000, rd.M)] * 2 + [(6_500_000, 9_000_000_000 - 2 * rd.M)])
    assert sum(b for _, b in reply) == 9_000_000_000
