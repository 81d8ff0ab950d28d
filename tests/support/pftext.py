"""Hand-made `pfctl -ss -vv` records for tests, in OpenBSD 1.69's layout."""


def record(head: str, *, age: str = "00:01:00", expires: str = "00:00:50",
           pkts: str = "10:8", bytes: str = "1200:4800", extra: str = ", rule 3, pflow",
           id: str = "65b1e2a000001000", creatorid: str = "1a2b3c4d",
           tcp: bool | None = None) -> str:
    lines = [head]
    if tcp if tcp is not None else " tcp " in f" {head} ":
        lines.append("   [3466395587 + 8388480] wscale 7  [1285282327 + 65792] wscale 6")
    lines.append(f"   age {age}, expires in {expires}, {pkts} pkts, {bytes} bytes{extra}")
    lines.append(f"   id: {id} creatorid: {creatorid}")
    return "\n".join(lines) + "\n"


def sid(n: int) -> str:
    return f"65b1e2a0{n:08x}"
