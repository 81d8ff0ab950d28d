"""Fixtures shared by the unit, system and peer tests.

Helpers that are not fixtures live in tests/support/ (imported as tests.support.X);
data in tests/fixtures/.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support import replaydata as rd

# The daemons a test starts as root stay root (-u's default is $PFLOWBSD_USER), as the
# tests expect of the files in their tmp_path; set here, at import, before any test
# module copies os.environ.  tests/system/test_privsep.py drops privileges for real.
os.environ.setdefault("PFLOWBSD_USER", "root")


@pytest.fixture(scope="session")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-made --record folder of tests/support/replaydata.py, written once."""
    d = tmp_path_factory.mktemp("rec")
    rd.write(d)
    return d


# The daemons a test starts put their default control socket in a folder of this run,
# not in /var/run, so two test runs at once (or a real pflow0 on this host) do not
# collide; set at import, before any test module copies os.environ.
_RUN_DIR = tempfile.mkdtemp(prefix="pflowbsd-run-")
os.environ["PFLOWBSD_RUN_DIR"] = _RUN_DIR
atexit.register(shutil.rmtree, _RUN_DIR, True)


@pytest.fixture
def run_dir() -> Path:
    """The folder of the daemons' default control sockets (PFLOWBSD_RUN_DIR)."""
    return Path(_RUN_DIR)
