"""pflowbsd: pflow(4) in userland.

The package is a sans-I/O core (parsing pfctl text, tracking states, building flows,
encoding NetFlow v5 / IPFIX; time is always a parameter) and one shell module,
`daemon`, that runs pfctl, owns the sockets, timers, signals and logging.
"""

__version__ = "0.1.0"
