"""The state file: what a pipeline knows, as bytes, so a restart loses and repeats nothing.

Strategy.  Pure: bytes in, bytes out (the shell's statewriter writes and reads them).
capture() takes from a Pipeline what a restart needs: the tracker's states (each TAIL
text and its packed flows.Entry, None when tracked but not selected) and its
active-timeout side table `exported`; the exporter's counters (v5 flow_sequence is its
gcounter, IPFIX's sequence is per exporter, i.e. per observation domain) and the
records it holds, each buffer with its deadline; and the boot time, the uptime base of
every First, Last and deadline.  encode() makes a base; changes() and encode_delta()
make a delta, what changed since the last base or delta (the tracker's take_changes()),
appended after it; decode() checks the file whole before anything is used, and
restore() hands it back to a new Pipeline.  A delta costs what changed, a base the whole
table: the writer appends deltas and writes a new base when they grow past a share of it.

Layout (little-endian).  HEADER: magic b"PFLOWBSD", format VERSION, 0, the pflow
instance (16 bytes, NUL padded), boot (epoch seconds), payload length, CRC-32 of
everything but this field.  The payload is a run of fields, each a u64 length then its
bytes: the exporter's signature (its EXPORTER_WORDS), the tails joined by "\n\n" (a
tail holds one "\n", never two), the entries' lengths (u16 each, 0 for None), the
entries, the exported keys (TRACK_KEY characters each), their EXPORTED records, then
NUMBERS (gcounter, sequence, template deadline, buffer count) and per buffer BUFFER
(key, deadline, gcounter, record count), the records' lengths (u16) and the records.
After the payload, zero or more deltas: DELTA (magic b"PFDL", its number from 1, the
base's CRC, body length, CRC-32 of the rest of DELTA and the body), then a body of the
same fields, where the tails and keys are those set, plus two fields: the tails and
the keys removed.  The exporter's part of the last delta replaces the base's.
Lengths and counts are checked against what is left, entries against their packed
layout (flows.ENTRY), so whatever a file holds, decode() raises StateFileError or
returns something the tracker and exporter can use.  Only the last delta may be torn
(cut short, or failing its CRC where the file ends: a crash while it was appended); it
is dropped, and Saved.torn says why.  Formats 1 (a base alone) and 2 (an entry's First
and Last 64-bit, WIDE_ENTRY) are still read, their entries converted to flows.ENTRY;
the writer's first save after a load is a base, so it is never appended to.  Some 420
lines: the writer and the reader that checks every field of what it wrote share the
layout above, and one module keeps a change to it in one place.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from itertools import accumulate, pairwise

from pflowbsd.flows import ENTRY, INET6, NAT_PORTS, NATTED, Entry, entry_counters, entry_times
from pflowbsd.pf.snapshot import TRACK_KEY, TRACK_TAIL
from pflowbsd.pipeline import EXPORTER_WORDS, Pipeline
from pflowbsd.tracker import EXPORTED

MAGIC = b"PFLOWBSD"
VERSION = 3
READS = (1, 2, 3)  # version 1: no deltas; 1 and 2: entries of WIDE_ENTRY, converted
# flows.ENTRY before format 3: First and Last as 64-bit (then 58 bytes, now 50)
WIDE_ENTRY = struct.Struct("<BBHHqqQQQQHH")
# magic 0, version 8, reserved 10, instance 12, boot 28, payload length 36, crc32 44
HEADER = struct.Struct("<8sHH16sqQI")
# magic 0, number 4, the base's crc32 8, body length 12, crc32 20
DELTA = struct.Struct("<4sIIQI")
DELTA_MAGIC = b"PFDL"
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
    deltas: int = 0  # applied after the base (decode)
    torn: str | None = None  # why a last delta was dropped (decode)

    def held(self) -> int:
        """Records held in the exporter's buffers."""
        return sum(len(b[3]) for b in self.buffers)


@dataclass
class Changes:
    """A delta: the exporter's whole part (small), and of the tracker only what changed."""
    signature: str
    entries: dict[str, Entry | None]  # set
    exported: dict[str, bytes]  # set
    gone: list[str]  # tails no longer tracked
    unexported: list[str]  # keys whose EXPORTED record was dropped
    gcounter: int
    sequence: int
    tmpl_deadline: float | None
    buffers: list[Buffer]


def signature(pipe: Pipeline) -> str:
    return " ".join(f"{w}={getattr(pipe.cfg, w)}" for w in EXPORTER_WORDS)


def capture(pipe: Pipeline) -> Saved:
    entries, exported = pipe.tracker.snapshot()
    gcounter, sequence, tmpl, buffers = pipe.exporter.snapshot()
    return Saved(pipe.cfg.instance, pipe.boot, signature(pipe), entries, exported,
                 gcounter, sequence, tmpl, buffers)


def changes(pipe: Pipeline, tails: AbstractSet[str], keys: AbstractSet[str]) -> Changes:
    """The delta of Tracker.take_changes()'s tails and keys: each one's value now, or gone."""
    entries, exported = pipe.tracker.snapshot()
    kept = {t: entries[t] for t in tails if t in entries}
    done = {k: exported[k] for k in keys if k in exported}
    gcounter, sequence, tmpl, buffers = pipe.exporter.snapshot()
    return Changes(signature(pipe), kept, done, [t for t in tails if t not in kept],
                   [k for k in keys if k not in done], gcounter, sequence, tmpl, buffers)


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


def _fields(parts: list[bytes]) -> list[bytes]:
    """Each part after its FIELD length, as pieces to join once (a base is ~150 bytes a
    state: each copy of it counts)."""
    return [x for p in parts for x in (FIELD.pack(len(p)), p)]


def _u16s(values: Iterable[int]) -> bytes:
    """Little-endian u16s (array's are the host's)."""
    out = array("H", values)
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()


def _tracker_parts(entries: dict[str, Entry | None], exported: dict[str, bytes]) -> list[bytes]:
    values = list(entries.values())
    if None in values:  # tracked, not selected: length 0
        lengths, blob = _u16s([len(v) if v else 0 for v in values]), b"".join(filter(None, values))
    else:
        lengths, blob = _u16s(map(len, values)), b"".join(values)  # type: ignore[arg-type]
    return [
        TAIL_SEP.join(entries).encode("utf-8", "surrogateescape"),
        lengths,
        blob,
        "".join(exported).encode("ascii", "replace"),
        b"".join(exported.values()),
    ]


def _exporter_parts(gcounter: int, sequence: int, tmpl: float | None,
                    buffers: list[Buffer]) -> list[bytes]:
    parts = [NUMBERS.pack(gcounter, sequence, math.nan if tmpl is None else tmpl,
                          len(buffers))]
    for key, deadline, gc, records in buffers:
        parts += [BUFFER.pack(key, deadline, gc, len(records)),
                  struct.pack(f"<{len(records)}H", *map(len, records)), b"".join(records)]
    return parts


def encode(saved: Saved) -> bytes:
    """A base: the whole file, no delta after it yet."""
    parts = [saved.signature.encode(), *_tracker_parts(saved.entries, saved.exported),
             *_exporter_parts(saved.gcounter, saved.sequence, saved.tmpl_deadline,
                              saved.buffers)]
    pieces = _fields(parts)
    instance = saved.instance.encode()[:16]
    head = HEADER.pack(MAGIC, VERSION, 0, instance, saved.boot, sum(map(len, pieces)), 0)[:-4]
    return b"".join([head, _crc(head, pieces), *pieces])


def _crc(head: bytes, pieces: list[bytes]) -> bytes:
    """The CRC-32 of head and the pieces after it, packed."""
    crc = zlib.crc32(head)
    for x in pieces:
        crc = zlib.crc32(x, crc)
    return struct.pack("<I", crc)


def base_crc(base: bytes) -> int:
    """The CRC-32 in a base's HEADER: every delta after it carries it."""
    return int(struct.unpack_from("<I", base, HEADER.size - 4)[0])


def encode_delta(ch: Changes, number: int, crc: int) -> bytes:
    """Delta `number` (1 after the base, then 2, ...) of the base whose CRC is `crc`."""
    parts = [ch.signature.encode(), *_tracker_parts(ch.entries, ch.exported),
             TAIL_SEP.join(ch.gone).encode("utf-8", "surrogateescape"),
             "".join(ch.unexported).encode("ascii", "replace"),
             *_exporter_parts(ch.gcounter, ch.sequence, ch.tmpl_deadline, ch.buffers)]
    pieces = _fields(parts)
    head = DELTA.pack(DELTA_MAGIC, number, crc, sum(map(len, pieces)), 0)[:-4]
    return b"".join([head, _crc(head, pieces), *pieces])


class _Reader:
    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def field(self) -> bytes:
        if self.pos + FIELD.size > self.end:
            raise StateFileError("truncated")
        (n,) = FIELD.unpack_from(self.data, self.pos)
        start = self.pos + FIELD.size
        if n > self.end - start:
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


def _entry(e: bytes, version: int) -> Entry | None:
    """A file's entry as the tracker keeps it (format 1 and 2's converted to flows.ENTRY);
    None if it is not one: of the wrong size for its flags, or a time out of bounds."""
    head = ENTRY if version >= 3 else WIDE_ENTRY
    if len(e) < head.size:
        return None
    n = 16 if e[0] & INET6 else 4
    want = head.size + 2 * n + (NAT_PORTS.size + 2 * n if e[0] & NATTED else 0)
    if len(e) != want:
        return None
    if head is WIDE_ENTRY:
        fields = WIDE_ENTRY.unpack_from(e)
        if not all(abs(t) < TIME_BOUND for t in fields[4:6]):
            return None
        return ENTRY.pack(*fields) + e[WIDE_ENTRY.size:]
    return e if all(abs(t) < TIME_BOUND for t in entry_times(e)) else None


def header(data: bytes) -> tuple[str, int]:
    """(instance, boot) of a file whose header is whole (StateFileError otherwise)."""
    if len(data) < HEADER.size:
        raise StateFileError("truncated" if data.startswith(MAGIC[:len(data)]) else
                             "not a pflowbsd state file")
    magic, version, _r, instance, boot, _length, _crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise StateFileError("not a pflowbsd state file")
    if version not in READS:
        raise StateFileError(f"format version {version}, this pflowbsd reads "
                             + " and ".join(map(str, READS)))
    return instance.rstrip(b"\0").decode(errors="replace"), boot


def decode(data: bytes) -> Saved:
    """The base and every whole delta after it; a torn last one dropped (Saved.torn)."""
    instance, boot = header(data)
    version, = struct.unpack_from("<H", data, 8)
    length, crc = struct.unpack_from("<QI", data, 36)
    end = HEADER.size + length
    if len(data) < end:
        raise StateFileError("truncated")
    if version == 1 and len(data) > end:
        raise StateFileError("trailing bytes")
    if zlib.crc32(memoryview(data)[HEADER.size:end], zlib.crc32(data[:HEADER.size - 4])) != crc:
        raise StateFileError("checksum mismatch (a corrupt file)")
    try:
        saved = _payload(_Reader(data, HEADER.size, end), instance, boot, version)
        pos = end
        while pos < len(data) and saved.torn is None:
            pos = _delta(data, pos, crc, saved, version)
        _check_exported(saved.entries, saved.exported)
    except (struct.error, UnicodeDecodeError, OverflowError) as e:
        raise StateFileError(f"unreadable ({e})") from None
    return saved


def _tracker_fields(r: _Reader, version: int
                    ) -> tuple[dict[str, Entry | None], dict[str, bytes]]:
    tails_blob = r.field().decode("utf-8", "surrogateescape")
    tails = tails_blob.split(TAIL_SEP) if tails_blob else []
    lengths = _lengths(r.field(), len(tails), "entries")
    values = _split(r.field(), lengths, "entries")
    entries: dict[str, Entry | None] = {}
    for t, v in zip(tails, values, strict=True):  # same length: _lengths
        if not TRACK_TAIL.fullmatch(" pkts, " + t):
            raise StateFileError("a state that is not a pfctl counters line")
        entry = _entry(v, version) if v else None
        if v and entry is None:
            raise StateFileError("a state entry of the wrong size")
        entries[t] = entry
    if len(entries) != len(tails):
        raise StateFileError("a state twice")
    keys = _keys(r.field())
    done = r.field()
    if len(done) != len(keys) * EXPORTED.size:
        raise StateFileError("exported table of the wrong size")
    exported = {k: done[i * EXPORTED.size:(i + 1) * EXPORTED.size] for i, k in enumerate(keys)}
    return entries, exported


def _keys(blob: bytes) -> list[str]:
    text = blob.decode("ascii")
    if len(text) % TRACK_KEY:
        raise StateFileError("exported table of the wrong size")
    return [text[k:k + TRACK_KEY] for k in range(0, len(text), TRACK_KEY)]


def _check_exported(entries: dict[str, Entry | None], exported: dict[str, bytes]) -> None:
    if not exported:
        return
    by_key = {t[-TRACK_KEY:]: v for t, v in entries.items()}
    for key, rec in exported.items():
        first, *counts = EXPORTED.unpack(rec)
        e = by_key.get(key)
        if e is None or abs(first) >= TIME_BOUND or any(
                d > c for d, c in zip(counts, entry_counters(e), strict=True)):
            raise StateFileError("an exported span that does not fit its state")


def _exporter_fields(r: _Reader) -> tuple[int, int, float | None, list[Buffer]]:
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
    if r.pos != r.end:
        raise StateFileError("trailing fields")
    return gcounter, sequence, None if math.isnan(tmpl) else tmpl, buffers


def _payload(r: _Reader, instance: str, boot: int, version: int) -> Saved:
    sig = r.field().decode()
    entries, exported = _tracker_fields(r, version)
    return Saved(instance, boot, sig, entries, exported, *_exporter_fields(r))


def _delta(data: bytes, pos: int, crc: int, saved: Saved, version: int) -> int:
    """Apply the delta at `pos` to `saved`; where the next one starts.  A torn last delta
    sets saved.torn and changes nothing; a bad one before the end is StateFileError."""
    number = saved.deltas + 1
    if len(data) - pos < DELTA.size:
        saved.torn = f"delta {number} cut short"
        return len(data)
    magic, n, base, length, sum_ = DELTA.unpack_from(data, pos)
    if magic != DELTA_MAGIC and not data[pos:].strip(b"\0"):
        saved.torn = f"delta {number} zeros"  # the file grew, its bytes never came
        return len(data)
    if magic != DELTA_MAGIC or n != number or base != crc:
        raise StateFileError(f"delta {number}: not a delta of this file")
    start, end = pos + DELTA.size, pos + DELTA.size + length
    if end > len(data):
        saved.torn = f"delta {number} cut short"
        return len(data)
    body = memoryview(data)[start:end]
    if zlib.crc32(body, zlib.crc32(data[pos:start - 4])) != sum_:
        if end == len(data):
            saved.torn = f"delta {number} fails its checksum"
            return end
        raise StateFileError(f"delta {number}: checksum mismatch (a corrupt file)")
    r = _Reader(data, start, end)
    sig = r.field().decode()
    entries, exported = _tracker_fields(r, version)
    gone_blob = r.field().decode("utf-8", "surrogateescape")
    unexported = _keys(r.field())
    numbers = _exporter_fields(r)
    for t in gone_blob.split(TAIL_SEP) if gone_blob else ():
        saved.entries.pop(t, None)
    for k in unexported:
        saved.exported.pop(k, None)
    saved.entries.update(entries)
    saved.exported.update(exported)
    saved.signature = sig
    saved.gcounter, saved.sequence, saved.tmpl_deadline, saved.buffers = numbers
    saved.deltas = number
    return end
