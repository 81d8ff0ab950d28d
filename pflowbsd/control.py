"""The control protocol of `pflowbsd ctl`: a request line in, an action and a reply out.

Strategy.  One request per connection: the client writes one line, `COMMAND [ARG]\\n`,
at most MAX_REQUEST bytes, and reads until the daemon closes.  The reply's first line
is `ok` or `error: WHY`; what follows is the command's text, as it is to be printed.
COMMANDS is the single table of the commands, their arguments and their one-line help
(the usage text, the man page test and the parser all read it).  parse_request()
checks a line against it; dispatch() runs the handler the daemon gave for the command
and wraps its text, or its ControlError, into the reply.  Nothing here opens a socket
or reads a clock: the shell (pflowbsd/shell/control.py) moves the bytes, and the
daemon's handlers do what a command asks.  states_text() renders the tracker's table.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from typing import NamedTuple

from pflowbsd.config import Config, endpoint_text
from pflowbsd.flows import flow_pair
from pflowbsd.pf import netdb
from pflowbsd.tracker import EXPORTED, KEY, Tracker

MAX_REQUEST = 256  # bytes of one request line, newline included
RUN_DIR = "/var/run"
RUN_DIR_ENV = "PFLOWBSD_RUN_DIR"  # another folder for the default socket (tests, jails)


class Command(NamedTuple):
    args: tuple[str, ...]  # the words its one argument may be; () takes none
    help: str


COMMANDS: dict[str, Command] = {
    "statistics": Command((), "the counters, as netstat -s -p pflow prints pflow's"),
    "config": Command((), "the running configuration, in the configuration file's words"),
    "states": Command((), "every tracked state, and what was exported of it"),
    "expire-all": Command((), "export every tracked state now, and send the records at once"),
    "send-template": Command((), "send the IPFIX templates now"),
    "debug": Command(("on", "off"), "log at debug level, or no more"),
    "reload": Command((), "re-read the configuration, timeouts and rules (as SIGHUP)"),
    "shutdown": Command((), "flush and exit (as SIGTERM)"),
}


class ControlError(ValueError):
    """A request that is not one, or a command that could not be done: the reply's why."""


class Request(NamedTuple):
    command: str
    arg: str | None = None


Handler = Callable[[Request], str]


def socket_path(cfg: Config, run_dir: str = RUN_DIR) -> str | None:
    """`control PATH`; by default RUN_DIR/pflowbsd.IF.sock; `control none`: None."""
    if cfg.control == "none":
        return None
    return cfg.control or os.path.join(run_dir, f"pflowbsd.{cfg.instance}.sock")


def parse_request(data: bytes) -> Request:
    """One request line (its newline optional) into a Request; ControlError if not one."""
    if len(data) > MAX_REQUEST:
        raise ControlError(f"request over {MAX_REQUEST} bytes")
    try:
        words = data.decode("ascii").split()
    except UnicodeDecodeError:
        raise ControlError("request not ASCII text") from None
    if not words:
        raise ControlError("empty request: want one of " + ", ".join(COMMANDS))
    name, *rest = words
    command = COMMANDS.get(name)
    if command is None:
        raise ControlError(f"unknown command {name[:40]!r}: want one of " + ", ".join(COMMANDS))
    if command.args:
        if len(rest) != 1 or rest[0] not in command.args:
            raise ControlError(f"{name}: want {name} {'|'.join(command.args)}")
        return Request(name, rest[0])
    if rest:
        raise ControlError(f"{name} takes no argument")
    return Request(name)


def request_line(command: str, arg: str | None = None) -> bytes:
    return (command + (f" {arg}" if arg else "") + "\n").encode("ascii")


def reply(text: str, error: str | None = None) -> bytes:
    if error is not None:
        return f"error: {' '.join(error.split())}\n".encode()
    return ("ok\n" + text).encode()


def parse_reply(data: bytes) -> tuple[bool, str]:
    """(True, text) or (False, why); a reply that is neither is the daemon's fault."""
    head, _, body = data.decode(errors="replace").partition("\n")
    if head == "ok":
        return True, body
    if head.startswith("error: "):
        return False, head[len("error: "):]
    return False, f"not a pflowbsd control reply: {head[:60]!r}"


def dispatch(data: bytes, handlers: Mapping[str, Handler]) -> tuple[Request | None, bytes]:
    """The request in `data`, and the reply: the handler's text, or why not."""
    try:
        req = parse_request(data)
    except ControlError as e:
        return None, reply("", str(e))
    try:
        return req, reply(handlers[req.command](req))
    except ControlError as e:
        return req, reply("", str(e))


def _address(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def states_text(tracker: Tracker) -> str:
    """One line a tracked state: the flow pflow would export (its initiator's side),
    both directions' packets and bytes, and what was exported of it so far."""
    lines, ignored = [], 0
    for tail, entry in tracker.entries.items():
        if entry is None:
            ignored += 1
            continue
        f1, f2 = flow_pair(entry)
        proto = netdb.proto_name(f1.proto)
        done = tracker.exported.get(tail[-KEY:])
        if done is None:
            exported = "exported: nothing yet"
        else:
            _first, p0, p1, b0, b1 = EXPORTED.unpack(done)
            exported = f"exported: {p0}:{p1} pkts, {b0}:{b1} bytes"
        lines.append(f"{proto} {endpoint_text(_address(f1.src), f1.src_port)} -> "
                     f"{endpoint_text(_address(f1.dst), f1.dst_port)} "
                     f"{f1.packets}:{f2.packets} pkts, {f1.octets}:{f2.octets} bytes, "
                     f"{exported}")
    lines.append(f"{len(lines)} state(s) selected for export, {ignored} tracked and not selected")
    return "\n".join(lines) + "\n"
