"""Shared helpers of the test suite: paths, hand-made pfctl text, replay scenarios, peers."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout
FIXTURES = ROOT / "tests" / "fixtures"
