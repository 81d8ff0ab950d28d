"""A stand-in pfctl that misbehaves on cue, for the fault tests (issue 11).

`-ss -vv` call N (counted from 0) serves snap<N>.txt, else `last`; with hang<N> it
starts a grandchild (its pid in `grandchild`) and sleeps, never printing; with
forever<N> it prints `last` in a loop without end; with slow<N> it notes its start
(epoch seconds) in started<N> and takes 2 s; with failafter<N> it prints its text and
then fails (exit 1), as a pfctl whose ioctl broke part way would.  `-si -v` serves info<N> (N: the
-ss calls made so far), else `info`, and fails with failinfo<N>.  Every call is logged to `calls`.  What is empty,
garbage, cut or of an unknown protocol is simply the snapshot text the test writes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

SCRIPT = r"""#!/bin/sh
D="$(dirname "$0")"
n=$(cat "$D/n")
echo "$n $*" >> "$D/calls"
if [ "$*" = "-ss -vv" ]; then echo $((n + 1)) > "$D/n"; fi
case "$*" in
  "-ss -vv")
    if [ -e "$D/hang$n" ]; then
      sleep 300 & echo $! > "$D/grandchild"; sleep 300; exit 0
    fi
    if [ -e "$D/forever$n" ]; then exec yes "$(cat "$D/last")"; fi
    if [ -e "$D/slow$n" ]; then date +%s > "$D/started$n"; sleep 2; fi
    if [ -e "$D/snap$n.txt" ]; then cat "$D/snap$n.txt"; else cat "$D/last"; fi
    if [ -e "$D/failafter$n" ]; then echo "pfctl: DIOCGETSTATES: Bad address" >&2; exit 1; fi ;;
  "-st") printf 'tcp.established     86400s\nudp.multiple           60s\n' ;;
  "-si -v")
    if [ -e "$D/failinfo$n" ]; then echo "pfctl: DIOCGETSTATUS: Permission denied" >&2; exit 1; fi
    if [ -e "$D/info$n" ]; then cat "$D/info$n"; else cat "$D/info"; fi ;;
  "-a * -sr -vv") printf '@0 pass out all flags S/SA keep state (pflow)\n' ;;
  *) echo "pfctl: unexpected arguments: $*" >&2; exit 2 ;;
esac
"""


def info(entries: int) -> str:
    return ("Status: Enabled for 1 days 03:46:40              Debug: err\n\n"
            "Hostid:   0x1a2b3c4d\nChecksum: 0x3bd1e0f5c24a7a54b1e2c0a7f6a4e9d1\n\n"
            "State Table                          Total             Rate\n"
            f"  current entries                 {entries:>10}\n")


def standin(folder: Path, snaps: dict[int, str], last: str, entries: dict[int, int],
            default_entries: int, hang: tuple[int, ...] = (),
            forever: tuple[int, ...] = (), slow: tuple[int, ...] = (),
            failafter: tuple[int, ...] = ()) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for k, text in snaps.items():
        (folder / f"snap{k}.txt").write_text(text)
    for k, count in entries.items():
        (folder / f"info{k}").write_text(info(count))
    for k in hang:
        (folder / f"hang{k}").write_text("")
    for k in forever:
        (folder / f"forever{k}").write_text("")
    for k in slow:
        (folder / f"slow{k}").write_text("")
    for k in failafter:
        (folder / f"failafter{k}").write_text("")
    (folder / "info").write_text(info(default_entries))
    (folder / "last").write_text(last)
    (folder / "n").write_text("0\n")
    path = folder / "pfctl"
    path.write_text(SCRIPT)
    path.chmod(0o755)
    return str(path)


def polls(script: str) -> int:
    text = (Path(script).parent / "n").read_text().strip()
    return int(text or 0)


def alive(pid: int) -> bool:
    """Running (a zombie, killed but not yet reaped by init, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        with contextlib.suppress(OSError):
            return "\nState:\tZ" not in status.read_text()
    return True


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, float]:
    """SIGTERM the daemon; (exit status, its stderr, seconds it took to exit)."""
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err, time.monotonic() - t
