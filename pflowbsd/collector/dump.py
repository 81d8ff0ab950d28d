"""`pflowbsd dump`: a small collector for what pflowbsd (or pflow(4)) sends.

Strategy.  The decoding is collector/decode.py's (sans-I/O) and the capture file reading
collector/pcap.py's; this module is the I/O around them.  `format_flow` makes one line of
text or JSON; `_Sink` feeds datagrams to a Decoder and prints flows, malformed datagrams
and unknown-template notices, up to a count; `serve` receives into a sink from a UDP
socket; `cmd_dump` owns the socket (`-l ADDR:PORT`), the file (`-r PCAP`) and the signals,
and ends with the decoder's statistics on stderr.  A capture may hold datagrams to several
collectors: each is fed with its destination, so sequences are followed per destination.
`Decoder` and `Malformed` are importable from here as well as from collector.decode.
"""

from __future__ import annotations

import gzip
import io
import json
import signal
import socket
import time
import zlib
from types import FrameType
from typing import NoReturn, TextIO

from pflowbsd.collector.decode import Decoder, FlowRecord, Malformed
from pflowbsd.collector.pcap import PcapError, read_pcap
from pflowbsd.config import ConfigError, endpoint_text, parse_endpoint
from pflowbsd.pf.netdb import proto_name

__all__ = ["COLUMNS", "Decoder", "Malformed", "cmd_dump", "format_flow", "listen_endpoint",
           "serve"]

# --- output ---------------------------------------------------------------------------

COLUMNS = (f"{'exported':<19} {'ver':<3} {'proto':<5} {'src':>23}    {'dst':<23} "
           f"{'pkts':>10} {'bytes':>13} {'start':<12} {'end':<12}")


def _clock(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}"


def format_flow(flow: FlowRecord, as_json: bool = False) -> str:
    """One line: JSON, or the columns of COLUMNS (times in UTC)."""
    if as_json:
        return json.dumps(flow, separators=(",", ":"))
    exported = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(flow["export_ms"] // 1000))
    line = (f"{exported:<19} v{flow['version']:<2} "
            f"{proto_name(flow['proto']):<5} "
            f"{endpoint_text(flow['src'], flow['src_port']):>23} -> "
            f"{endpoint_text(flow['dst'], flow['dst_port']):<23} {flow['packets']:>10} "
            f"{flow['bytes']:>13} {_clock(flow['start_epoch']):<12} {_clock(flow['end_epoch'])}")
    if "nat_src" in flow or "nat_dst" in flow:
        line += (f"  nat {endpoint_text(flow.get('nat_src'), flow.get('nat_src_port', 0))} -> "
                 f"{endpoint_text(flow.get('nat_dst'), flow.get('nat_dst_port', 0))}")
    return line


# --- the command ----------------------------------------------------------------------

# What `-l` says of an address that is not numeric (socket.inet_pton's words, which it
# printed before config.parse_endpoint read the address).
BAD_ADDRESS = "illegal IP address string passed to inet_pton"


def listen_endpoint(text: str) -> tuple[int, str, int]:
    """`ADDR:PORT` or `[V6]:PORT` -> (family, address, port); raises ValueError.

    The port is taken off here: a listener may ask for port 0 (any free one), which
    config.parse_endpoint refuses, and `::1:9995` is ::1 port 9995.  The address is read
    by config.parse_endpoint, as flowdst's is; a scope (`fe80::1%em0`) is refused."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text}: expected ADDR:PORT or [ADDR]:PORT")
    try:
        addr, inner_port = parse_endpoint(host, need_port=False)
    except ConfigError:
        raise ValueError(BAD_ADDRESS) from None
    if inner_port or "%" in addr:
        raise ValueError(BAD_ADDRESS)
    return socket.AF_INET6 if ":" in addr else socket.AF_INET, addr, int(port)


class _Stop(Exception):
    pass


class _Sink:
    """Feed datagrams to a Decoder and print what comes out, up to `count` flows."""

    def __init__(self, as_json: bool, count: int | None, out: TextIO, err: TextIO):
        self.decoder, self.as_json, self.left, self.out, self.err = (
            Decoder(), as_json, count, out, err)

    def datagram(self, payload: bytes, exporter: str, destination: str = "") -> bool:
        """Returns False once `count` flows have been printed."""
        try:
            flows = self.decoder.feed(payload, exporter, destination)
        except Malformed as e:
            flows = []
            self.err.write(f"pflowbsd dump: {exporter}: malformed datagram "
                           f"({len(payload)} bytes): {e.reason}\n")
        for notice in self.decoder.notices:
            self.err.write(f"pflowbsd dump: {notice}\n")
        self.decoder.notices.clear()
        for flow in flows[:self.left]:
            self.out.write(format_flow(flow, self.as_json) + "\n")
        self.out.flush()
        if self.left is not None:
            self.left -= min(self.left, len(flows))
            return self.left > 0
        return True


def serve(sock: socket.socket, sink: _Sink) -> None:
    """Receive until `sink` has its count, a signal stops us, or the socket times out."""
    try:
        while True:
            payload, peer = sock.recvfrom(65535)
            if not sink.datagram(payload, peer[0]):
                return
    except (_Stop, KeyboardInterrupt, TimeoutError):
        return


def _raise_stop(signum: int, frame: FrameType | None) -> NoReturn:
    raise _Stop()


MAX_CAPTURE = 1 << 30  # bytes of a -r capture (after gunzip) dump will hold


def _read_capture(path: str) -> bytes:
    """A pcap file, gzipped or not, up to MAX_CAPTURE bytes (PcapError past it, or when
    the gzip stream is cut or corrupt)."""
    with open(path, "rb") as f:
        data = f.read(MAX_CAPTURE + 1)
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as z:
                data = z.read(MAX_CAPTURE + 1)
        except (EOFError, OSError, zlib.error):
            raise PcapError("a cut or corrupt gzip file") from None
    if len(data) > MAX_CAPTURE:
        raise PcapError(f"larger than {MAX_CAPTURE >> 20} MiB")
    return data


def cmd_dump(listen: str, as_json: bool, pcap: str | None, count: int | None,
             out: TextIO, err: TextIO) -> int:
    sink = _Sink(as_json, count, out, err)
    if not as_json:
        out.write(COLUMNS + "\n")
    if pcap is not None:
        try:
            data = _read_capture(pcap)
            for _, src, _, dst, dport, payload in read_pcap(data):
                if not sink.datagram(payload, src, endpoint_text(dst, dport)):
                    break
        except (OSError, PcapError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else e
            err.write(f"pflowbsd dump: {pcap}: {why}\n")
            return 1
    else:
        try:
            family, host, port = listen_endpoint(listen)
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((host, port))
        except (OSError, ValueError) as e:
            err.write(f"pflowbsd dump: cannot listen on {listen}: {e}\n")
            return 1
        err.write(f"pflowbsd dump: listening on {endpoint_text(*sock.getsockname()[:2])}\n")
        err.flush()
        previous = {}
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, _raise_stop)
        except ValueError:  # not the main thread: count or a timeout will stop us
            pass
        try:
            serve(sock, sink)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            sock.close()
    err.write(f"pflowbsd dump: {sink.decoder.stats.summary()}\n")
    return 0
