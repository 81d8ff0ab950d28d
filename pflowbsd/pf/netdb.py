"""The network database pfctl consults: protocol names and numbers, service ports.

pfctl prints a state's protocol with getprotobynumber() and reads a rule's `proto` and
`port` words with getprotobyname()/getservbyname(), so both come from the host's
/etc/protocols and /etc/services.  These tables are those files' BSD contents, defined
once here for the state parser, the rule grammar, the collector and the simulator; a
name outside them can still be found in the running host's database by the caller.
"""

from __future__ import annotations

from collections.abc import Callable

# getprotobynumber(): first name per number in the BSD /etc/protocols
# (FreeBSD lib/libc/net/protocols; OpenBSD etc/protocols agrees on these).
PROTOCOLS: dict[str, int] = {
    "ip": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st2": 5, "tcp": 6,
    "cbt": 7, "egp": 8, "igp": 9, "bbn-rcc": 10, "nvp": 11, "pup": 12,
    "argus": 13, "emcon": 14, "xnet": 15, "chaos": 16, "udp": 17, "mux": 18,
    "dcn": 19, "hmp": 20, "prm": 21, "xns-idp": 22, "trunk-1": 23,
    "trunk-2": 24, "leaf-1": 25, "leaf-2": 26, "rdp": 27, "irtp": 28,
    "iso-tp4": 29, "netblt": 30, "mfe-nsp": 31, "merit-inp": 32, "dccp": 33,
    "3pc": 34, "idpr": 35, "xtp": 36, "ddp": 37, "idpr-cmtp": 38, "tp++": 39,
    "il": 40, "ipv6": 41, "sdrp": 42, "ipv6-route": 43, "ipv6-frag": 44,
    "idrp": 45, "rsvp": 46, "gre": 47, "dsr": 48, "bna": 49, "esp": 50,
    "ah": 51, "i-nlsp": 52, "swipe": 53, "narp": 54, "mobile": 55, "tlsp": 56,
    "skip": 57, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
    "cftp": 62, "sat-expak": 64, "kryptolan": 65, "rvd": 66, "ippc": 67,
    "sat-mon": 69, "visa": 70, "ipcv": 71, "cpnx": 72, "cphb": 73, "wsn": 74,
    "pvp": 75, "br-sat-mon": 76, "sun-nd": 77, "wb-mon": 78, "wb-expak": 79,
    "iso-ip": 80, "vmtp": 81, "secure-vmtp": 82, "vines": 83, "ttp": 84,
    "nsfnet-igp": 85, "dgp": 86, "tcf": 87, "eigrp": 88, "ospf": 89,
    "sprite-rpc": 90, "larp": 91, "mtp": 92, "ax.25": 93, "ipip": 94,
    "micp": 95, "scc-sp": 96, "etherip": 97, "encap": 98, "gmtp": 100,
    "ifmp": 101, "pnni": 102, "pim": 103, "aris": 104, "scps": 105, "qnx": 106,
    "a/n": 107, "ipcomp": 108, "snp": 109, "compaq-peer": 110, "ipx-in-ip": 111,
    "carp": 112, "pgm": 113, "l2tp": 115, "ddx": 116, "iatp": 117, "stp": 118,
    "srp": 119, "uti": 120, "smp": 121, "sm": 122, "ptp": 123, "isis": 124,
    "fire": 125, "crtp": 126, "crudp": 127, "sscopmce": 128, "iplt": 129,
    "sps": 130, "pipe": 131, "sctp": 132, "fc": 133, "rsvp-e2e-ignore": 134,
    "mobility-header": 135, "udplite": 136, "mpls-in-ip": 137, "manet": 138,
    "hip": 139, "shim6": 140, "wesp": 141, "rohc": 142, "pfsync": 240,
    "divert": 258,
    # OpenBSD etc/protocols names FreeBSD's file spells otherwise (or lacks)
    "ucl": 7, "bbn-rcc-mon": 10, "nvp-ii": 11, "dcn-meas": 19, "sep": 33,
    "sip-sr": 43, "sip-frag": 44, "mhrp": 48, "nhrp": 54, "mobileip": 55,
    "any": 61, "igrp": 88, "reserved": 255,
    # aliases seen on other systems, so a foreign table still resolves
    "icmp6": 58, "vrrp": 112, "st": 5, "hopopt": 0, "ospfigp": 89,
}

# getprotobynumber(): the first name listed for each number (aliases come after it).
PROTO_NAMES: dict[int, str] = {}
for _name, _number in PROTOCOLS.items():
    PROTO_NAMES.setdefault(_number, _name)
del _name, _number


# getprotobyname() of the running host, for a name outside PROTOCOLS: the shell sets
# it (socket is I/O); the core only calls it.  None: not known there either.
Resolver = Callable[[str], int | None]
_resolver: Resolver | None = None


def set_resolver(resolve: Resolver | None) -> None:
    global _resolver
    _resolver = resolve


def proto_number(name: str) -> int | None:
    """The number of a protocol name pfctl printed: PROTOCOLS, else the host's database,
    else None (a state whose protocol is not known cannot be exported)."""
    num = PROTOCOLS.get(name)
    if num is None and _resolver is not None:
        num = _resolver(name)
    return num if num is not None and 0 <= num <= 255 else None


def proto_name(number: int) -> str:
    """The name pfctl prints for a protocol number: its /etc/protocols name, or the number."""
    return PROTO_NAMES.get(number, str(number))


# getservbyname(): enough of /etc/services for the names rules use.
SERVICES: dict[str, int] = {
    "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25,
    "domain": 53, "bootps": 67, "bootpc": 68, "tftp": 69, "http": 80,
    "www": 80, "auth": 113, "ident": 113, "pop3": 110, "ntp": 123,
    "imap": 143, "snmp": 161, "bgp": 179, "ldap": 389, "https": 443,
    "syslog": 514, "submission": 587, "imaps": 993, "pop3s": 995,
    "echo": 7, "discard": 9, "daytime": 13, "chargen": 19, "time": 37,
    "finger": 79, "kerberos": 88, "nntp": 119, "netbios-ns": 137,
    "netbios-dgm": 138, "netbios-ssn": 139, "irc": 194, "ldaps": 636,
    "rsync": 873, "socks": 1080, "mysql": 3306, "postgresql": 5432,
    "isakmp": 500, "ipsec-nat-t": 4500, "openvpn": 1194, "sftp": 115,
}
