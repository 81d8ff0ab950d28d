"""The state file: what a pipeline knows, as bytes, so a restart loses and repeats nothing.

Strategy.  Pure: bytes in, bytes out (the shell's statewriter writes and reads them).
capture() takes from a Pipeline what a restart needs: the tracker's states (each TAIL
text and its packed flows.Entry, None when tracked but not selected) and its
active-timeout side table `exported`; the exporter's counters (v5 flow_sequence is its
gcounter, IPFIX's sequence is per exporter, i.e. per observation domain) and the
records it holds, each buffer with its deadline; and the boot time, the uptime base of
every First, Last and deadline.  encode() makes the file; decode() checks it whole
before anything is used, and restore() hands it back to a new Pipeline.

Layout (little-endian).  HEADER: magic b"PFLOWBSD", format VERSION, 0, the pflow
instance (16 bytes, NUL padded), boot (epoch seconds), payload length, CRC-32 of
everything but this field.  The payload is a run of fields, each a u64 length then its
bytes: the exporter's signature (its EXPORTER_WORDS), the tails joined by "\n\n" (a
tail holds one "\n", never two), the entries' lengths (u16 each, 0 for None), the
entries, the exported keys (TRACK_KEY characters each), their EXPORTED records, then
NUMBERS (gcounter, sequence, template deadline, buffer count) and per buffer BUFFER
(key, deadline, gcounter, record count), the records' lengths (u16) and the records.
Lengths and counts are checked against what is left, entries against their packed
layout (flows.ENTRY), so whatever a file holds, decode() raises StateFileError or
returns something the tracker and exporter can use.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field
from itertools import accumulate, pairwise

from pflowbsd.flows import ENTRY, INET6, NAT_PORTS, NATTED, Entry, entry_counters, entry_times
from pflowbsd.pf.snapshot import TRACK_KEY, TRACK_TAIL
from pflowbsd.pipeline import EXPORTER_WORDS, Pipeline
from pflowbsd.tracker import EXPORTED

MAGIC = b"PFLOWBSD"
VERSION = 1
# magic 0, version 8, reserved 10, instance 12, boot 28, payload length 36, crc32 44
HEADER = struct.Struct("<8sHH16sqQI")
FIELD = struct.Struct("<Q")
# gcounter, sequence, template deadline (NaN: none), buffers
NUMBERS = struct.Struct("<QQdI")
# key, deadline (uptime seconds), gcounter at allocation, records
BUFFER = struct.Struct("<IdQI")
TAIL_SEP = "\n\n"
TIME_BOUND = 1 << 31  # uptime seconds: any First, Last or deadline a real file holds


class StateFileError(ValueError):
    """A file that is not a whole state file of this format (one line: why)."""


Buffer = tuple[int, float, int, list[bytes]]  # key, deadline, gcounter, records


@dataclass
class Saved:
    instance: str
    boot: int
    signature: str  # the exporter's words: its counters and records fit only the same
    entries: dict[str, Entry | None] = field(default_factory=dict)
    exported: dict[str, bytes] = field(default_factory=dict)
    gcounter: int = 0
    sequence: int = 0
    tmpl_deadline: float | None = None
    buffers: list[Buffer] = field(default_factory=list)

    def held(self) -> int:
        """Records held in the exporter's buffers."""
        return sum(len(b[3]) for b in self.buffers)


def signature(pipe: Pipeline) -> str:
    return " ".join(f"{w}={getattr(pipe.cfg, w)}" for w in EXPORTER_WORDS)


def capture(pipe: Pipeline) -> Saved:
    entries, exported = pipe.tracker.snapshot()
    gcounter, sequence, tmpl, buffers = pipe.exporter.snapshot()
    return Saved(pipe.cfg.instance, pipe.boot, signature(pipe), entries, exported,
                 gcounter, sequence, tmpl, buffers)


def restore(pipe: Pipeline, saved: Saved) -> bool:
    """Give a fresh pipeline what was saved.  The exporter's part only if its words are
    the same (False: its counters and held records were left out)."""
    same = saved.signature == signature(pipe)
    if same:
        try:
            pipe.exporter.restore(saved.gcounter, saved.sequence, saved.tmpl_deadline,
                                  saved.buffers)
        except ValueError as e:
            raise StateFileError(str(e)) from None
    pipe.tracker.restore(saved.entries, saved.exported)
    return same


def fingerprint(pipe: Pipeline) -> tuple[object, ...]:
    """Changes whenever what capture() takes does (cheap: counters, no scan)."""
    t, e = pipe.tracker.stats, pipe.exporter
    gcounter, sequence, tmpl, buffers = e.snapshot(records=False)
    return (id(pipe.tracker), id(e), t["new"], t["changed"], t["expired"], t["restarted"],
            t["active_exports"], len(pipe.tracker), gcounter, sequence, tmpl, len(buffers),
            pipe.boot)


def _field(data: bytes) -> bytes:
    return FIELD.pack(len(data)) + data


def encode(saved: Saved) -> bytes:
    tails = list(saved.entries)
    values = list(saved.entries.values())
    parts = [
        saved.signature.encode(),
        TAIL_SEP.join(tails).encode("utf-8", "surrogateescape"),
        struct.pack(f"<{len(values)}H", *(len(v) if v else 0 for v in values)),
        b"".join(v for v in values if v),
        "".join(saved.exported).encode("ascii", "replace"),
        b"".join(saved.exported.values()),
        NUMBERS.pack(saved.gcounter, saved.sequence,
                     math.nan if saved.tmpl_deadline is None else saved.tmpl_deadline,
                     len(saved.buffers)),
    ]
    for key, deadline, gcounter, records in saved.buffers:
        parts += [BUFFER.pack(key, deadline, gcounter, len(records)),
                  struct.pack(f"<{len(records)}H", *map(len, records)), b"".join(records)]
    payload = b"".join(map(_field, parts))
    instance = saved.instance.encode()[:16]
    head = HEADER.pack(MAGIC, VERSION, 0, instance, saved.boot, len(payload), 0)
    crc = zlib.crc32(payload, zlib.crc32(head[:-4]))
    return head[:-4] + struct.pack("<I", crc) + payload


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def field(self) -> bytes:
        if self.pos + FIELD.size > len(self.data):
            raise StateFileError("truncated")
        (n,) = FIELD.unpack_from(self.data, self.pos)
        start = self.pos + FIELD.size
        if n > len(self.data) - start:
            raise StateFileError("truncated")
        self.pos = start + n
        return self.data[start:self.pos]


def _split(blob: bytes, lengths: tuple[int, ...], what: str) -> list[bytes]:
    if sum(lengths) != len(blob):
        raise StateFileError(f"{what}: lengths do not add up")
    offs = [0, *accumulate(lengths)]
    return [blob[a:b] for a, b in pairwise(offs)]


def _lengths(data: bytes, n: int, what: str) -> tuple[int, ...]:
    if len(data) != 2 * n:
        raise StateFileError(f"{what}: {len(data) // 2} lengths for {n}")
    return struct.unpack(f"<{n}H", data)


def _entry_ok(e: bytes) -> bool:
    if len(e) < ENTRY.size:
        return False
    n = 16 if e[0] & INET6 else 4
    want = ENTRY.size + 2 * n + (NAT_PORTS.size + 2 * n if e[0] & NATTED else 0)
    return len(e) == want and all(abs(t) < TIME_BOUND for t in entry_times(e))


def header(data: bytes) -> tuple[str, int]:
    """(instance, boot) of a file whose header is whole (StateFileError otherwise)."""
    if len(data) < HEADER.size:
        raise StateFileError("truncated" if data.startswith(MAGIC[:len(data)]) else
                             "not a pflowbsd state file")
    magic, version, _r, instance, boot, _length, _crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise StateFileError("not a pflowbsd state file")
    if version != VERSION:
        raise StateFileError(f"format version {version}, this pflowbsd reads {VERSION}")
    return instance.rstrip(b"\0").decode(errors="replace"), boot


def decode(data: bytes) -> Saved:
    instance, boot = header(data)
    length, crc = struct.unpack_from("<QI", data, 36)
    if len(data) != HEADER.size + length:
        raise StateFileError("truncated" if len(data) < HEADER.size + length
                             else "trailing bytes")
    if zlib.crc32(data[HEADER.size:], zlib.crc32(data[:HEADER.size - 4])) != crc:
        raise StateFileError("checksum mismatch (a corrupt file)")
    try:
        return _payload(_Reader(data, HEADER.size), instance, boot)
    except (struct.error, UnicodeDecodeError, OverflowError) as e:
        raise StateFileError(f"unreadable ({e})") from None


def _payload(r: _Reader, instance: str, boot: int) -> Saved:
    sig = r.field().decode()
    tails_blob = r.field().decode("utf-8", "surrogateescape")
    tails = tails_blob.split(TAIL_SEP) if tails_blob else []
    lengths = _lengths(r.field(), len(tails), "entries")
    values = _split(r.field(), lengths, "entries")
    entries: dict[str, Entry | None] = {}
    for t, v in zip(tails, values, strict=True):  # same length: _lengths
        if not TRACK_TAIL.fullmatch(" pkts, " + t):
            raise StateFileError("a state that is not a pfctl counters line")
        if v and not _entry_ok(v):
            raise StateFileError("a state entry of the wrong size")
        entries[t] = v or None
    if len(entries) != len(tails):
        raise StateFileError("a state twice")
    keys_blob = r.field().decode("ascii")
    done = r.field()
    n = len(keys_blob) // TRACK_KEY
    if len(keys_blob) % TRACK_KEY or len(done) != n * EXPORTED.size:
        raise StateFileError("exported table of the wrong size")
    exported = {keys_blob[k * TRACK_KEY:(k + 1) * TRACK_KEY]:
                done[k * EXPORTED.size:(k + 1) * EXPORTED.size] for k in range(n)}
    if exported:
        by_key = {t[-TRACK_KEY:]: v for t, v in entries.items()}
        for key, rec in exported.items():
            first, *counts = EXPORTED.unpack(rec)
            e = by_key.get(key)
            if e is None or abs(first) >= TIME_BOUND or any(
                    d > c for d, c in zip(counts, entry_counters(e), strict=True)):
                raise StateFileError("an exported span that does not fit its state")
    numbers = r.field()
    if len(numbers) != NUMBERS.size:
        raise StateFileError("exporter counters of the wrong size")
    gcounter, sequence, tmpl, nbuf = NUMBERS.unpack(numbers)
    if not (math.isnan(tmpl) or abs(tmpl) < TIME_BOUND):
        raise StateFileError("a template deadline out of range")
    buffers: list[Buffer] = []
    for _ in range(nbuf):
        head = r.field()
        if len(head) != BUFFER.size:
            raise StateFileError("buffer header of the wrong size")
        key, deadline, gc, count = BUFFER.unpack(head)
        lengths = _lengths(r.field(), count, "records")
        records = _split(r.field(), lengths, "records")
        if not abs(deadline) < TIME_BOUND or not records or not all(records):
            raise StateFileError("a held buffer without records or deadline")
        buffers.append((key, deadline, gc, records))
    if r.pos != len(r.data):
        raise StateFileError("trailing fields")
    return Saved(instance, boot, sig, entries, exported, gcounter, sequence,
                 None if math.isnan(tmpl) else tmpl, buffers)
