"""`pflowbsd -d --replay` with the words of issue 13, as a process: the recorded
`ifconfig` gives if_index, `active-timeout` splits a live state into spans that sum to
its counters, and a Recorder writes `ifconfig` and `<t>.ifconfig` as they change."""

import struct

from pflowbsd.export import v5
from tests.support import replaydata as rd
from tests.unit.test_exporter_words import OPENBSD_IFCONFIG


def v5_records(datagrams):
    out = []
    for d in datagrams:
        count = struct.unpack_from("!H", d, 2)[0]
        out += [v5.RECORD.unpack_from(d, v5.HEADER.size + i * v5.RECORD.size) for i in range(count)]
    return out


def test_recorded_ifconfig_gives_if_index_in_the_states_direction(tmp_path):
    rd.write(tmp_path)
    (tmp_path / "ifconfig").write_text(OPENBSD_IFCONFIG)
    run, datagrams, _port = rd.capture(tmp_path)
    assert run.returncode == 0, run.stderr
    idx = {(r[0], r[9]): (r[3], r[4]) for r in v5_records(datagrams)}
    assert idx[(bytes([192, 168, 0, 2]), 50000)] == (0, 1)  # nat-out on em0 (index 1), out
    assert idx[(bytes([198, 51, 100, 5]), 51234)] == (1, 0)  # rdr-in on em0, in
    assert idx[(bytes([10, 0, 0, 5]), 50000)] == (0, 0)  # floating: 0
    run, datagrams, _port = rd.capture(rd.write(tmp_path / "none") and tmp_path / "none")
    assert {(r[3], r[4]) for r in v5_records(datagrams)} == {(0, 0)}


def test_active_timeout_exports_the_long_state_in_spans_that_sum_to_its_counters(tmp_path):
    rd.write(tmp_path)
    run, datagrams, _port = rd.capture(tmp_path, "active-timeout", "30")
    assert run.returncode == 0, run.stderr
    recs = v5_records(datagrams)
    # `long` (10.0.0.7, created at T0-100, 900:900 bytes, never removed) is due at once
    longs = [r for r in recs if r[0] == bytes([10, 0, 0, 7])]
    assert [(r[5], r[6]) for r in longs] == [(9, 900)]
    # tcp-out: 5000:60000 bytes at T0 (age 600: due), 6100:71234 at T0+10, gone at T0+20
    out = [r[6] for r in recs if r[0] == bytes([10, 0, 0, 5]) and r[9] == 50000]
    back = [r[6] for r in recs if r[1] == bytes([10, 0, 0, 5]) and r[10] == 50000]
    assert out == [5000, 1100] and back == [60000, 11234]
    assert "active_exports=" in run.stderr


def test_the_recorder_keeps_ifconfig_and_each_change(tmp_path):
    from pflowbsd.shell.record import Recorder
    rec = Recorder(str(tmp_path / "rec"))
    rec.interfaces(OPENBSD_IFCONFIG, rd.T0)
    rec.interfaces(OPENBSD_IFCONFIG, rd.T0 + 10)  # unchanged: nothing written
    changed = OPENBSD_IFCONFIG.replace("index 1 ", "index 7 ")
    rec.interfaces(changed, rd.T0 + 20)
    rec.close()
    names = sorted(p.name for p in (tmp_path / "rec").iterdir())
    assert names == [f"{rd.T0 + 20}.ifconfig", "ifconfig"]
    assert (tmp_path / "rec" / "ifconfig").read_text() == OPENBSD_IFCONFIG
