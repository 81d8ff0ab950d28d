"""The control socket: a UNIX stream socket the daemon serves from its selector loop,
and the client side of `pflowbsd ctl` and `pflowbsd stats`.

Strategy.  The socket is made before anything else can fail late (and before any
privilege drop): a socket file that answers belongs to a running instance, and start
refuses; one that does not answer was left by a killed daemon and is replaced.  It is
mode 0660, owned by root (when we are root) and the group given (the daemon's).  The
listening socket and every accepted connection are non-blocking and registered in the
daemon's selector, so a slow client holds nothing up: a connection's bytes gather until
a newline or MAX_REQUEST, then pflowbsd.control.dispatch() answers, and the reply is
written under a short timeout and the connection closed.  At most MAX_CLIENTS wait at
once (the oldest goes), and one waiting longer than CLIENT_TIMEOUT is closed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import stat
import time
from collections.abc import Mapping

from pflowbsd import control
from pflowbsd.control import Handler, Request

log = logging.getLogger("pflowbsd")
MAX_CLIENTS = 8
CLIENT_TIMEOUT = 5.0  # seconds a client has to send its line, and to read the reply
ASK_TIMEOUT = 30.0  # seconds the client waits for a reply (states of a big table)


def run_dir() -> str:
    return os.environ.get(control.RUN_DIR_ENV) or control.RUN_DIR


class ControlError(OSError):
    """The control socket cannot be made or reached: one line, what to do included."""


def _answers(path: str) -> bool:
    """Whether a process accepts connections on the socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


class ControlServer:
    def __init__(self, path: str, group: int | None = None) -> None:
        self.path = path
        self.clients: dict[socket.socket, tuple[float, bytearray]] = {}
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as e:
            raise ControlError(f"control socket {path}: {e.strerror}") from None
        if mode is not None:
            if not stat.S_ISSOCK(mode):
                raise ControlError(f"control socket {path}: a file that is not a socket is "
                                   "there: remove it, or give another control PATH")
            if _answers(path):
                raise ControlError(f"control socket {path}: another pflowbsd answers there: "
                                   "stop it, or give this one another -i or control PATH")
            os.unlink(path)  # left by a daemon that was killed
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o117)  # 0660 from the start: no moment open to others
            try:
                s.bind(path)
            finally:
                os.umask(old)
            os.chmod(path, 0o660)
            if group is not None or os.geteuid() == 0:
                os.chown(path, 0 if os.geteuid() == 0 else -1, -1 if group is None else group)
            s.listen(MAX_CLIENTS)
        except OSError as e:
            s.close()
            raise ControlError(f"control socket {path}: {e.strerror or e}: give another "
                               "control PATH, or control none") from None
        s.setblocking(False)
        self.sock = s

    def register(self, sel: selectors.BaseSelector) -> None:
        sel.register(self.sock, selectors.EVENT_READ, self)

    def ready(self, sel: selectors.BaseSelector, fileobj: object,
              handlers: Mapping[str, Handler]) -> Request | None:
        """A connection to accept, or a client's bytes: the request answered, if one was."""
        self._expire(sel)
        if fileobj is self.sock:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                conn, _ = self.sock.accept()
                conn.setblocking(False)
                if len(self.clients) >= MAX_CLIENTS:
                    self._close(sel, next(iter(self.clients)))
                self.clients[conn] = (time.monotonic(), bytearray())
                sel.register(conn, selectors.EVENT_READ, self)
            return None
        assert isinstance(fileobj, socket.socket)
        conn = fileobj
        _, buf = self.clients[conn]
        try:
            chunk = conn.recv(control.MAX_REQUEST + 1 - len(buf))
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            chunk = b""
            buf.clear()
        buf += chunk
        if chunk and b"\n" not in buf and len(buf) <= control.MAX_REQUEST:
            return None  # more to come
        line = bytes(buf).split(b"\n", 1)[0] if b"\n" in buf else bytes(buf)
        if not buf:
            self._close(sel, conn)
            return None
        req, answer = control.dispatch(line, handlers)
        log.debug("control: %r: %s", line[:80].decode(errors="replace"),
                  answer.split(b"\n", 1)[0].decode(errors="replace"))
        try:
            conn.setblocking(True)
            conn.settimeout(CLIENT_TIMEOUT)
            conn.sendall(answer)
        except OSError as e:
            log.debug("control: reply not sent: %s", e.strerror or e)
        self._close(sel, conn)
        return req

    def _expire(self, sel: selectors.BaseSelector) -> None:
        now = time.monotonic()
        for conn, (since, _) in list(self.clients.items()):
            if now - since > CLIENT_TIMEOUT:
                self._close(sel, conn)

    def _close(self, sel: selectors.BaseSelector, conn: socket.socket) -> None:
        self.clients.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(conn)
        conn.close()

    def close(self) -> None:
        for conn in list(self.clients):
            conn.close()
        self.clients.clear()
        self.sock.close()
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)


def ask(path: str, command: str, arg: str | None = None,
        timeout: float = ASK_TIMEOUT) -> tuple[bool, str]:
    """One request to the daemon at `path`: (True, its text) or (False, its why).
    ControlError, in words, when no daemon can be asked there."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(control.request_line(command, arg))
        s.shutdown(socket.SHUT_WR)
        data = bytearray()
        while chunk := s.recv(1 << 16):
            data += chunk
    except OSError as e:
        raise ControlError(_why(path, e)) from None
    finally:
        s.close()
    return control.parse_reply(bytes(data))


def _why(path: str, e: OSError) -> str:
    if e.errno in (errno.ENOENT, errno.ECONNREFUSED):
        return (f"control socket {path}: no pflowbsd answers there: is the daemon of "
                "that instance running (not with control none)?")
    if e.errno in (errno.EACCES, errno.EPERM):
        return (f"control socket {path}: permission denied: run as root or as a member "
                "of the daemon's group")
    if isinstance(e, TimeoutError):
        return f"control socket {path}: no reply in time: the daemon may be busy polling"
    return f"control socket {path}: {e.strerror or e}"


def running(path: str | None) -> bool:
    """Whether a daemon answers at `path` (pflowbsd stats: ask it, or read the file)."""
    return bool(path) and os.path.exists(path or "") and _answers(path or "")
