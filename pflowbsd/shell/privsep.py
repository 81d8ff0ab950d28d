"""Privilege separation (-u USER): a small root helper runs pf's tools, the rest runs as USER.

Strategy.  Started as root, the live daemon opens everything it needs first (sockets,
--record folder, -w file, control socket, pidfile), imports every module it may use
later (preload: a checkout under a home directory USER cannot read still works), then
start() forks the helper and drops to USER (setgroups, setgid, setuid; checked: setuid
back to 0 must fail).  No chroot: syslog(3)'s socket, /etc/protocols (protocol names
pfctl printed) and the interpreter's own lazy imports live outside any folder we could
chroot into, and the unprivileged side runs no command and reads no untrusted path.

The helper does one thing: run the commands it is asked for through
pfctl.run_command (the same timeout, output bound and process-group kill), but only
the fixed ones (ALLOWED: pfctl -ss -vv / -st / -si -v / -a * -sr -vv with the pfctl
program named at start, sysctl -n kern.boottime, ifconfig -a and ifconfig IF), and
hand back the output over a socketpair.  Its protocol, one request at a time:
request b"R" + u32 length + JSON {argv, timeout, limit}; b"X" cancels the request
running (a SIGTERM waiting on the other side: run_command's interrupted()); reply
REPLY (ok, length) + the output (ok) or the failure's reason.  A request b"S" (only
`pfctl -ss -vv`, the one big output) streams: the output goes as it is read, in frames
b"D" + u32 length + bytes, then the same REPLY with nothing (ok) or the reason, so
neither side holds the whole table.  The helper ignores the
daemon's signals and exits when the socket closes (the daemon exited or was killed),
removing the pidfile the unprivileged side may not remove.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import pkgutil
import pwd
import re
import select
import signal
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pflowbsd
from pflowbsd.shell import pfctl
from pflowbsd.shell.pcapout import PcapWriter

if TYPE_CHECKING:
    from pflowbsd.shell.daemon import Daemon

log = logging.getLogger("pflowbsd")
DEFAULT_USER = "_pflowbsd"
REQUEST = struct.Struct("<I")  # after b"R": the JSON's length
REPLY = struct.Struct("<BQ")  # ok (1) or failed (0), then the length of what follows
MAX_REQUEST = 1 << 16
PFCTL_ARGS = {("-ss", "-vv"), ("-st",), ("-si", "-v"), ("-a", "*", "-sr", "-vv")}
IFNAME = re.compile(r"[a-z]+[0-9]+(\.[0-9]+)?")


class PrivsepError(OSError):
    """-u USER that cannot be used (one line)."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int


def user_name(option: str | None) -> str:
    """-u USER, else $PFLOWBSD_USER, else _pflowbsd."""
    return option or os.environ.get("PFLOWBSD_USER") or DEFAULT_USER


def account(name: str) -> Account | None:
    """The account to run as; None: no drop (not root, or -u root).  PrivsepError for a
    user this host does not have."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise PrivsepError(f"-u {name}: no such user (OpenBSD: useradd -s /sbin/nologin "
                           f"-d /var/empty {name}; FreeBSD: pw useradd {name} -d "
                           "/nonexistent -s /usr/sbin/nologin)") from None
    if pw.pw_uid == 0:
        return None
    return Account(name, pw.pw_uid, pw.pw_gid)


def allowed(argv: list[str], pfctl_path: str) -> bool:
    cmd, args = argv[0] if argv else "", tuple(argv[1:])
    if cmd == pfctl_path:
        return args in PFCTL_ARGS
    if cmd == "sysctl":
        return args == ("-n", "kern.boottime")
    if cmd == "ifconfig":
        return args == ("-a",) or (len(args) == 1 and bool(IFNAME.fullmatch(args[0])))
    return False


def preload() -> None:
    """Import every module of the package now, while its files can still be read."""
    for mod in pkgutil.walk_packages(pflowbsd.__path__, "pflowbsd."):
        if mod.name != "pflowbsd.__main__":
            importlib.import_module(mod.name)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, pfctl.MiB))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- the root side -----------------------------------------------------------------

def _cancelled(sock: socket.socket) -> bool:
    """A cancel waiting (or the daemon gone): the run stops."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    peek = sock.recv(1, socket.MSG_PEEK)
    if peek == b"X":
        sock.recv(1)
    return peek in (b"X", b"")


def _reply(sock: socket.socket, ok: bool, data: bytes) -> None:
    sock.sendall(REPLY.pack(int(ok), len(data)) + data)


def serve(sock: socket.socket, pfctl_path: str) -> None:
    """The helper's loop, until the socket closes."""
    while True:
        kind = sock.recv(1)
        if kind == b"X":
            continue  # a cancel that came after its run had ended
        if kind not in (b"R", b"S"):
            return
        (n,) = REQUEST.unpack(_recv_exact(sock, REQUEST.size))
        if n > MAX_REQUEST:
            return
        try:
            req = json.loads(_recv_exact(sock, n))
            argv = [str(a) for a in req["argv"]]
            timeout = min(max(float(req["timeout"]), 0.1), 86400.0)
            limit = min(max(int(req["limit"]), 0), pfctl.MAX_OUTPUT)
        except (ValueError, KeyError, TypeError):
            _reply(sock, False, b"a request the privileged helper does not read")
            continue
        if not allowed(argv, pfctl_path):
            _reply(sock, False, b"not a command the privileged helper runs")
            continue
        try:
            if kind == b"S":
                if argv[1:] != ["-ss", "-vv"]:
                    raise pfctl.PfctlError(argv[0], "only -ss -vv streams")
                for block in pfctl.stream_blocks(argv, timeout, limit, lambda: _cancelled(sock)):
                    sock.sendall(b"D" + REQUEST.pack(len(block)) + block)
                out = ""
            else:
                out = pfctl.run_command(argv, timeout, limit, lambda: _cancelled(sock))
        except pfctl.PfctlError as e:
            _reply(sock, False, e.reason.encode())
            continue
        _reply(sock, True, out.encode())


def _helper(sock: socket.socket, pfctl_path: str, pidfile: str | None, daemon: int) -> None:
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                *(getattr(signal, n) for n in ("SIGINFO",) if hasattr(signal, n))):
        signal.signal(sig, signal.SIG_IGN)  # the daemon's; the helper ends with its socket
    keep = sock.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)
    with contextlib.suppress(OSError, EOFError):
        serve(sock, pfctl_path)
    if pidfile:  # the daemon (USER) cannot remove a pidfile in a root folder
        with contextlib.suppress(OSError):
            if Path(pidfile).read_text().strip() == str(daemon):
                Path(pidfile).unlink()


# --- the unprivileged side -----------------------------------------------------------

def files_of(daemon: Daemon) -> list[int]:
    """What the daemon opened as root and goes on writing as USER: the --record folder
    and the -w file (not stdout)."""
    fds = [daemon.recorder.fd] if daemon.recorder else []
    return fds + [t.stream.fileno() for t in daemon.taps
                  if isinstance(t, PcapWriter) and t.path != "-"]


class Client:
    """pfctl.run_command's stand-in on the unprivileged side: asks the helper."""

    SLACK = 10.0  # seconds past the run's own timeout before the helper counts as hung

    def __init__(self, sock: socket.socket, helper: int) -> None:
        self.sock, self.helper = sock, helper

    def __call__(self, argv: list[str], timeout: float, limit: int,
                 interrupted: pfctl.Interrupted) -> str:
        command = " ".join(argv)
        body = json.dumps({"argv": argv, "timeout": timeout, "limit": limit}).encode()
        try:
            self.sock.sendall(b"R" + REQUEST.pack(len(body)) + body)
            self._wait(command, time.monotonic() + timeout + self.SLACK, False, interrupted)
            ok, n = REPLY.unpack(_recv_exact(self.sock, REPLY.size))
            data = _recv_exact(self.sock, n)
        except (OSError, EOFError):
            raise pfctl.PfctlError(command, "the privileged helper is gone") from None
        if not ok:
            raise pfctl.PfctlError(command, data.decode(errors="replace"))
        return data.decode(errors="replace")

    def _wait(self, command: str, give_up: float, cancelled: bool,
              interrupted: pfctl.Interrupted) -> bool:
        """Until the helper has something to say, sending the cancel once a SIGTERM
        waits; PfctlError past give_up.  Whether the cancel has been sent."""
        while not select.select([self.sock], [], [], 0.2)[0]:
            if not cancelled and interrupted():
                self.sock.sendall(b"X")
                cancelled = True
            if time.monotonic() > give_up:
                raise pfctl.PfctlError(command, "the privileged helper does not answer")
        return cancelled

    def stream(self, argv: list[str], timeout: float, limit: int,
               interrupted: pfctl.Interrupted) -> Iterator[bytes]:
        """pfctl.stream_blocks()'s stand-in: the helper's frames as they come."""
        command = " ".join(argv)
        body = json.dumps({"argv": argv, "timeout": timeout, "limit": limit}).encode()
        replied, cancelled, give_up = False, False, time.monotonic() + timeout + self.SLACK
        try:
            self.sock.sendall(b"S" + REQUEST.pack(len(body)) + body)
            while True:
                cancelled = self._wait(command, give_up, cancelled, interrupted)
                kind = _recv_exact(self.sock, 1)
                if kind != b"D":
                    break
                (n,) = REQUEST.unpack(_recv_exact(self.sock, REQUEST.size))
                block = _recv_exact(self.sock, n)
                paused = time.monotonic()
                yield block
                give_up += time.monotonic() - paused  # our parsing is not the helper's time
                if not cancelled and interrupted():
                    self.sock.sendall(b"X")
                    cancelled = True
            ok, n = REPLY.unpack(kind + _recv_exact(self.sock, REPLY.size - 1))
            data = _recv_exact(self.sock, n)
            replied = True
        except (OSError, EOFError):
            raise pfctl.PfctlError(command, "the privileged helper is gone") from None
        finally:
            if not replied:  # the reader stopped early: the next request must not read
                self._drain(command, give_up)  # this one's frames
        if not ok:
            raise pfctl.PfctlError(command, data.decode(errors="replace"))

    def _drain(self, command: str, give_up: float) -> None:
        """Cancel the streamed run and read its frames up to its reply, so that the
        helper's next reply is the next request's; a helper that does not say more is
        left (the next request says it is gone)."""
        with contextlib.suppress(OSError, EOFError, pfctl.PfctlError):
            self.sock.sendall(b"X")
            while True:
                self._wait(command, give_up, True, lambda: False)
                kind = _recv_exact(self.sock, 1)
                if kind != b"D":
                    _recv_exact(self.sock, REPLY.unpack(kind + _recv_exact(
                        self.sock, REPLY.size - 1))[1])
                    return
                _recv_exact(self.sock, REQUEST.unpack(_recv_exact(self.sock, REQUEST.size))[0])


def start(user: Account | None, name: str, pfctl_path: str, pidfile: str | None,
          chown: list[int]) -> Client | None:
    """Fork the helper and become `user` (None: stay as we are, and say why, once).
    chown: descriptors of files we made as root that USER goes on writing."""
    if user is None:
        if os.geteuid() == 0:
            log.warning("-u %s: running as root, without privilege separation", name)
        else:
            log.info("running as uid %d (not started as root): no privilege separation",
                     os.geteuid())
        return None
    preload()
    mine, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        mine.close()
        try:
            _helper(theirs, pfctl_path, pidfile, os.getppid())
        finally:
            os._exit(0)
    theirs.close()
    for fd in chown:
        with contextlib.suppress(OSError):
            os.fchown(fd, user.uid, user.gid)
    os.setgroups([user.gid])
    os.setgid(user.gid)
    os.setuid(user.uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise PrivsepError(f"-u {name}: root could be regained after setuid")
    client = Client(mine, pid)
    pfctl.RUNNER = client
    pfctl.STREAMER = client.stream
    log.info("running as %s (uid %d); pfctl, sysctl and ifconfig by a root helper (pid %d)",
             name, user.uid, pid)
    return client
