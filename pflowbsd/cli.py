"""pflowbsd - export pf states as NetFlow v5 / IPFIX, the way pflow(4) does.

Usage:
  pflowbsd states [--json] [--pfctl PATH] [-a] [-i IF] [-f FILE] [FILE]
  pflowbsd rules [--json] [--pfctl PATH] [--ifconfig IFCONFIG] [-a] [-i IF] [-f FILE]
                 [FILE]
  pflowbsd dump [-l ADDR:PORT] [--json] [-r PCAP] [-c COUNT]
  pflowbsd demo [--rate N] [--duration SECS] [--proto N] [--port PORT] [--seed N]
                [PARAM ...]
  pflowbsd stats [-i IF] [-f FILE] [--stats-file PATH] [--control PATH] [--json]
  pflowbsd ctl [-i IF] [-f FILE] [--control PATH] COMMAND [ARG]
  pflowbsd [-adnv] [-i IF] [-f FILE] [-t SECS] [-p PIDFILE] [--pfctl PATH] [--ifconfig IFCONFIG]
           [--record DIR | --replay DIR] [-w FILE] [--stats-file PATH] [--state-file PATH]
           [-u USER] [PARAM ...]
  pflowbsd -h | --help | --version

PARAM is ifconfig's own vocabulary, as in hostname.pflowN(5):
  flowsrc ADDR[:PORT]   flowdst ADDR:PORT ([v6]:port too; repeat for more collectors)
  pflowproto 5|10   mtu N   domain N   tmpl-interval SECS   nat on|off
  export pflow|all   select all|label PATTERN|interface IF|rule [ANCHOR] N
  carp carpN (export only while this firewall is its CARP master)
  sync own|all (own: only states this host created)   active-timeout SECS
  sampling N   ipfix-layout openbsd|openbsd-nat|freebsd   max-rate N (datagrams/s)
  stats-file PATH|none (the statistics, default /var/db/pflowbsd/IF.prom if that exists)
  state-file PATH|none (what a restart needs, default /var/db/pflowbsd/IF.state if that
                exists; replay: none)
  pfctl-timeout SECS (kill a longer pfctl run)   record-max SIZE (--record, default 1G)
  control PATH|none (pflowbsd ctl's socket, default /var/run/pflowbsd.IF.sock)
  log-facility daemon|user|local0..local7 (syslog's facility, default daemon)

Daemon options:
  -a             Export every state, not only those pf flags `pflow`.
  -d             Stay in the foreground and log to stderr.
  -n             Check the configuration, list each rule's export decision, then exit.
  -v             Log more (debug).
  -i IF          The pflow instance this process stands for [default: pflow0].
  -f FILE        Configuration file (default /etc/pflowbsd.IF.conf, if it exists).
  -t SECS        Poll interval in seconds (default 10, or `interval` in the file).
  -p PIDFILE     Write the process id to PIDFILE.
  --pfctl PATH   The pfctl program to run (default pfctl, or `pfctl` in the file).
  --ifconfig IFCONFIG  Saved `ifconfig -a` output: the host's interfaces, for antispoof,
                 interface names and `select interface` (default: run ifconfig -a).
  --record DIR   Store every raw snapshot and pf's side files in DIR.
  --replay DIR   Run the pipeline over a recorded DIR as fast as it can, then exit.
  -w FILE        Write every datagram sent, IP and UDP headers included, to a pcap
                 FILE (`-` for stdout, implying -d).
  --stats-file PATH  Write the statistics there after each poll (PARAM stats-file).
  --state-file PATH  Keep the tracked states, sequences and held records there, so a
                 restart loses and repeats nothing (PARAM state-file).
  -u USER        Started as root: run as USER (default _pflowbsd, or $PFLOWBSD_USER),
                 but for a helper that stays root to run pfctl, sysctl and ifconfig.
  --control PATH  The control socket (PARAM control; default /var/run/pflowbsd.IF.sock).

Commands:
  states         Parse `pfctl -ss -v[v]` (FILE, `-` for stdin, or run pfctl -ss -vv),
                 with whether each state is exported under -i/-f/-a, and why not.
  rules          List pf rules (FILE: a pf.conf or a saved `pfctl -sr -vv`; or run
                 pfctl) and whether their states are exported under the configuration
                 -i/-f/-a give, and why.
  dump           A small collector: print each v5/IPFIX flow received or in PCAP.
  stats          Print the statistics file of instance IF as `netstat -s -p pflow`
                 prints pflow's, or as JSON with --json.
  ctl            Ask the running daemon of -i IF (its control socket): statistics,
                 config, states, expire-all, send-template, debug on|off, reload,
                 shutdown.
  demo           Run the whole pipeline on a simulated pf, exporting to a collector
                 it starts on 127.0.0.1, and show the flows as they arrive; or, given
                 flowdst ADDR:PORT (and flowsrc, pflowproto, mtu, domain, tmpl-interval,
                 nat), export to that collector instead.

Dump options:
  -l ADDR:PORT   Listen here [default: 127.0.0.1:9995].
  --json         One JSON object per line (states, rules, dump).
  -r PCAP        Read a capture file instead of listening.
  -c COUNT       Stop after COUNT flows.

Demo options:
  --rate N          New states per second [default: 20].
  --duration SECS   How long to run [default: 20].
  --proto N         pflowproto, 5 or 10 [default: 5].
  --port PORT       The collector's UDP port, 0 for any free one [default: 0].
  --seed N          Seed of the simulation [default: 1].
"""

# Over 400 lines: the usage text above (docopt's single source, ~80 lines) and one short
# function per command; help and usage errors are read from it by pflowbsd/usage.py.
from __future__ import annotations

import gzip
import os
import re
import sys
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

from docopt import DocoptExit, docopt

from pflowbsd import __version__, usage
from pflowbsd.config import Config, ConfigError, apply_file, apply_words, check, endpoint_text

Args = dict[str, Any]  # docopt's answer: option or argument -> its value


class UsageError(ConfigError):
    """A bad option, word or value on the command line: exit 2, with the usage line."""
N = TypeVar("N", int, float)


def _input(arg: str | None, pfctl: str, *pfctl_args: str) -> str:
    """FILE, `-` for stdin, or what pfctl prints."""
    if arg:
        if arg == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(arg, "rb") as f:
                data = f.read()
        if data[:2] == b"\x1f\x8b":  # a saved table, gzipped
            try:
                data = gzip.decompress(data)
            except (EOFError, OSError, zlib.error):
                raise ConfigError(f"{arg}: a cut or corrupt gzip file") from None
        return data.decode(errors="replace")
    from pflowbsd.shell.pfctl import Pfctl

    return Pfctl(pfctl).run(*pfctl_args)


def load_config(args: Args) -> Config:
    """Defaults, then the file, then the command line: the last word wins."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,14}", args["-i"]):
        raise UsageError(f"-i {args['-i']!r}: want an interface name such as pflow0")
    cfg = Config(instance=args["-i"])
    path = args["-f"] or f"/etc/pflowbsd.{cfg.instance}.conf"
    if args["-f"] or os.path.exists(path):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:  # a Latin-1 comment
                apply_file(cfg, f.read(), path)
        except OSError as e:
            raise ConfigError(f"-f {path}: {(e.strerror or 'cannot read').lower()}: give the "
                              "configuration file's path") from None
    try:  # the command line's words: a mistake there is a usage error
        apply_words(cfg, args["PARAM"])
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if args["-t"]:
        try:
            apply_words(Config(), ["interval", args["-t"]])
        except ConfigError:
            raise UsageError(f"-t {args['-t']!r}: want seconds, from 0.1 to 86400") from None
        apply_words(cfg, ["interval", args["-t"]])
    if args["-a"]:
        cfg.export_all = True
    if args["--pfctl"]:
        cfg.pfctl = args["--pfctl"]
    if args["--stats-file"]:
        cfg.stats_file = args["--stats-file"]
    if args.get("--state-file"):
        cfg.state_file = args["--state-file"]
    if args.get("--control"):
        cfg.control = args["--control"]
    return cfg


def cmd_states(args: Args) -> int:
    from pflowbsd.rules.model import RuleSyntaxError, parse_listing
    from pflowbsd.rules.select import Selector
    from pflowbsd.rules.show import cmd_states as body

    cfg = load_config(args)
    pfctl = args["--pfctl"] or cfg.pfctl
    text = _input(args["FILE"], pfctl, "-ss", "-vv")
    rs = None
    if not args["FILE"]:  # the running rules; a saved FILE has none
        from pflowbsd.shell.pfctl import PfctlError

        try:
            rs = parse_listing(_input(None, pfctl, "-a", "*", "-sr", "-vv"))
        except (RuleSyntaxError, PfctlError) as e:
            print(f"pflowbsd: rules: {e}; deciding by the pflow flag only", file=sys.stderr)
    selector = Selector.from_config(cfg.select, cfg.export_all)
    return body(text, rs, selector, args["--json"], sys.stdout, sys.stderr)


def _interfaces(args: Args) -> Any:
    """--ifconfig FILE, or `ifconfig -a` run here; None (and why, on stderr) if neither."""
    from pflowbsd.pf.ifaces import IfconfigError, parse_ifconfig
    from pflowbsd.rules.ifa import IfTable
    from pflowbsd.shell.pfctl import PfctlError, ifconfig_all

    try:
        text = _input(args["--ifconfig"], "") if args["--ifconfig"] else ifconfig_all()
        return IfTable(parse_ifconfig(text, args["--ifconfig"] or "ifconfig -a"))
    except (PfctlError, IfconfigError) as e:
        print(f"pflowbsd: no interface table ({e}): antispoof and interface names "
              "are not expanded", file=sys.stderr)
        return None


def cmd_rules(args: Args) -> int:
    from pflowbsd.rules.show import cmd_rules as body

    name = args["FILE"] or "pfctl -sr"
    text = _input(args["FILE"], args["--pfctl"] or "pfctl", "-a", "*", "-sr", "-vv")
    base = os.path.dirname(os.path.abspath(args["FILE"])) if args["FILE"] not in (None, "-") else "."

    def read_file(path: str) -> str:
        with open(os.path.join(base, path)) as f:
            return f.read()

    from pflowbsd.rules.load import LISTING_MARK
    from pflowbsd.rules.select import Selector

    cfg = load_config(args)
    interfaces = None if LISTING_MARK.search(text) else _interfaces(args)
    return body(text, name, args["--json"], sys.stdout, sys.stderr, read_file=read_file,
                selector=Selector.from_config(cfg.select, cfg.export_all),
                interfaces=interfaces)


def cmd_dump(args: Args) -> int:
    from pflowbsd.collector.dump import cmd_dump as body
    from pflowbsd.collector.dump import listen_endpoint

    count = _number(args, "-c", int) if args["-c"] else None
    if not args["-r"]:
        try:
            listen_endpoint(args["-l"])
        except ValueError:
            raise UsageError(f"-l {args['-l']}: want a numeric ADDR:PORT to listen on, "
                             "such as 127.0.0.1:9995 or [::1]:9995") from None
    return body(args["-l"], args["--json"], args["-r"], count, sys.stdout, sys.stderr)


def cmd_demo(args: Args) -> int:
    from pflowbsd.sim.demo import cmd_demo as body

    rate, duration = _number(args, "--rate", float), _number(args, "--duration", float)
    proto, port = _number(args, "--proto", int), _number(args, "--port", int)
    for bad, why in ((proto not in (5, 10), "--proto {}: want 5 or 10"),
                     (not 0 <= rate < float("inf"), "--rate {}: want 0 or more"),
                     (not 0 < duration < float("inf"), "--duration {}: want more than 0"),
                     (not 0 <= port < 65536, "--port {}: want 0 to 65535")):
        if bad:
            opt = why.split()[0]
            raise UsageError(why.format(args[opt]))
    return body(rate=rate, duration=duration, proto=proto, port=port,
                seed=_number(args, "--seed", int), out=sys.stdout, params=args["PARAM"])


def _number(args: Args, opt: str, kind: Callable[[str], N]) -> N:
    try:
        return kind(args[opt])
    except ValueError:
        raise UsageError(f"{opt} {args[opt]!r}: not a number") from None


def cmd_check(cfg: Config, args: Args) -> int:
    """-n: the configuration, and the rules the selection will use."""
    from pathlib import Path

    from pflowbsd.pipeline import PfSide
    from pflowbsd.shell.pfctl import pfctl_for
    from pflowbsd.shell.record import read_optional
    from pflowbsd.shell.sender import Sender

    Sender(cfg.flowdst, cfg.flowsrc).close()  # flowsrc can be bound, flowdst reached
    side = PfSide(cfg)
    replay = args["--replay"]
    rules = read_optional(Path(replay) / "rules") if replay else pfctl_for(cfg).rules()
    side.load(None, rules, None)
    listed = side.ruleset.rules if side.ruleset else []
    n = len(listed)
    chosen = [r for r in listed if side.selector.decide_rule(r)[0]]
    dsts = ", ".join(endpoint_text(a, p) for a, p in cfg.flowdst)
    print(f"pflowbsd: configuration OK: {cfg.instance} flowdst {dsts} pflowproto "
          f"{cfg.pflowproto}; {n} rules, {len(chosen)} select their states for export")
    _check_interfaces(cfg, args)
    if side.ruleset:
        from pflowbsd.rules.show import list_rules

        list_rules(side.ruleset, side.selector, False, sys.stdout)
    return 0


def _check_interfaces(cfg: Config, args: Args) -> None:
    """-n: a `select interface IF` naming no interface of the host is reported."""
    names = [t.arg for t in cfg.select if t.kind == "interface"]
    table = _interfaces(args) if names or args["--ifconfig"] else None
    for name in names:
        if table is not None and isinstance(name, str) and not table.exists(name):
            print(f"pflowbsd: warning: select interface {name}: no such interface "
                  "or group on this host", file=sys.stderr)


def cmd_daemon(args: Args) -> int:
    from pflowbsd.shell import process
    from pflowbsd.shell.daemon import Daemon
    from pflowbsd.shell.record import replay

    cfg = load_config(args)
    check(cfg)
    if args["-n"]:
        return cmd_check(cfg, args)
    foreground = args["-d"] or bool(args["--replay"]) or args["-w"] == "-"
    capture = args["-w"] if args["-w"] in (None, "-") else os.path.abspath(args["-w"])
    process.setup_logging(foreground, args["-v"], cfg.instance, cfg.log_facility)
    if args["--replay"]:
        return replay(cfg, args["--replay"], capture)
    reload = lambda: _checked(load_config(args))
    from pflowbsd.shell import privsep
    from pflowbsd.shell.record import Recorder

    try:  # everything that can fail, before detaching: one line, terminal and syslog
        user = privsep.account(privsep.user_name(args["-u"]))
        Recorder.writer = user.uid if user else None
        daemon = Daemon(cfg, record=args["--record"], reload=reload, capture=capture,
                        control_group=user.gid if user else None)  # ctl: USER's group
        if args["-p"]:
            process.lock_pidfile(args["-p"])
    except OSError as e:
        process.startup_error(_oneline(e), cfg.instance, cfg.log_facility)
        return 1
    if not foreground:
        process.daemonize()
    if args["-p"]:
        process.write_pidfile(args["-p"])
    privsep.start(user, privsep.user_name(args["-u"]), cfg.pfctl, args["-p"],
                  privsep.files_of(daemon))  # -u: from here on as USER
    try:
        return daemon.run()
    finally:
        if args["-p"]:
            process.remove_pidfile(args["-p"])


def _oneline(e: BaseException) -> str:
    """An error as one line, without Python's `[Errno N]`."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _checked(cfg: Config) -> Config:
    check(cfg)
    return cfg


def cmd_stats(args: Args) -> int:
    """The statistics file the daemon of -i IF writes, as netstat prints pflow's."""
    from pflowbsd import stats
    from pflowbsd.shell import statsfile

    cfg = load_config(args)
    from pflowbsd.control import socket_path
    from pflowbsd.shell import control

    sock = socket_path(cfg, control.run_dir())
    if not args["--json"] and control.running(sock):  # the daemon's own counters, now
        return _ctl(sock or "", "statistics", None)
    path = statsfile.stats_path(cfg)
    if path is None:
        raise ConfigError(f"{cfg.instance}: no statistics file (stats-file none, or no "
                          f"{statsfile.STATE_DIR}): give --stats-file PATH")
    try:
        st = statsfile.read(path)
    except stats.StatsError as e:
        raise ConfigError(f"{path}: {e}") from None
    sys.stdout.write(stats.to_json(st) + "\n" if args["--json"] else stats.netstat(st))
    return 0


def cmd_ctl(args: Args) -> int:
    """One request to the running daemon of -i IF, its reply printed."""
    from pflowbsd.control import ControlError, parse_request, socket_path
    from pflowbsd.shell import control

    cfg = load_config(args)
    words = [args["COMMAND"]] + ([args["ARG"]] if args["ARG"] else [])
    try:
        req = parse_request(" ".join(words).encode("ascii", "replace"))
    except ControlError as e:
        raise UsageError(f"ctl: {e}") from None
    sock = socket_path(cfg, control.run_dir())
    if sock is None:
        raise ConfigError(f"{cfg.instance}: control none: its daemon has no control socket")
    return _ctl(sock, req.command, req.arg)


def _ctl(path: str, command: str, arg: str | None) -> int:
    from pflowbsd.shell import control

    ok, text = control.ask(path, command, arg)
    if not ok:
        print(f"pflowbsd: ctl {command}: {text}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


COMMANDS = {"states": cmd_states, "rules": cmd_rules, "dump": cmd_dump, "demo": cmd_demo,
            "stats": cmd_stats, "ctl": cmd_ctl}


def _parse(argv: list[str] | None) -> Args:
    """docopt's answer; UsageError (not docopt's words) on a command line it refuses."""
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else None
    if command and ("-h" in argv or "--help" in argv):
        sys.stdout.write(usage.command_help(__doc__ or "", command))
        raise SystemExit(0)
    try:
        return dict(docopt(__doc__, argv, version=f"pflowbsd {__version__}"))
    except DocoptExit:  # its message is its own ("found unmatched ... Option(...)")
        raise UsageError(usage.refused(__doc__ or "", argv, command), command) from None


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(argv)
    except UsageError as e:
        return _say_usage(e)
    except SystemExit as e:  # -h, --version: docopt printed it
        return 0 if e.code is None else int(e.code) if isinstance(e.code, int) else 0
    except BrokenPipeError:  # `pflowbsd -h | head`
        return _broken_pipe()
    from pflowbsd.pf import netdb
    from pflowbsd.shell.pfctl import host_protocol

    netdb.set_resolver(host_protocol)  # a protocol name pfctl printed, not in netdb
    command = next((f for name, f in COMMANDS.items() if args[name]), cmd_daemon)
    try:
        return command(args)
    except UsageError as e:
        return _say_usage(e, next((n for n in COMMANDS if args[n]), None))
    except ConfigError as e:
        print(f"pflowbsd: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _broken_pipe()
    except Exception as e:  # a pfctl that fails, an unreadable FILE: one line, not a trace
        from pflowbsd.shell.pfctl import PfctlError

        if isinstance(e, (PfctlError, OSError)):
            print(f"pflowbsd: {_oneline(e)}", file=sys.stderr)
            return 1
        raise


def _say_usage(e: UsageError, command: str | None = None) -> int:
    """A command-line mistake: what was wrong, the command's usage, and exit 2."""
    command = command or (e.args[1] if len(e.args) > 1 else None)
    print(f"pflowbsd: {e.args[0]}", file=sys.stderr)
    print("usage:" + "\n      ".join(" " + u.strip() for u in usage.lines(__doc__ or "", command)),
          file=sys.stderr)
    print(f"       (pflowbsd {command + ' ' if command else ''}-h for more)", file=sys.stderr)
    return 2


def _broken_pipe() -> int:
    """The reader went away: nothing more to say, and nothing at exit either."""
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), sys.stdout.fileno())
    return 0
