"""State files of format 2 (First and Last as 64-bit in every entry), as pflowbsd before
format 3 wrote them: still read, their entries converted to flows.ENTRY, the same as
this pflowbsd's own file of the same polls (tests/fixtures/statefile/README.md says how
the fixtures were made)."""

import gzip
from pathlib import Path

import pytest

from pflowbsd import flows, statefile
from pflowbsd.shell.statewriter import StateKeeper
from tests.unit import test_statefile_delta as deltas
from tests.unit.test_tracker_paths import golden_polls

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures/statefile"


def golden_file() -> bytes:
    """A base after a golden table's poll, a delta after each of two more (states of
    every kind: IPv4 and IPv6, translated or not, changed and gone)."""
    pipe = deltas.pipeline(10, 25)
    polls = golden_polls()
    boot = deltas.rd.BOOT
    pipe.start(boot + polls[0][1])
    pipe.poll(polls[0][0], boot + polls[0][1])
    pipe.tracker.take_changes()
    data = statefile.encode(statefile.capture(pipe))
    crc = statefile.base_crc(data)
    for n, (text, up) in enumerate(polls[1:], 1):
        pipe.poll(text, boot + up)
        tails, keys = pipe.tracker.take_changes()
        data += statefile.encode_delta(statefile.changes(pipe, tails, keys), n, crc)
    return data


def ours(name: str) -> bytes:
    """This pflowbsd's file of what fixture `name` holds."""
    if name == "format2-golden":
        return golden_file()
    proto, active = {"format2-v10-active25": (10, 25), "format2-v5-active0": (5, 0)}[name]
    return deltas.with_deltas(proto, active, polls=4)[1]


NAMES = ["format2-golden", "format2-v10-active25", "format2-v5-active0"]


def fixture(name: str) -> bytes:
    return gzip.decompress((FIXTURES / f"{name}.bin.gz").read_bytes())


@pytest.mark.parametrize("name", NAMES)
def test_a_format_2_file_reads_as_this_pflowbsd_s_own(name: str) -> None:
    old = fixture(name)
    new = ours(name)
    assert statefile.header(old) == statefile.header(new)
    assert old[8] == 2 and new[8] == statefile.VERSION == 3
    a, b = statefile.decode(old), statefile.decode(new)
    assert a.deltas == b.deltas > 0 and a.torn is b.torn is None
    assert a.entries == b.entries and a.exported == b.exported
    assert (a.signature, a.gcounter, a.sequence, a.tmpl_deadline, a.buffers) == \
        (b.signature, b.gcounter, b.sequence, b.tmpl_deadline, b.buffers)
    sizes = {len(e) for e in a.entries.values() if e is not None}
    assert min(sizes) == flows.ENTRY.size + 8  # IPv4 untranslated: 58 bytes, was 66
    if name == "format2-golden":  # IPv6 and translated entries converted too
        assert sizes == {58, 70, 82, 118}


def test_the_next_save_after_a_format_2_file_is_a_format_3_base(tmp_path: Path) -> None:
    path = tmp_path / "pflow0.state"
    path.write_bytes(fixture("format2-v10-active25"))
    pipe = deltas.pipeline(10, 25)
    keeper = StateKeeper(str(path))
    assert keeper.load(pipe)
    keeper.save(pipe)
    data = path.read_bytes()
    assert data[8] == 3
    saved = statefile.decode(data)
    assert saved.deltas == 0 and saved.entries == pipe.tracker.entries


@pytest.mark.parametrize("t", [flows.TIME_MAX + 1, -flows.TIME_MAX - 1, 1 << 40])
def test_a_format_2_entry_past_32_bits_is_refused(t: int) -> None:
    """Times a format 3 entry cannot hold are out of the bounds every format checks."""
    entry = statefile.WIDE_ENTRY.pack(0, 6, 1, 2, 0, t, 1, 1, 1, 1, 0, 0) + bytes(8)
    assert statefile._entry(entry, 2) is None
    ok = statefile.WIDE_ENTRY.pack(0, 6, 1, 2, -5, flows.TIME_MAX, 1, 1, 1, 1, 0, 0) + bytes(8)
    assert flows.entry_times(statefile._entry(ok, 2) or b"") == (-5, flows.TIME_MAX)
