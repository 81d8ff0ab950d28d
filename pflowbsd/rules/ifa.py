"""The host's interfaces as pfctl's host() sees them (pfctl_parser.c ifa_*).

A name in a rule that is an interface, an interface group, a driver prefix
(`em` for em0, em1: ifa_skip_if) or `self` stands for addresses read off the
interfaces when the rule is loaded: `em0` every address of em0, `em0:network`
each network (link-local ones skipped), `em0:broadcast` the IPv4 broadcast
addresses, `em0:peer` the other ends of point-to-point links, `em0:0` the first
address of each family (no aliases), and `em0/N` every address masked to N
bits.  IfTable answers those lookups from parsed `ifconfig -a` output
(pflowbsd.pf.ifaces) in ifconfig's order, which is getifaddrs()'s, the order
pfctl expands them in.
"""
from collections.abc import Iterable, Mapping, Sequence

from pflowbsd.pf.ifaces import Address, Interface, groups
from pflowbsd.rules.hosts import Host, norm_address

MODES = ("", "network", "broadcast", "peer", "0")


class IfTable:
    """Interfaces by name, and groups by name (`all` holds every one)."""

    def __init__(self, interfaces: Iterable[Interface]) -> None:
        self.interfaces = list(interfaces)
        self.names = {i.name: i for i in self.interfaces}
        self.groups = groups(self.interfaces)

    @classmethod
    def from_addresses(cls, table: Mapping[str, Sequence[tuple[str, int]]]
                       ) -> "IfTable":
        """A table from {name: [(address, prefixlen), ...]}, for callers that
        know only addresses (the loopback flag is guessed from `lo`)."""
        out = []
        for name, pairs in table.items():
            addrs = [Address(a, b, "inet6" if ":" in a else "inet")
                     for a, b in pairs]
            flags = frozenset({"LOOPBACK"} if name.startswith("lo") else ())
            out.append(Interface(name, flags=flags, addresses=addrs))
        return cls(out)

    def members(self, name: str) -> list[Interface]:
        """The interfaces a name stands for: itself, a group's members, or
        those whose name is the prefix and a unit number (ifa_skip_if)."""
        if name == "self":
            return self.interfaces
        if name in self.names:
            return [self.names[name]]
        if name in self.groups:
            return self.groups[name]
        if name[-1:].isdigit():
            return []
        return [i for i in self.interfaces if i.name.startswith(name)
                and i.name[len(name):len(name) + 1].isdigit()]

    def exists(self, name: str) -> bool:
        return bool(self.members(name))

    def loopback(self, name: str) -> bool:
        iface = self.names.get(name)
        return iface is not None and iface.loopback

    def lookup(self, name: str, mode: str = "", neg: bool = False,
               bits: int | None = None) -> list[Host]:
        """ifa_lookup(name, mode): the addresses as Hosts, in order."""
        out = []
        for iface in self.members(name):
            seen: set[str] = set()
            for a in iface.addresses:
                if mode == "broadcast" and (a.af != "inet"
                                            or a.broadcast is None):
                    continue
                if mode == "peer" and a.peer is None:
                    continue
                if mode == "network" and a.link_local:
                    continue
                if mode == "0" and a.af in seen:
                    continue
                seen.add(a.af)
                if mode == "network":
                    value = norm_address(a.addr, a.prefixlen)
                else:
                    addr = {"broadcast": a.broadcast, "peer": a.peer}.get(
                        mode) or a.addr
                    value = norm_address(addr, bits if bits is None else
                                         min(bits, 32 if a.af == "inet"
                                             else 128))
                out.append(Host(neg, "addr", value, a.af))
        return out
