"""Speed of record packing through the Exporter: python bench/encode.py [STATES].

Prints v5_records_per_s and ipfix_records_per_s (IPv4 and IPv6 states, half of them
translated, with nat=True), each the records added per CPU second through
Exporter.export_state, including the datagrams that fill up, best of three runs.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pflowbsd.export.exporter import Exporter
from pflowbsd.flows import Clock, Flow


def states(n: int, v6: bool) -> list[tuple[Flow, Flow]]:
    out: list[tuple[Flow, Flow]] = []
    for i in range(n):
        af = socket.AF_INET6 if v6 and i % 2 else socket.AF_INET
        size = 4 if af == socket.AF_INET else 16
        a, b = i.to_bytes(size, "big"), (i + 1).to_bytes(size, "big")
        nat = a[::-1] if i % 4 < 2 else None
        f1 = Flow(af, a, b, 1024 + i % 60000, 443, 6, 10 + i, 1000 + i, i * 1000, i * 1000 + 5000,
                  nat_src=nat, nat_dst=b if nat else None, nat_src_port=7 if nat else 0)  # fmt: skip
        f2 = Flow(af, b, a, 443, 1024 + i % 60000, 6, 20 + i, 2000 + i, i * 1000, i * 1000 + 5000,
                  nat_src=b if nat else None, nat_dst=nat, nat_dst_port=7 if nat else 0)  # fmt: skip
        out.append((f1, f2))
    return out


def rate(proto: int, pairs: list[tuple[Flow, Flow]]) -> float:
    best = float("inf")
    records = 0
    for _ in range(3):
        x = Exporter(proto=proto, nat=True)
        now = Clock(1_700_000_000.0, 1_000_000.0)
        t0 = time.process_time()
        x.start(now)
        for f1, f2 in pairs:
            x.export_state(f1, f2, now)
        x.flush(now)
        best = min(best, time.process_time() - t0)
        records = x.stats["flows"]
    return records / best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(f"v5_records_per_s {rate(5, states(n, v6=False)):.0f}")
    print(f"ipfix_records_per_s {rate(10, states(n, v6=True)):.0f}")


if __name__ == "__main__":
    main()
