"""pflowbsd.statefile: a pipeline's knowledge as bytes and back (issue 12, point 1)."""

import struct

import pytest

from pflowbsd import statefile
from pflowbsd.config import Config
from pflowbsd.pipeline import PfSide, Pipeline
from pflowbsd.statefile import StateFileError
from tests.support import replaydata as rd


def pipeline(proto=5, active=0, instance="pflow0"):
    cfg = Config(instance=instance, flowdst=[("127.0.0.1", 9)], pflowproto=proto,
                 active_timeout=active)
    side = PfSide(cfg)
    return Pipeline(cfg, side, rd.BOOT)


def fed(proto=5, active=0, polls=2):
    """A pipeline that has seen the replay scenario's first snapshots: states tracked,
    records held, counters moved."""
    pipe = pipeline(proto, active)
    states = rd.states()
    pipe.start(rd.T0)
    for t in rd.SNAPS[:polls]:
        text = "".join(s.text(t) for s in states if any(x.t == t for x in s.seen))
        pipe.poll(text, t)
    return pipe


@pytest.mark.parametrize("proto", [5, 10])
@pytest.mark.parametrize("active", [0, 5])
def test_what_is_encoded_is_what_is_restored(proto, active):
    pipe = fed(proto, active)
    assert pipe.exporter.snapshot()[3], "records held"
    data = statefile.encode(statefile.capture(pipe))
    saved = statefile.decode(data)
    fresh = pipeline(proto, active)
    assert statefile.restore(fresh, saved)
    assert fresh.tracker.entries == pipe.tracker.entries
    assert fresh.tracker.exported == pipe.tracker.exported
    assert fresh.exporter.snapshot() == pipe.exporter.snapshot()
    assert statefile.encode(statefile.capture(fresh)) == data
    # and the two go on alike: the same datagrams from the same next snapshot
    t = rd.SNAPS[2]
    text = "".join(s.text(t) for s in rd.states() if any(x.t == t for x in s.seen))
    assert fresh.poll(text, t)[1].datagrams == pipe.poll(text, t)[1].datagrams
    assert fresh.flush(t + 1).datagrams == pipe.flush(t + 1).datagrams


def test_the_header_names_instance_and_boot():
    data = statefile.encode(statefile.capture(fed()))
    assert statefile.header(data) == ("pflow0", rd.BOOT)


def test_other_exporter_words_keep_the_states_not_the_counters():
    saved = statefile.decode(statefile.encode(statefile.capture(fed(5))))
    fresh = pipeline(10)
    assert not statefile.restore(fresh, saved)
    assert fresh.tracker.entries == saved.entries
    assert fresh.exporter.snapshot() == (0, 0, None, [])


def test_the_fingerprint_moves_only_when_the_content_does():
    pipe = fed()
    mark = statefile.fingerprint(pipe)
    assert statefile.fingerprint(pipe) == mark
    pipe.flush(rd.T0 + 30)
    assert statefile.fingerprint(pipe) != mark


@pytest.mark.parametrize("cut", [0, 3, 20, statefile.HEADER.size, -1])
def test_a_truncated_file_is_refused(cut):
    data = statefile.encode(statefile.capture(fed()))
    with pytest.raises(StateFileError):
        statefile.decode(data[:cut])


def test_a_flipped_byte_anywhere_is_refused():
    data = statefile.encode(statefile.capture(fed()))
    for k in range(0, len(data), max(1, len(data) // 97)):
        bad = data[:k] + bytes([data[k] ^ 0x41]) + data[k + 1:]
        with pytest.raises(StateFileError):
            statefile.decode(bad)


def test_another_format_version_is_refused():
    data = bytearray(statefile.encode(statefile.capture(fed())))
    data[8] = 99
    with pytest.raises(StateFileError, match="format version 99"):
        statefile.decode(bytes(data))


def test_entry_lengths_are_little_endian_on_any_host():
    """The lengths field is "<H" each whatever the host's byte order (array's is the
    host's: a big-endian host swaps them)."""
    assert statefile._u16s([1, 0x1234, 65535]) == struct.pack("<3H", 1, 0x1234, 65535)
