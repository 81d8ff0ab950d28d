"""pflow(4)'s export side: removed states in, NetFlow v5 and IPFIX datagrams out.

pflow.py holds the kernel's constants; v5.py and ipfix.py the wire layouts and their pure
packers; exporter.py the Exporter (buffers, timers, sequence numbers), with one Encoding
per pflowproto.  Nothing here opens a socket or reads a clock: time comes in as a Clock.
"""

from pflowbsd.export.exporter import Exporter

__all__ = ["Exporter"]
