"""How long `pfctl -sr -vv` listings and pf.conf files take to read."""
import time

from pflowbsd.rules.model import parse_listing
from pflowbsd.rules.pfconf import parse_pfconf


def listing(n):
    rule = ("@{} pass in quick on em0 inet proto tcp from 10.{}.0.0/16 to "
            "192.0.2.{} port = {} flags S/SA keep state (max 100, pflow, "
            "tcp.established 600) label \"r{}\"\n"
            "  [ Evaluations: 0         Packets: 0         Bytes: 0"
            "           States: 0     ]\n"
            "  [ Inserted: uid 0 pid 1 State Creations: 0     ]\n")
    return "".join(rule.format(i, i % 256, i % 254 + 1, 1024 + i, i)
                   for i in range(n))


if __name__ == "__main__":
    for n in (500, 5000):
        text = listing(n)
        t = time.perf_counter()
        rs = parse_listing(text)
        dt = time.perf_counter() - t
        print(f"listing {n} rules: {dt:.2f} s ({len(rs.rules)} rules)")
    conf = "".join(f"pass in on em0 proto {{ tcp udp }} to 192.0.2.{i % 254 + 1}"
                   f" port {{ 80 443 }} keep state (pflow)\n" for i in range(1250))
    t = time.perf_counter()
    rs = parse_pfconf(conf, "bench")
    print(f"pf.conf 1250 lines -> {len(rs.rules)} rules: "
          f"{time.perf_counter() - t:.2f} s")
