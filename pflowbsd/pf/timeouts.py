"""Timeouts: which pf timeout a state is running on, and so when it last saw a packet.

pfctl prints `expires in` = st->expire + T_eff - now, where st->expire is the uptime of
the state's last packet, which is what pflow(4) reports as the flow's end.  pfctl never
prints the timeout class, so it is inferred from the state pair and the counters the way
pf.c moves it (reference pfctl-formats.md §4.4), and the effective value comes from the
rule's own timeouts, else `pfctl -st`, scaled adaptively (pf_state_expires()).

Strategy: the class is a table lookup (CLASS_BY_PROTO: protocol number -> a function of
the state pair and counters, each transcribing pf.c's transitions for its protocols);
where the text cannot tell two classes apart, LONGER_ALTERNATIVE says which to take.
Policy then turns class and `expires in` into the uptime of the last packet.

Also here: readers for `pfctl -st`, `pfctl -si -v` and `kern.boottime`, since they only
feed this arithmetic and the reload check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pflowbsd.pf.record import State

# A timeout class from a state: the PFTM_* name, None when the state cannot tell.
ClassOf = Callable[["State"], "str | None"]

# PFTM_*_VAL, identical in OpenBSD pfvar.h and FreeBSD pf.h; sctp.* FreeBSD only.
DEFAULTS: dict[str, int] = {
    "tcp.first": 120, "tcp.opening": 30, "tcp.established": 86400,
    "tcp.closing": 900, "tcp.finwait": 45, "tcp.closed": 90, "tcp.tsdiff": 30,
    "sctp.first": 120, "sctp.opening": 30, "sctp.established": 86400,
    "sctp.closing": 900, "sctp.closed": 90,
    "udp.first": 60, "udp.single": 30, "udp.multiple": 60,
    "icmp.first": 20, "icmp.error": 10,
    "other.first": 60, "other.single": 30, "other.multiple": 60,
    "frag": 60, "interval": 10, "src.track": 0,
    "adaptive.start": 60000, "adaptive.end": 120000,
}

# tcp_fsm.h levels, as pf keeps them per peer.
CLOSED, SYN_SENT, ESTABLISHED = 0, 2, 4
CLOSING, FIN_WAIT_2, TIME_WAIT = 7, 9, 10
# PFUDPS_* / PFOTHERS_*
NO_TRAFFIC, SINGLE, MULTIPLE = 0, 1, 2
# FreeBSD SCTP peer states (netinet/sctp.h SCTP_ESTABLISHED, SCTP_SHUTDOWN_*)
SCTP_ESTABLISHED, SCTP_SHUTDOWN = 0x08, (0x10, 0x20, 0x40, 0x80)
_SCTP_ONLY = re.compile(r"COOKIE_|SHUTDOWN_|BOUND|ESTABLISHED|\?")

# `pfctl -st`: printf("%-20s %10d%s\n", name, seconds, "s" | " states")
_ST_LINE = re.compile(r"^(\S+)\s+([0-9]{1,12})(?:s| states)\s*$", re.M)
_HOSTID = re.compile(r"^Hostid:\s+0x([0-9a-f]{8})\s*$", re.M)
_CHECKSUM = re.compile(r"^Checksum:\s+0x([0-9a-f]+)\s*$", re.M)
_ENTRIES = re.compile(r"^\s+current entries\s+([0-9]{1,18})\b", re.M)
_BOOTTIME = re.compile(r"sec\s*=\s*([0-9]{1,18})\b|^\s*([0-9]{1,18})\s*$", re.M)


def parse_timeouts(text: str) -> dict[str, int]:
    """`pfctl -st` (or the TIMEOUTS: block of `-sa`) over pf's defaults."""
    values = dict(DEFAULTS)
    values.update((m[1], int(m[2])) for m in _ST_LINE.finditer(text))
    return values


@dataclass(frozen=True, slots=True)
class Info:
    hostid: str | None
    checksum: str | None
    states: int | None


def parse_info(text: str) -> Info:
    """`pfctl -si -v`: Hostid (the local creatorid), ruleset Checksum, current entries."""
    hostid, checksum, entries = (_HOSTID.search(text), _CHECKSUM.search(text),
                                 _ENTRIES.search(text))
    return Info(hostid and hostid[1], checksum and checksum[1], entries and int(entries[1]))


def parse_boottime(text: str) -> int | None:
    """`sysctl -n kern.boottime`: OpenBSD prints epoch seconds, FreeBSD `{ sec = N, ... }`."""
    m = _BOOTTIME.search(text)
    return int(m[1] or m[2]) if m else None


# --- the timeout class -------------------------------------------------------------

def _tcp_class(st: State) -> str | None:
    if st.state_text.startswith("PROXY"):
        return "tcp.first"  # synproxy handshake packets neither count nor refresh
    s, d = st.src_state, st.dst_state
    if s is None or d is None or s > TIME_WAIT or d > TIME_WAIT:
        return None
    if s == SYN_SENT and d == CLOSED and st.packets[0] <= 1:
        return "tcp.first"
    if s >= FIN_WAIT_2 and d >= FIN_WAIT_2:
        return "tcp.closed"
    if s >= CLOSING and d >= CLOSING:
        return "tcp.finwait"
    if s < ESTABLISHED or d < ESTABLISHED:
        return "tcp.opening"
    if s >= CLOSING or d >= CLOSING:
        return "tcp.closing"
    return "tcp.established"


def _udp_like(prefix: str) -> ClassOf:
    """The class function of a protocol tracked like udp (PFUDPS_*), named prefix.*."""
    def klass(st: State) -> str | None:
        s, d = st.src_state, st.dst_state
        if s is None or d is None or s > MULTIPLE or d > MULTIPLE:
            return None
        if s == MULTIPLE and d == MULTIPLE:
            return prefix + ".multiple"
        if s == SINGLE and d == NO_TRAFFIC and st.packets[0] <= 1:
            return prefix + ".first"
        return prefix + ".single"
    return klass


def _icmp_class(st: State) -> str | None:
    return "icmp.first" if st.packets[0] + st.packets[1] <= 1 else "icmp.error"


def _sctp_class(st: State) -> str | None:
    # FreeBSD pf_sctp_track(), approximately; levels are netinet/sctp.h's SCTP_* bits.
    s, d = st.src_state, st.dst_state
    if s is None or d is None:
        return None
    if st.packets[0] + st.packets[1] <= 1:
        return "sctp.first"
    if s in SCTP_SHUTDOWN or d in SCTP_SHUTDOWN:
        return "sctp.closing"
    if s == d == SCTP_ESTABLISHED:
        return "sctp.established"
    if (s == CLOSED or d == CLOSED) and st.packets[1]:
        return "sctp.closed"
    return "sctp.opening"


def _other_or_sctp(st: State) -> str | None:
    # OpenBSD prints SCTP as a plain "other" protocol; FreeBSD >= 14 with SCTP names.
    if st.proto == 132 and _SCTP_ONLY.search(st.state_text):
        return _sctp_class(st)
    return _udp_like("other")(st)


# Where the text cannot tell two classes apart, the one the counters suggest, and the
# one to take when `expires in` shows more time than the first allows: an ICMP error
# charged to a state counts as a packet but does not move icmp.first to icmp.error.
LONGER_ALTERNATIVE: dict[str, str] = {"icmp.error": "icmp.first"}

CLASS_BY_PROTO: dict[int, ClassOf] = {
    6: _tcp_class, 17: _udp_like("udp"), 1: _icmp_class, 58: _icmp_class}


def timeout_class(st: State) -> str | None:
    """The PFTM_* a state runs on, by pf.c's update rules; None when it cannot be told."""
    return CLASS_BY_PROTO.get(st.proto, _other_or_sctp)(st)


def class_key(st: State) -> tuple[object, ...]:
    """All that timeout_class() reads of a state, as a dict key: states with one key
    run on one class (a class function that reads more must add it here)."""
    p0, p1 = st.packets
    return (st.proto, st.state_text, st.src_state, st.dst_state, p0 <= 1, p0 + p1 <= 1, p1 > 0)


def effective(timeout: int, states: int, start: int, end: int) -> int:
    """pf_state_expires(): adaptive scaling once the table grows past adaptive.start."""
    if start and end and start < end and states > start:
        if states >= end:
            return 0
        return timeout * (end - states) // (end - start)
    return timeout


@dataclass(slots=True)
class Policy:
    """The timeouts in force: `pfctl -st` values, and per-rule ones through `rule_of`."""

    timeouts: dict[str, int]
    # state -> its Rule or None; read are a rule's `timeouts` (name -> s) and
    # `states_cur`, where it has them.
    rule_of: Callable[[State], object] | None = None
    _scaled: dict[int, dict[str, int]] = field(default_factory=dict, repr=False, compare=False)
    # known_classes(): class_key -> (its class's timeout, its longer alternative's) or
    # None, at one table size
    _known: dict[int, dict[tuple[object, ...], tuple[int, int] | None]] = field(
        default_factory=dict, repr=False, compare=False)

    def _table(self, nstates: int) -> dict[str, int]:
        """Every class's effective timeout at this table size, kept for the next
        states of the same poll (one table: the size changes from poll to poll)."""
        table = self._scaled.get(nstates)
        if table is None:
            start, end = self.timeouts["adaptive.start"], self.timeouts["adaptive.end"]
            table = {k: effective(self.timeouts.get(k, v), nstates, start, end)
                     for k, v in DEFAULTS.items()}
            self._scaled.clear()
            self._scaled[nstates] = table
        return table

    def _own_timeouts(self, own: dict[str, int], rule: object, nstates: int
                      ) -> Callable[[str], int]:
        """A class's effective timeout under a rule with timeouts of its own (its own
        adaptive range and state count, if it sets one)."""
        if "adaptive.start" in own or "adaptive.end" in own:
            start, end = own.get("adaptive.start", 0), own.get("adaptive.end", 0)
            count = getattr(rule, "states_cur", None) or nstates
        else:
            start, end = self.timeouts["adaptive.start"], self.timeouts["adaptive.end"]
            count = nstates

        def t_eff(name: str) -> int:
            base = own.get(name, self.timeouts.get(name, DEFAULTS.get(name, 0)))
            return effective(base, count, start, end)
        return t_eff

    def known_classes(self, nstates: int) -> dict[tuple[object, ...], tuple[int, int] | None]:
        """What _fastbuild.admit() reads Last from, for states with no rule of their own
        timeouts: class_key() -> (its class's timeout, its longer alternative's) or None
        (no class), at this table size; learn() fills it, one class per key, not one
        per state."""
        known = self._known.get(nstates)
        if known is None:
            self._known.clear()
            known = self._known[nstates] = {}
        return known

    def learn(self, st: State, nstates: int) -> None:
        """known_classes(nstates)[class_key(st)], worked out as last_packet() would."""
        assert self.rule_of is None
        table = self._table(nstates)
        klass = timeout_class(st)
        self.known_classes(nstates)[class_key(st)] = None if klass is None else (
            table[klass], table[LONGER_ALTERNATIVE.get(klass, klass)])

    def last_packet(self, st: State, poll: float, nstates: int,
                    rule: object = None) -> tuple[float, bool]:
        """Uptime of the state's last packet, and whether the timeout class was known.

        Falls back to `poll` (the caller passes the poll at which the counters changed).
        `rule` is the state's rule when the caller knows it better than its number does
        (after an OpenBSD reload a state prints no `rule N` but keeps its rule's timeouts).
        """
        klass = timeout_class(st)
        if klass is None or st.expires_in_s is None:
            return poll, False
        if rule is None and self.rule_of:
            rule = self.rule_of(st)
        own: dict[str, int] = getattr(rule, "timeouts", None) or {}
        t_eff: Callable[[str], int]
        if not own:  # the usual case: `pfctl -st`'s values, scaled for this table size
            t_eff = self._table(nstates).__getitem__
        else:
            t_eff = self._own_timeouts(own, rule, nstates)
        t = t_eff(klass)
        if st.expires_in_s > t and klass in LONGER_ALTERNATIVE:
            # Never a class whose timeout is below what `expires in` still shows.
            t = t_eff(LONGER_ALTERNATIVE[klass])
        remaining = st.expires_in_s
        if remaining > t:
            # FreeBSD's netlink export sends the absolute uptime for a state past its
            # expiry but not yet purged (pf_nl.c dump_state): read it as 0.
            remaining = 0
        return poll - (t - remaining), True
