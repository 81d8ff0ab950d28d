"""`ifconfig -a`: the host's interfaces, their addresses and groups.

One parser for OpenBSD's and FreeBSD's output (sbin/ifconfig/ifconfig.c of each):
an interface starts at a line `NAME: flags=HEX<FLAG,...> ...` at column 0 and
its details follow, each on a tab-indented line; the ones read here are
`index N ...` (OpenBSD), `groups: G ...`, `inet ADDR [--> DST] netmask 0xHEX
[broadcast B]` and `inet6 ADDR[%IF] [--> DST] prefixlen N [...] [scopeid 0xN]`.
Other lines (media, lladdr, options, nd6, pflow, carp) are passed over.  Every
interface is also in the group `all`, as pfi_kif has it; `egress` is only what
the host reports (OpenBSD puts the interface of the default route in it).
Pure: the text comes in as a string (pflowbsd.shell.pfctl runs ifconfig).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

HEADER = re.compile(r"^([A-Za-z][\w.]*): flags=([0-9a-fA-F]+)<([^>]*)>")
INET = re.compile(r"^inet (\S+)(?: --> (\S+))? netmask 0x([0-9a-fA-F]+)"
                  r"(?: broadcast (\S+))?")
INET6 = re.compile(r"^inet6 ([0-9a-fA-F:.]+)(?:%\S+)?(?: --> (\S+?)(?:%\S+)?)?"
                   r" prefixlen (\d+)")
INDEX = re.compile(r"^index (\d+)")


@dataclass(frozen=True)
class Address:
    """One address of an interface, as ifconfig prints it."""
    addr: str
    prefixlen: int
    af: str                        # "inet" or "inet6"
    peer: str | None = None        # the other end of a point-to-point link
    broadcast: str | None = None

    @property
    def link_local(self) -> bool:
        return ipaddress.ip_address(self.addr).is_link_local

    @property
    def network(self) -> str:
        """ADDR/LEN with the host bits cleared (pfctl's `:network`)."""
        return str(ipaddress.ip_interface(f"{self.addr}/{self.prefixlen}")
                   .network)


@dataclass
class Interface:
    name: str
    index: int | None = None
    flags: frozenset[str] = frozenset()
    groups: list[str] = field(default_factory=list)
    addresses: list[Address] = field(default_factory=list)

    @property
    def loopback(self) -> bool:
        return "LOOPBACK" in self.flags


class IfconfigError(ValueError):
    """Text that is not `ifconfig -a` output."""


def _address(line: str) -> Address | None:
    m = INET.match(line)
    if m:
        bits = bin(int(m.group(3), 16)).count("1")
        return Address(m.group(1), bits, "inet", m.group(2), m.group(4))
    m = INET6.match(line)
    if m:
        return Address(m.group(1), int(m.group(3)), "inet6", m.group(2))
    return None


def parse_ifconfig(text: str, name: str = "ifconfig -a") -> list[Interface]:
    """The interfaces in `ifconfig -a` output, in the order it printed them."""
    out: list[Interface] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        m = HEADER.match(raw)
        if m:
            flags = frozenset(f for f in m.group(3).split(",") if f)
            out.append(Interface(m.group(1), flags=flags))
            continue
        if not raw[0].isspace() or not out:
            raise IfconfigError(f"{name}:{lineno}: not ifconfig -a output")
        line, iface = raw.strip(), out[-1]
        if line.startswith("groups:"):
            iface.groups.extend(line.split()[1:])
        elif (m := INDEX.match(line)) is not None:
            iface.index = int(m.group(1))
        elif (addr := _address(line)) is not None:
            iface.addresses.append(addr)
    for iface in out:
        if "all" not in iface.groups:
            iface.groups.append("all")
    return out


def by_name(interfaces: list[Interface]) -> dict[str, Interface]:
    return {i.name: i for i in interfaces}


def groups(interfaces: list[Interface]) -> dict[str, list[Interface]]:
    """Each group (`all`, `egress`, the driver groups such as `lo`) and its
    members, in ifconfig's order."""
    out: dict[str, list[Interface]] = {}
    for iface in interfaces:
        for g in iface.groups:
            out.setdefault(g, []).append(iface)
    return out
