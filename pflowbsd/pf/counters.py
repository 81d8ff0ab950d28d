"""A known state's record, read only as far as its update needs.

Strategy.  A state the tracker already holds changed counters: its key, interface,
addresses and selection were settled at first sight.  What the update needs is the
counters, `expires in`, the state pair (for the timeout class), the rule and anchor
(for the rule's own timeouts), and the pflow key's hosts as text, to check that the
record is still the same connection.  read_change() takes those from one
grammar.FastRecord, through the same memo caches pf/record.py's bulk builder uses, and
gives up (None) on anything unusual (a word not in a cache yet, a routing domain
prefix), so the caller parses the record in full instead.  Counters past 64 bits
are the caller's to refuse (struct.error where it packs them).
"""

from __future__ import annotations

from pflowbsd.pf import tokens as t_
from pflowbsd.pf.grammar import FastRecord
from pflowbsd.pf.record import _HOURS, _MMSS, State

# read_change(): the State for the timeout arithmetic (proto, state_text, src_state,
# dst_state, packets, bytes, age_s, expires_in_s, anchor, rule only), then the pflow
# key's hosts as printed: source address, port, destination address, port.
Change = tuple[State, str, int, str, int]


def read_change(rec: FastRecord) -> Change | None:
    (_ifname, proto_t, La, Lp4, Lp6, LXa, LXp4, LXp6, _gw1, arrow, Ra, Rp4, Rp6,
     RXa, RXp4, RXp6, _gw2, state_text, _seq, age_h, age_ms, exp_h, exp_ms, p0, p1,
     b0, b1, anchor, rule, _opts, _id, _creatorid, _idx, _origif) = rec
    if La[0] == "(" or Ra[0] == "(" or len(age_h) > 12 or len(exp_h) > 12:
        return None
    try:
        proto, _name, levels = _PROTOCOLS[proto_t]
        lv, rv, state_text = levels.cache[state_text]
        age = _HOURS_C[age_h] + _MMSS_C[age_ms]
        expires = _HOURS_C[exp_h] + _MMSS_C[exp_ms]
        anchor_nr = _NUMBER[anchor] if anchor else None
        rule_nr = _NUMBER[rule] if rule else None
    except KeyError:
        return None
    st = State()
    st.proto, st.state_text = proto, state_text
    if arrow:  # "<-": inbound; pflow's key is the wire side: right (RX) -> left (LX)
        if RXa:
            sa, sp = RXa, RXp4 or RXp6
        else:
            sa, sp = Ra, Rp4 or Rp6
        if LXa:
            da, dp = LXa, LXp4 or LXp6
        else:
            da, dp = La, Lp4 or Lp6
        st.src_state, st.dst_state = rv, lv
    else:
        if LXa:  # outbound: the stack side, LX -> RX (or R); af-to: the wire side, the same
            sa, sp = LXa, LXp4 or LXp6
            if (":" in LXa) is not (":" in La):
                st.src_state, st.dst_state = rv, lv  # af-to is inbound
            else:
                st.src_state, st.dst_state = lv, rv
        else:
            sa, sp = La, Lp4 or Lp6
            st.src_state, st.dst_state = lv, rv
        if RXa:
            da, dp = RXa, RXp4 or RXp6
        else:
            da, dp = Ra, Rp4 or Rp6
    st.packets = (int(p0), int(p1))
    st.bytes = (int(b0), int(b1))
    st.age_s, st.expires_in_s = age, expires
    st.anchor, st.rule = anchor_nr, rule_nr
    return st, sa, int(sp) if sp else 0, da, int(dp) if dp else 0


_PROTOCOLS, _NUMBER = t_.PROTOCOLS.cache, t_.NUMBER.cache
_HOURS_C, _MMSS_C = _HOURS.cache, _MMSS.cache
