"""The text grammar of `pfctl -ss [-v [-v]]`, transcribed from print_state().

Strategy: a state is a record of 1-6 lines (pf_print_state.c print_state():
the state line, the TCP `print_seq()` line, the `age`/`expires in`/counters
line, the `id:`/`creatorid:` line, FreeBSD's `origif:` line, pfSense's
`gateway:` line). Each line is a regex fragment named after the printf() that
writes it, and RECORD joins them into one strict multi-line regex with named
groups. FAST_RECORD is the same grammar for one table's verbosity, with few
plain groups (FAST_FIELDS, typed as FastRecord), run with findall() over the
text: one C-level match and one tuple per state.
SCAN_RECORD is the lean -vv variant of scan(): it only captures the key, the
state line and the counters. TRACK_TAIL is leaner still, the tracker's poll loop
over tables it has seen before (pf/snapshot.py). Optional `, token`s of the
counters line and extras of the id line are left as text and split only when
read (pf/tokens.py); the words they hold are named at the end of this module.

Sources: OpenBSD sbin/pfctl/pf_print_state.c 1.69 and FreeBSD 14/15
sbin/pfctl/pf_print_state.c, as summarised in pfctl-formats.md §1-§2.
"""

from __future__ import annotations

import re
from typing import TypeAlias


# print_host(): inet_ntop() address, then ":%u" (AF_INET) or "[%u]" (AF_INET6)
# when the port is non-zero; OpenBSD prefixes "(%d) " when rdomain != 0.
# An inet address is four dotted decimals; anything with a colon is inet6
# (which may embed a dotted quad: ::ffff:192.0.2.33).
def _host(p: str) -> str:
    return (rf"(?:\((?P<{p}rd>\d+)\) )?(?P<{p}h>"
            rf"(?P<{p}a>\d+\.\d+\.\d+\.\d+|[0-9a-f]*:[0-9a-f:.]*)"
            rf"(?::(?P<{p}p4>\d+)|\[(?P<{p}p6>\d+)\])?)")


# print_state() line 1:
#   printf("%s ", ifname); printf("%s ", p_name) | printf("%u ", proto);
#   print_host(nk[1]) [" (" print_host(sk) ")"] [" {%s}" rt_addr, PF_IN]
#   " -> " | " <- "
#   print_host(nk[0]) [" (" print_host(sk) ")"] [" {%s}" rt_addr, PF_OUT]
#   "    " "   %s:%s\n" | "   PROXY:SRC\n" | "   <BAD STATE LEVELS %u:%u>\n"
# The old (OpenBSD <= 4.3, FreeBSD <= 9) "lan -> gwy -> ext" form has a
# middle host (M) and a second arrow.
STATE_LINE = (
    r"(?P<ifname>[^ \n]+) (?P<proto>[^ \n]+) "
    + _host("L") + r"(?: \(" + _host("LX") + r"\))?(?: \{(?P<gw1>[^}\n]+)\})?"
    + r" (?P<arrow>->|<-) "
    + r"(?:" + _host("M") + r" (?P<arrow2>->|<-) )?"
    + _host("R") + r"(?: \(" + _host("RX") + r"\))?(?: \{(?P<gw2>[^}\n]+)\})?"
    + r" {7}(?P<state><BAD STATE LEVELS \d+:\d+>|[^ \n]+)\n"
)

# print_seq(src) [" wscale %u"] "  " print_seq(dst) [" wscale %u"]:
#   "[%u + %u]" (seqlo, seqhi - seqlo), "(+%u)" seqdiff under modulate state.
SEQ_LINE = (
    r"   \[(?P<sseq>\d+) \+ (?P<swin>\d+)\](?:\(\+(?P<sdiff>\d+)\))?(?: wscale (?P<sws>\d+))?"
    r"  \[(?P<dseq>\d+) \+ (?P<dwin>\d+)\](?:\(\+(?P<ddiff>\d+)\))?(?: wscale (?P<dws>\d+))?\n"
)

# "   age %.2u:%.2u:%.2u" ", expires in %.2u:%.2u:%.2u"
# ", %llu:%llu pkts, %llu:%llu bytes" [", anchor %u"] [", rule %u"] [", <flag>"...]
AGE_LINE = (
    r"   age (?P<age>\d+:\d\d:\d\d), expires in (?P<exp>\d+:\d\d:\d\d), "
    r"(?P<counters>(?P<p0>\d+):(?P<p1>\d+) pkts, (?P<b0>\d+):(?P<b1>\d+) bytes)"
    r"(?P<tail>(?:, anchor (?P<anchor>\d+))?(?:, rule (?P<rule>\d+))?(?P<opts>, [^\n]*)?)\n"
)

# "   id: %016llx creatorid: %08x" then FreeBSD " route-to: %s@%s" " rtable: %d",
# FreeBSD 13 " gateway: %s", OpenBSD 5.2-6.4 " rt_addr: %s", old " (no-sync)".
ID_LINE = (
    r"   id: (?P<id>[0-9a-f]{16}) creatorid: (?P<creatorid>[0-9a-f]{8})(?P<idx> [^\n]*)?\n"
)

# FreeBSD >= 13: "   origif: %s\n"; pfSense: "   gateway: %s\n".
EXTRA_LINES = (
    r"(?:   (?:origif: (?P<origif>[^ \n]+)|gateway: (?P<pfsgw>[^ \n]+))\n){0,2}"
)

RECORD = re.compile(
    r"^" + STATE_LINE + r"(?:" + SEQ_LINE + r")?(?:" + AGE_LINE + r")?(?:"
    + ID_LINE + r")?" + EXTRA_LINES, re.M)

# The fast path: the common shape of one table's records, fixed by the table's
# verbosity so that no line is optional except the tcp and origif ones ("|)"
# instead of "?": cheaper in sre). Every sre group costs time per record, so
# groups are few: print_host() is ("(rd) addr", ":port", "[port]") with the
# address form checked here (inet: never followed by "["; inet6: two colons);
# the arrow is "<" or "" (a one-character str costs sre no allocation);
# the tcp line is captured whole and split only when State.tcp is read
# (SEQ_BODY). Shorter verbosities end in empty groups so that all three give
# FAST_FIELDS. Whatever this does not take goes through RECORD.
_FAST_ADDR = r"(?:\d++\.\d++\.\d++\.\d++(?!\[)|[0-9a-f]*+:[0-9a-f.]*+:[0-9a-f:.]*+)"
_FAST_HOST = r"((?:\(\d++\) |)" + _FAST_ADDR + r")(?::(\d++)|\[(\d++)\]|)"
_FAST_HEAD = (
    r"^([^ \n]+) ([^ \n]+) " + _FAST_HOST + r"(?: \(" + _FAST_HOST + r"\)|)"
    r"(?: \{([^}\n]+)\}|) (?:->|(<)-) " + _FAST_HOST + r"(?: \(" + _FAST_HOST + r"\)|)"
    r"(?: \{([^}\n]+)\}|) {7}([^\n]+)\n")
_SEQ_PEER = r"\[\d++ \+ \d++\](?:\(\+\d++\)|)(?: wscale \d++|)"
_FAST_SEQ = r"(?:   (" + _SEQ_PEER + "  " + _SEQ_PEER + r")\n|)"
_FAST_AGE = (r"   age (\d++):(\d\d:\d\d), expires in (\d++):(\d\d:\d\d), (\d++):(\d++) pkts,"
             r" (\d++):(\d++) bytes(?:, anchor (\d++)|)(?:, rule (\d++)|)(, [^\n]*+|)\n")
_FAST_ID = (r"   id: ([0-9a-f]{16}) creatorid: ([0-9a-f]{8})([^\n]*+)\n"
            r"(?:   origif: ([^ \n]+)\n|)")
FAST_FIELDS = (
    "ifname", "proto", "La", "Lp4", "Lp6", "LXa", "LXp4", "LXp6", "gw1", "arrow",
    "Ra", "Rp4", "Rp6", "RXa", "RXp4", "RXp6", "gw2", "state",
    "seq", "age_h", "age_ms", "exp_h", "exp_ms", "p0", "p1", "b0", "b1", "anchor", "rule",
    "opts",
    "id", "creatorid", "idx", "origif")
# One FAST_FIELDS tuple, as findall() or match.groups() gives it and record.build_strict()
# makes it: "" or None where pfctl printed nothing, except the age fields (always str).
FastRecord: TypeAlias = tuple[
    str, str,                                           # ifname proto
    str, str | None, str | None,                        # La Lp4 Lp6
    str | None, str | None, str | None, str | None,     # LXa LXp4 LXp6 gw1
    str | None,                                         # arrow: "<" for "<-"
    str, str | None, str | None,                        # Ra Rp4 Rp6
    str | None, str | None, str | None, str | None,     # RXa RXp4 RXp6 gw2
    str, str | None,                                    # state seq
    str, str, str, str, str, str, str, str,             # age_h age_ms exp_h exp_ms p0 p1 b0 b1
    str | None, str | None, str,                        # anchor rule opts
    str | None, str | None, str | None, str | None]     # id creatorid idx origif
# re.ASCII: \d as [0-9] is cheaper per character than Unicode
# \d; pfctl prints ASCII digits only, so a record it rejects goes to RECORD.
FAST_RECORD = {
    "ss": re.compile(_FAST_HEAD + "()" * 16, re.M | re.A),
    "v": re.compile(_FAST_HEAD + _FAST_SEQ + _FAST_AGE + "()" * 4, re.M | re.A),
    "vv": re.compile(_FAST_HEAD + _FAST_SEQ + _FAST_AGE + _FAST_ID, re.M | re.A),
}
assert {rx.groups for rx in FAST_RECORD.values()} == {len(FAST_FIELDS)}


# SEQ_LINE without its indent and newline, for the lazy State.tcp.
SEQ_BODY = re.compile(SEQ_LINE[3:-2])

STATE_LINE_RE = re.compile(STATE_LINE)

# The -vv record as the tracker needs it: (state line, counters, id, creatorid).
SCAN_RECORD = re.compile(
    r"^([^ \n][^\n]*)\n(?:   \[[^\n]*\n)?"
    r"   age \d+:\d\d:\d\d, expires in \d+:\d\d:\d\d, (\d+:\d+ pkts, \d+:\d+ bytes)[^\n]*\n"
    r"   id: ([0-9a-f]{16}) creatorid: ([0-9a-f]{8})[^\n]*\n"
    r"(?:   (?:origif|gateway): [^\n]*\n){0,2}", re.M)

# The tracker's view of a -vv record, from the byte counters to the end of the id
# line's creatorid: "B0:B1 bytes[, anchor N][, rule N][, flags]\n   id: <16 hex>
# creatorid: <8 hex>". Packets cannot move without bytes moving, so this text changes
# exactly when the counters, rule or flags do, and it ends with the state's identity.
TRACK_TAIL = re.compile(
    r" pkts, (\d++:\d++ bytes[^\n]*+\n   id: [0-9a-f]{16} creatorid: [0-9a-f]{8})", re.ASCII)
TRACK_KEY = 36  # len("<16 hex> creatorid: <8 hex>"), the end of every TRACK_TAIL

# Optional tokens after the counters: split on ", " (tokens may hold spaces).
OPT_SEP = ", "
# FreeBSD print_state(): tokens with arguments.
OPT_SET_TOS = re.compile(r"set-tos 0x([0-9a-f]{2})")
OPT_SET_PRIO = re.compile(r"set-prio \(0x([0-9a-f]{2}) 0x([0-9a-f]{2})\)")
OPT_DUMMYNET = re.compile(r"dummynet (pipe|queue) \((-?\d+) (-?\d+)\)")
OPT_INT = re.compile(r"(min-ttl|max-mss|rlabel) (\d+)")

# Extras of the id line, FreeBSD: print_host(rt_addr) then "@%s" rt_ifname.
ID_EXTRA = re.compile(
    r" (?:(?P<kind>route-to|dup-to|reply-to|gateway): (?P<addr>[^ @]+)(?:@(?P<ifname>[^ ]+))?"
    r"|rtable: (?P<rtable>-?\d+)|rt_addr: (?P<rt_addr>[^ ]+)|(?P<nosync>\(no-sync\)))")

# netinet/tcp_fsm.h tcpstates[]; PFUDPS_NAMES / PFOTHERS_NAMES (pfvar.h);
# FreeBSD sctp_state_name() with the SCTP_* values of netinet/sctp_uio.h.
TCP_STATES = ("CLOSED", "LISTEN", "SYN_SENT", "SYN_RCVD", "ESTABLISHED",
              "CLOSE_WAIT", "FIN_WAIT_1", "CLOSING", "LAST_ACK", "FIN_WAIT_2",
              "TIME_WAIT")
UDP_STATES = ("NO_TRAFFIC", "SINGLE", "MULTIPLE")
SCTP_STATES = {"CLOSED": 0, "BOUND": 0x1000, "LISTEN": 0x2000, "COOKIE_WAIT": 2,
               "COOKIE_ECHOED": 4, "ESTABLISHED": 8, "SHUTDOWN_SENT": 0x10,
               "SHUTDOWN_RECEIVED": 0x20, "SHUTDOWN_ACK_SENT": 0x40,
               "SHUTDOWN_PENDING": 0x80}
BAD_STATE = re.compile(r"<BAD STATE LEVELS (\d+):(\d+)>")

