"""Fixtures shared by the unit, system and peer tests.

Helpers that are not fixtures live in tests/support/ (imported as tests.support.X);
data in tests/fixtures/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import replaydata as rd


@pytest.fixture(scope="session")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-made --record folder of tests/support/replaydata.py, written once."""
    d = tmp_path_factory.mktemp("rec")
    rd.write(d)
    return d
