"""pflowbsd - export pf states as NetFlow v5 / IPFIX, the way pflow(4) does.

Usage:
  pflowbsd [-adnv] [-i IF] [-f FILE] [-t SECS] [-p PIDFILE] [--pfctl PATH]
           [--record DIR | --replay DIR] [PARAM ...]
  pflowbsd states [--json] [--pfctl PATH] [FILE]
  pflowbsd rules [--json] [--pfctl PATH] [FILE]
  pflowbsd dump [-l ADDR:PORT] [--json] [-r PCAP] [-c COUNT]
  pflowbsd demo [--rate N] [--duration SECS] [--proto 5|10] [--port PORT] [--seed N]
  pflowbsd -h | --help | --version

Daemon options:
  -a             Export every state, not only those pf flags `pflow`.
  -d             Stay in the foreground and log to stderr.
  -n             Check the configuration and the rules, then exit.
  -v             Log more (debug).
  -i IF          The pflow instance this process stands for [default: pflow0].
  -f FILE        Configuration file [default: /etc/pflowbsd.IF.conf].
  -t SECS        Poll interval in seconds [default: 10].
  -p PIDFILE     Write the process id to PIDFILE.
  --pfctl PATH   The pfctl program to run [default: pfctl].
  --record DIR   Store every raw snapshot and pf's side files in DIR.
  --replay DIR   Run the pipeline over a recorded DIR as fast as it can, then exit.

PARAM is ifconfig's own vocabulary, as in hostname.pflowN(5):
  flowsrc ADDR  flowdst ADDR:PORT ([v6]:port too; may be repeated)  pflowproto 5|10
  mtu N  domain N  tmpl-interval SECS  nat on|off  export pflow|all

Other commands:
  states         Parse `pfctl -ss -v[v]` (FILE, `-` for stdin, or run pfctl).
  rules          List pf rules and whether their states are exported.
  dump           A small collector: print each v5/IPFIX flow received or in PCAP.
    -l ADDR:PORT   Listen here [default: 127.0.0.1:9995].
    -r PCAP        Read a capture file instead of listening.
    -c COUNT       Stop after COUNT flows.
  demo           Run the whole pipeline on a simulated pf, exporting to a collector
                 it starts on 127.0.0.1, and show the flows as they arrive.
    --rate N       New states per second [default: 20].
    --duration SECS  How long to run [default: 20].
    --proto 5|10   pflowproto [default: 5].
    --port PORT    The collector's UDP port [default: 0] (0: any free port).
    --seed N       Seed of the simulation [default: 1].
"""
