"""How long `pfctl -sr -vv` listings and a 3000-rule pf.conf take to read.

The floor is today's code path measured in the same run: the rule grammar
alone (pflowbsd.rules.shapes.CACHE disabled), against the shape cache that
`parse_pfconf` and `parse_listing` use.  The results of both are compared.
"""
import time
from collections.abc import Callable

from pflowbsd.rules import shapes
from pflowbsd.rules.model import Ruleset, parse_listing
from pflowbsd.rules.pfconf import parse_pfconf


def listing(n: int) -> str:
    rule = ("@{} pass in quick on em0 inet proto tcp from 10.{}.0.0/16 to "
            "192.0.2.{} port = {} flags S/SA keep state (max 100, pflow, "
            "tcp.established 600) label \"r{}\"\n"
            "  [ Evaluations: 0         Packets: 0         Bytes: 0"
            "           States: 0     ]\n"
            "  [ Inserted: uid 0 pid 1 State Creations: 0     ]\n")
    return "".join(rule.format(i, i % 256, i % 254 + 1, 1024 + i, i)
                   for i in range(n))


def pfconf(n: int) -> str:
    """A gateway's pf.conf of n rule lines in four shapes, macros included."""
    out = ['ext_if = "em0"', 'int_if = "em1"', "set state-defaults pflow",
           "block all"]
    for i in range(n - 1):
        out.append([
            f"pass in on $ext_if inet proto tcp from 10.{i % 250}.{i % 200}.0/24"
            f" to 192.0.2.{i % 254 + 1} port {1024 + i} keep state "
            f"(max 100, pflow)",
            f"pass out on $int_if proto udp to 198.51.100.{i % 254 + 1} port "
            f'{{ 53 {2000 + i} }} label "r{i}"',
            f"block in quick on $ext_if from 203.0.113.{i % 254 + 1} to any",
            f"match out on $ext_if inet from 172.16.{i % 250}.0/24 to any "
            f"nat-to ($ext_if)"][i % 4])
    return "\n".join(out) + "\n"


def timed(read: Callable[[], Ruleset], cached: bool) -> tuple[float, Ruleset]:
    shapes.CACHE.enabled = cached
    shapes.CACHE.shapes.clear()
    t = time.perf_counter()
    rs = read()
    return time.perf_counter() - t, rs


def compare(name: str, read: Callable[[], Ruleset]) -> None:
    floor, want = timed(read, False)
    fast, got = timed(read, True)
    same = [r.key() + (r.nr,) for r in want.rules] == \
        [r.key() + (r.nr,) for r in got.rules]
    print(f"{name}: {len(got.rules)} rules, grammar alone (floor) {floor:.2f} s, "
          f"shape cache {fast:.2f} s: {floor / fast:.1f}x faster; "
          f"results {'identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    for n in (500, 5000):
        text = listing(n)
        compare(f"listing {n} rules", lambda text=text: parse_listing(text))
    conf = pfconf(3000)
    compare("pf.conf 3000 rule lines", lambda: parse_pfconf(conf, "bench"))
