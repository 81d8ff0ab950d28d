"""Flows as the tracker builds them, and our own decoding of the exporter's datagrams,
for the exporter's unit tests and its checks against real decoders."""

from __future__ import annotations

import socket

from pflowbsd.export import ipfix, v5
from pflowbsd.flows import Clock, Flow

M = 0xFFFFFFFF
WALL = 1_700_000_000.5
BOOT = 1_699_000_000  # wall - up, whole seconds


def at(up: float) -> Clock:
    return Clock(BOOT + up + 0.5, up)


def ip4(i: int) -> bytes:
    return bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255])


def ip6(i: int) -> bytes:
    return socket.inet_pton(socket.AF_INET6, f"2001:db8::{i:x}")


def state(i=1, b0=1000, b1=2000, p0=10, p1=20, af=socket.AF_INET, proto=6, nat=False, start=5_000, end=9_000):
    """flow1 (initiator -> responder) and its mirror flow2, as the tracker builds them."""
    a, b = (ip4(2 * i), ip4(2 * i + 1)) if af == socket.AF_INET else (ip6(2 * i), ip6(2 * i + 1))
    n = (ip4(0xFFFF00 + i) if af == socket.AF_INET else ip6(0xFF00 + i)) if nat else None
    common = dict(af=af, proto=proto, start=start, end=end, if_in=3, if_out=4)
    f1 = Flow(src=a, dst=b, src_port=1024 + i, dst_port=80, packets=p0, octets=b0,
              nat_src=n, nat_dst=b if nat else None, nat_src_port=30000 + i if nat else 0,
              nat_dst_port=80 if nat else 0, **common)  # fmt: skip
    f2 = Flow(src=b, dst=a, src_port=80, dst_port=1024 + i, packets=p1, octets=b1,
              nat_src=b if nat else None, nat_dst=n, nat_src_port=80 if nat else 0,
              nat_dst_port=30000 + i if nat else 0, if_in=4, if_out=3,
              **{k: v for k, v in common.items() if not k.startswith("if_")})  # fmt: skip
    return f1, f2


# --- our own decoding of what we sent ---------------------------------

V5_NAMES = ["src", "dst", "nexthop", "if_in", "if_out", "packets", "octets", "start", "finish", "sport", "dport", "pad1", "flags", "proto", "tos", "src_as", "dst_as", "src_mask", "dst_mask", "pad2"]  # fmt: skip


def decode_v5(d: bytes):
    version, count, uptime, sec, nsec, seq, et, ei, _ = v5.HEADER.unpack_from(d)
    assert version == 5 and (et, ei) == (42, 42)
    assert len(d) == 24 + 48 * count
    recs = [dict(zip(V5_NAMES, v5.RECORD.unpack_from(d, 24 + 48 * k))) for k in range(count)]
    return dict(count=count, uptime=uptime, sec=sec, nsec=nsec, seq=seq), recs


def decode_ipfix(d: bytes):
    version, length, export, seq, dom = ipfix.HEADER.unpack_from(d)
    assert version == 10 and length == len(d)
    set_id, set_len = ipfix.SET_HEADER.unpack_from(d, 16)
    assert set_len == length - 16  # exactly one set per message
    head = dict(export=export, seq=seq, domain=dom, set_id=set_id)
    if set_id == ipfix.TMPL_SET_ID:
        return head, []
    layout = ipfix.TEMPLATES[set_id].layout
    assert (set_len - 4) % layout.size == 0
    return head, [layout.unpack_from(d, 20 + layout.size * k) for k in range((set_len - 4) // layout.size)]
