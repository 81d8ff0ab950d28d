"""pfctl_parser.c's name tables, transcribed once for the rule printer.

icmp_type[], icmp6_type[], icmp_code[] and icmp6_code[] in the order the
source lists them: geticmptypebynumber() and geticmpcodebynumber() return
the first entry that matches, so a number several names share (icmp6 130 is
groupqry and listqry) prints as the first.  parse.y's tos names and the
return-icmp defaults sit here too.  Lookups only; the printer puts the words together.
"""
import re
from typing import Any

# icmp_type[]: (name, type) -- netinet/ip_icmp.h numbers.
ICMP_TYPES = (
    ("echoreq", 8), ("echorep", 0), ("unreach", 3), ("squench", 4),
    ("redir", 5), ("althost", 6), ("routeradv", 9), ("routersol", 10),
    ("timex", 11), ("paramprob", 12), ("timereq", 13), ("timerep", 14),
    ("inforeq", 15), ("inforep", 16), ("maskreq", 17), ("maskrep", 18),
    ("trace", 30), ("dataconv", 31), ("mobredir", 32), ("ipv6-where", 33),
    ("ipv6-here", 34), ("mobregreq", 35), ("mobregrep", 36), ("skip", 39),
    ("photuris", 40))
# icmp6_type[]: (name, type) -- netinet/icmp6.h numbers.
ICMP6_TYPES = (
    ("unreach", 1), ("toobig", 2), ("timex", 3), ("paramprob", 4),
    ("echoreq", 128), ("echorep", 129), ("groupqry", 130), ("listqry", 130),
    ("grouprep", 131), ("listenrep", 131), ("groupterm", 132),
    ("listendone", 132), ("routersol", 133), ("routeradv", 134),
    ("neighbrsol", 135), ("neighbradv", 136), ("redir", 137),
    ("routrrenum", 138), ("wrureq", 139), ("wrurep", 140), ("fqdnreq", 139),
    ("fqdnrep", 140), ("niqry", 139), ("nirep", 140), ("mtraceresp", 200),
    ("mtrace", 201), ("listenrepv2", 143))
# icmp_code[]: (name, type, code).
ICMP_CODES = (
    ("net-unr", 3, 0), ("host-unr", 3, 1), ("proto-unr", 3, 2),
    ("port-unr", 3, 3), ("needfrag", 3, 4), ("srcfail", 3, 5),
    ("net-unk", 3, 6), ("host-unk", 3, 7), ("isolate", 3, 8),
    ("net-prohib", 3, 9), ("host-prohib", 3, 10), ("net-tos", 3, 11),
    ("host-tos", 3, 12), ("filter-prohib", 3, 13), ("host-preced", 3, 14),
    ("cutoff-preced", 3, 15), ("redir-net", 5, 0), ("redir-host", 5, 1),
    ("redir-tos-net", 5, 2), ("redir-tos-host", 5, 3), ("normal-adv", 9, 0),
    ("common-adv", 9, 16), ("transit", 11, 0), ("reassemb", 11, 1),
    ("badhead", 12, 0), ("optmiss", 12, 1), ("badlen", 12, 2),
    ("unknown-ind", 40, 1), ("auth-fail", 40, 2), ("decrypt-fail", 40, 3))
# icmp6_code[]: (name, type, code).
ICMP6_CODES = (
    ("admin-unr", 1, 1), ("noroute-unr", 1, 0), ("beyond-unr", 1, 2),
    ("addr-unr", 1, 3), ("port-unr", 1, 4), ("transit", 3, 0),
    ("reassemb", 3, 1), ("badhead", 4, 0), ("nxthdr", 4, 1),
    ("redironlink", 137, 0), ("redirrouter", 137, 1))

ICMP_UNREACH, ICMP6_DST_UNREACH = 3, 1
# parse.y returnicmpdefault / returnicmp6default: port unreachable.
RETURN_ICMP_DEFAULT, RETURN_ICMP6_DEFAULT = 3, 4
# parse.y `tos`: the names it takes for a number.
TOS_NAMES = {"lowdelay": 0x10, "throughput": 0x08, "reliability": 0x04}


def number(value: Any, top: int = 255) -> int | None:
    """A NUMBER parse.y takes here (0..top), or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value <= top else None
    return None


def tos_number(value: Any) -> int | None:
    """parse.y `tos`: a number, 0x hex or lowdelay/throughput/reliability."""
    if isinstance(value, str):
        if value in TOS_NAMES:
            return TOS_NAMES[value]
        if not re.fullmatch(r"0[xX][0-9a-fA-F]+", value):
            return None
        value = int(value, 16)
    return number(value)


def _inet6(af: str | None) -> bool:
    return af == "inet6"


def icmp_type_number(name: str, af: str | None) -> int | None:
    """geticmptypebyname(): the type a name stands for, or None."""
    table = ICMP6_TYPES if _inet6(af) else ICMP_TYPES
    return next((n for w, n in table if w == name), None)


def icmp_type_name(number: int, af: str | None) -> str | None:
    """geticmptypebynumber(): the first name of a type, or None."""
    table = ICMP6_TYPES if _inet6(af) else ICMP_TYPES
    return next((w for w, n in table if n == number), None)


def icmp_code_number(itype: int, name: str, af: str | None) -> int | None:
    """geticmpcodebyname(): the code a name stands for under a type."""
    table = ICMP6_CODES if _inet6(af) else ICMP_CODES
    return next((c for w, t, c in table if t == itype and w == name), None)


def icmp_code_name(itype: int, code: int, af: str | None) -> str | None:
    """geticmpcodebynumber(): the first name of (type, code), or None."""
    table = ICMP6_CODES if _inet6(af) else ICMP_CODES
    return next((w for w, t, c in table if t == itype and c == code), None)


def icmp_type_word(itype: Any, af: str | None) -> tuple[int, str] | None:
    """(type, word print_rule shows) for a type given by name or number: its
    name where pfctl_parser.c's table has one (geticmptypebynumber()), else the
    number; None for an unknown name."""
    if isinstance(itype, str):
        n = icmp_type_number(itype, af)
        return None if n is None else (n, icmp_type_name(n, af) or str(n))
    if number(itype) is None:
        return None
    return itype, icmp_type_name(itype, af) or str(itype)


def icmp_code_word(code: Any, itype: int, af: str | None) -> str | None:
    """The code's word, as icmp_type_word() treats a type."""
    if isinstance(code, str):
        n = icmp_code_number(itype, code, af)
        return None if n is None else icmp_code_name(itype, n, af)
    if number(code) is None:
        return None
    return icmp_code_name(itype, code, af) or str(code)


def unreach_code_name(code: Any, af: str) -> str | None:
    """return-icmp's code (a name or number under unreach) as print_rule
    shows it: its name, else its number."""
    itype = ICMP6_DST_UNREACH if af == "inet6" else ICMP_UNREACH
    n = number(code if isinstance(code, int) else int(code)
               if code.isdigit() else icmp_code_number(itype, code, af))
    if n is None:
        return None
    return icmp_code_name(itype, n, af) or str(n)
