"""pflowbsd: pflow(4) in userland.

A sans-I/O core, one folder per stage of the pipeline (pf/ reads pfctl's text,
rules/ pf's rules, tracker.py diffs snapshots, flows.py makes flows, export/ encodes
NetFlow v5 / IPFIX, pipeline.py joins them; time is always a parameter), under a thin
shell (shell/) that runs pfctl, owns the sockets, timers, signals and logging.
HACKING.md has the map.
"""

__version__ = "0.1.0"
