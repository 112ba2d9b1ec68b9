"""Round trips per decision on the test cluster, counted by the servers.

Standard library only (the GLIDE tests import it too, from an interpreter
without redis-py). Every request a node receives for a decision shows in
its INFO: `cmdstat_<command>` counts the calls it ran and the calls it
rejected (a `MOVED` or `ASK` redirection, also counted in `INFO
errorstats`), and `cmdstat_command|getkeys` the `COMMAND GETKEYS` a client
asked first. Round trips per decision = all of those, summed over the
nodes, divided by the decisions made. One client at a time measures (the
test files run one after another), so the counts are its own.

`report` prints one `round-trips: ...` line per command, which
scripts/test_clients.py gathers into the table `make test-clients` ends
with.
"""

import os
import re
import socket

NODES = [u.rsplit(":", 1) for u in os.environ["RL_CLUSTER_NODES"].split(",")]
NODES = [(h.removeprefix("redis://"), int(p)) for h, p in NODES]


def _info(host, port, section):
    """`INFO section` over a fresh RESP2 connection (a bulk string)."""
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$%d\r\n%s\r\n" % (len(section), section.encode()))
        f = s.makefile("rb")
        head = f.readline()
        if not head.startswith(b"$"):
            raise RuntimeError(f"INFO {section} on {host}:{port}: {head!r}")
        return f.read(int(head[1:]) + 2)[:-2].decode()


def _field(info, line_prefix, field):
    m = re.search(rf"^{re.escape(line_prefix)}:(.*)$", info, re.M | re.I)
    if not m:
        return 0
    f = re.search(rf"(?:^|,){field}=(\d+)", m.group(1))
    return int(f.group(1)) if f else 0


def counts(command):
    """What the nodes saw of `command` (e.g. "RL.ALL"), summed. (INFO
    writes a module's command as registered: cmdstat_RL.ALL.)"""
    out = dict(calls=0, rejected=0, getkeys=0, moved=0, ask=0)
    name = command.lower()
    for host, port in NODES:
        stats = _info(host, port, "commandstats")
        errors = _info(host, port, "errorstats")
        out["calls"] += _field(stats, f"cmdstat_{name}", "calls")
        out["rejected"] += _field(stats, f"cmdstat_{name}", "rejected_calls")
        out["getkeys"] += _field(stats, "cmdstat_command|getkeys", "calls")
        out["moved"] += _field(errors, "errorstat_MOVED", "count")
        out["ask"] += _field(errors, "errorstat_ASK", "count")
    return out


def report(client, command, decisions, before, after, how="", expect=1):
    """Prints the line the table is made of (`expect`: the round trips the
    test expects, 1 but for a way the doc advises against); returns round
    trips per decision."""
    d = {k: after[k] - before[k] for k in after}
    requests = d["calls"] + d["rejected"] + d["getkeys"]
    per = requests / decisions
    print(f"round-trips: client={client!r} command={command} decisions={decisions} "
          f"requests={requests} moved={d['moved']} ask={d['ask']} getkeys={d['getkeys']} "
          f"per_decision={per:.2f} expect={expect} how={how!r}", flush=True)
    if d["calls"] != decisions:
        raise AssertionError(f"{client} {command}: {d['calls']} calls ran for {decisions} decisions")
    return per
