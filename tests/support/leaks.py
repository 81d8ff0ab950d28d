"""Leak checks for the C accelerators: what memory a few thousand more calls keep."""

import tracemalloc
from collections.abc import Callable


def grown(rounds: Callable[[int], None], warm: int = 100, more: int = 2000) -> int:
    """Bytes still allocated (tracemalloc) after `more` rounds beyond `warm` ones: a few
    hundred at most for code that keeps nothing, the rounds times what it leaks else."""
    tracemalloc.start()
    try:
        rounds(warm)
        mark = tracemalloc.get_traced_memory()[0]
        rounds(more)
        return tracemalloc.get_traced_memory()[0] - mark
    finally:
        tracemalloc.stop()
