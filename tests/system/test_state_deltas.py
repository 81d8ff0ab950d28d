"""The state file through its deltas, end to end (issue 16, point 5): a recording of a
table big enough that the daemon appends deltas (its base past WHOLE_BELOW), replayed
in two runs on one state file, sends what one run sends; the file the first run left
is a base and deltas; a torn last delta is dropped with one line and the rest restored."""

from pathlib import Path

import pytest

from pflowbsd import statefile
from pflowbsd.shell.statewriter import WHOLE_BELOW
from tests.support import replaydata as rd
from tests.system.test_restart import flows, split
from tests.unit.test_statefile_delta import POLLS, at, table

STATES = 1200


def recording(folder: Path) -> Path:
    rd.write(folder, [])
    for f in folder.glob("*.states"):
        f.unlink()
    for p in range(POLLS):
        (folder / f"{at(p)}.states").write_text(table(p, STATES))
    return folder


@pytest.mark.parametrize("proto", ["5", "10"])
def test_a_replay_in_two_runs_through_deltas_sends_what_one_run_sends(tmp_path, proto):
    full = recording(tmp_path / "full")
    first, second = split(full, 8)
    run, one, _ = rd.capture(full, "pflowproto", proto, "active-timeout", "25")
    assert run.returncode == 0, run.stderr
    state = tmp_path / "pflow0.state"
    r1, part1, _ = rd.capture(first, "pflowproto", proto, "active-timeout", "25",
                              "--state-file", str(state))
    assert r1.returncode == 0, r1.stderr
    data = state.read_bytes()
    saved = statefile.decode(data)
    assert saved.deltas > 0 and len(data) > WHOLE_BELOW  # the run appended deltas
    r2, part2, _ = rd.capture(second, "pflowproto", proto, "active-timeout", "25",
                              "--state-file", str(state))
    assert r2.returncode == 0 and "restored" in r2.stderr, r2.stderr
    want, gaps_one = flows(one)
    got, gaps = flows(part1 + part2)
    assert len(want) > STATES
    assert got == want  # none lost, none twice
    assert gaps == gaps_one == 0


def test_a_torn_last_delta_is_dropped_with_one_line(tmp_path):
    full = recording(tmp_path / "full")
    first, second = split(full, 8)
    state = tmp_path / "pflow0.state"
    rd.capture(first, "--state-file", str(state))
    data = state.read_bytes()
    saved = statefile.decode(data)
    assert saved.deltas > 0
    state.write_bytes(data[:-10])  # as a crash while appending the last one leaves it
    run, _d, _ = rd.capture(second, "--state-file", str(state))
    assert run.returncode == 0, run.stderr
    lines = [x for x in run.stderr.splitlines() if "state file" in x]
    assert len(lines) == 1, run.stderr
    assert "restored" in lines[0] and f"torn (delta {saved.deltas} cut short" in lines[0]
    assert not (tmp_path / "pflow0.state.bad").exists()
    assert statefile.decode(state.read_bytes()).torn is None  # a new base at once
