#!/usr/bin/env python3
"""Instructions per request of a reservation (RL.ALL ... ESTIMATE, then RL.SETTLE)
against the same admission with COST and RL.RELEASE, under valgrind --tool=callgrind.

A reservation's pair needs the lease id of its first call in its second, so
redis-benchmark cannot send it: a small RESP client here sends the pairs in
pipelined batches (the admissions of a batch, then their settlements), on
random keys created beforehand. The server, the counting (counters zeroed,
the pairs, the dump's totals / requests) and the yardstick (INCR, sent the
same way) are those of `scripts/callgrind_commands.py`. Each pair is two
requests.

    python3 scripts/callgrind_reserve.py --module target/release/libredis_ratelimit.so

Python 3 standard library only.
"""

import argparse
import glob
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_server as bs  # noqa: E402

KEYS = 2_000
BATCH = 16


def limits(k, cost_word, cost):
    """An AI gateway's call on account k: 10 in flight, 60 requests a
    minute, tokens a minute (bucket) and a day (calendar, New York)."""
    return ["RL.ALL",
            "LIMIT", f"{{a{k}}}:inflight", "CONCURRENCY", "10", "3600",
            "LIMIT", f"{{a{k}}}:rpm", "SLIDING", "1000000000", "60",
            "LIMIT", f"{{a{k}}}:tpm", "TOKENBUCKET", "1000000000", "1000000000",
            "PERIOD", "60", cost_word, str(cost),
            "LIMIT", f"{{a{k}}}:tpd", "FIXED", "1000000000000", "DAY", "TZ",
            "America/New_York", cost_word, str(cost)]


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def send(self, cmds):
        self.s.sendall(b"".join(bs.resp(c) for c in cmds))

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise bs.BenchError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b":":
            return int(rest)
        if t == b"*":
            return [self.reply() for _ in range(int(rest))]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise bs.BenchError(rest.decode())
        if t == b"$":
            n = int(rest)
            while len(self.buf) < n + 2:
                self.buf += self.s.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        raise bs.BenchError(f"unexpected reply {line!r}")

    def batch(self, cmds):
        self.send(cmds)
        return [self.reply() for _ in cmds]


def pairs(c, n, kind, rng):
    """n pairs of `kind`: 'reserve' (RL.ALL ESTIMATE + RL.SETTLE), 'plain'
    (RL.ALL COST + RL.RELEASE), 'incr' (two INCRs)."""
    done = 0
    while done < n:
        ks = [rng.randrange(KEYS) for _ in range(min(BATCH, n - done))]
        if kind == "incr":
            c.batch([["INCR", f"i{k}"] for k in ks])
            c.batch([["INCR", f"i{k}"] for k in ks])
        else:
            word = "ESTIMATE" if kind == "reserve" else "COST"
            firsts = c.batch([limits(k, word, 2000) for k in ks])
            seconds = []
            for k, r in zip(ks, firsts):
                if r[0] != 1:
                    raise bs.BenchError(f"{kind}: denied {r}")
                lid = str(r[-1])
                if kind == "reserve":
                    seconds.append(["RL.SETTLE", f"{{a{k}}}:inflight", f"{{a{k}}}:tpm",
                                    f"{{a{k}}}:tpd", "LEASE", lid, "ACTUAL", "3500"])
                else:
                    seconds.append(["RL.RELEASE", f"{{a{k}}}:inflight", lid])
            for r in c.batch(seconds):
                ok = r[0] == 1 if isinstance(r, list) else r == 1
                if not ok:
                    raise bs.BenchError(f"{kind}: second call answered {r}")
        done += len(ks)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", default=bs.DEFAULT_MODULE)
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--only", default=None, help="one kind: incr, plain or reserve")
    ap.add_argument("--keep-dumps", default=None, metavar="DIR",
                    help="copy each kind's dump to DIR (for callgrind_annotate)")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="rl-callgrind-reserve-")
    out_base = os.path.join(workdir, "callgrind.out")
    server = bs.Server(args.module, workdir, name="callgrind", ready_timeout=120,
                       wrapper=["valgrind", "--tool=callgrind",
                                f"--callgrind-out-file={out_base}"])
    rng = random.Random(25)
    results = {}
    try:
        server.start()
        pid = server.proc.pid
        c = Client(server.port)
        for kind in ("incr", "plain", "reserve"):
            if args.only and kind != args.only:
                continue
            c.batch([["FLUSHALL"]])
            pairs(c, KEYS * 2, kind, rng)  # every key made, and a warm-up
            subprocess.run(["callgrind_control", "--zero", str(pid)], capture_output=True,
                           timeout=120, check=True)
            before = set(glob.glob(out_base + "*"))
            pairs(c, args.pairs, kind, rng)
            subprocess.run(["callgrind_control", "--dump=" + kind, str(pid)],
                           capture_output=True, timeout=300, check=True)
            new = sorted(set(glob.glob(out_base + "*")) - before, key=os.path.getmtime)
            total = None
            with open(new[-1]) as f:
                for line in f:
                    m = re.match(r"^(totals|summary):\s+(\d+)", line)
                    if m:
                        total = int(m.group(2))
            if total is None:
                raise bs.BenchError("no totals in the dump")
            results[kind] = total / args.pairs
            if args.keep_dumps:
                os.makedirs(args.keep_dumps, exist_ok=True)
                shutil.copy(new[-1], os.path.join(args.keep_dumps, "callgrind." + kind))
            bs.log(f"{kind:<8} {results[kind]:10,.0f} instructions per pair")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.only:
        return
    incr = results["incr"]
    print("| pair (two requests) | instructions / pair | vs two INCRs |")
    print("|---|--:|--:|")
    names = {"incr": "INCR + INCR",
             "plain": "RL.ALL (4 limits, COST) + RL.RELEASE",
             "reserve": "RL.ALL (4 limits, ESTIMATE) + RL.SETTLE"}
    for kind in ("incr", "plain", "reserve"):
        print(f"| {names[kind]} | {results[kind]:,.0f} | {results[kind] / incr:.2f}x |")


if __name__ == "__main__":
    main()
