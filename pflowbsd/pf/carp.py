"""CARP: whether this firewall is the master of its pair, from `ifconfig carpN`.

Both boxes of a pfsync'd pair hold every state, so two pflowbsd would report every
flow twice.  With `carp carpN` each one tracks all states (so a failover loses
nothing: the new master already knows every state and goes on counting it; only what
the old master counted after its last full pfsync update is missing) but exports
only while it is MASTER.
"""

from __future__ import annotations

import re

# "\tcarp: MASTER carpdev em0 vhid 1 advbase 1 advskew 0" (OpenBSD),
# "\tcarp: BACKUP vhid 1 advbase 1 advskew 0" (FreeBSD, one line per vhid)
_STATUS = re.compile(r"^\s*carp: (INIT|BACKUP|MASTER)\b", re.M)


def parse_status(text: str) -> str | None:
    """MASTER only when every vhid listed is MASTER; None when ifconfig shows no carp."""
    found = set(_STATUS.findall(text))
    if not found:
        return None
    return "MASTER" if found == {"MASTER"} else ("BACKUP" if "BACKUP" in found else "INIT")
