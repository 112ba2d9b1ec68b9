#!/usr/bin/env python3
"""Instructions per request of every command kind, under valgrind --tool=callgrind.

The callgrind part of `scripts/bench_server.py --callgrind` (the same server,
method and counting: random keys created first, a warm-up, counters zeroed,
N requests with redis-benchmark -P 16 -c 50, the dump's totals / N), over a
wider list of cases: each limiter command, CL.THROTTLE, RL.ACQUIRE, RL.ALL,
RL.TAKEALL, a call with BLOCK that never waits, lease and policy commands, and
denials on a hot key. For comparing two builds of the module on one machine:

    python3 scripts/callgrind_commands.py --module target/release/libredis_ratelimit.so \
        --json before.json
    python3 scripts/callgrind_commands.py --compare before.json after.json

Takes a few minutes (about 20 s a case). Python 3 standard library only.
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_server as bs  # noqa: E402

R = "__rand_int__"

# (name, command, keys each random call creates (None: not checked))
CASES = [
    ("INCR", ["INCR", f"incr:{R}"], 1),
    ("RL.TOKENBUCKET", ["RL.TOKENBUCKET", f"tb:{R}", "1000000", "1", "1", "PERIOD", "60"], 1),
    ("RL.GCRA", ["RL.GCRA", f"gcra:{R}", "1000000", "1", "60"], 1),
    ("RL.FIXED", ["RL.FIXED", f"fx:{R}", "1000000", "86400"], 1),
    ("RL.FIXED DAY TZ", ["RL.FIXED", f"fxd:{R}", "1000000", "DAY", "TZ", "Europe/Paris"], 1),
    ("RL.SLIDING", ["RL.SLIDING", f"sl:{R}", "1000000", "60"], 1),
    ("RL.SLIDING BLOCK", ["RL.SLIDING", f"slb:{R}", "1000000", "60", "BLOCK", "1000"], 1),
    ("RL.ACQUIRE", ["RL.ACQUIRE", f"acq:{R}", "10000", "3600"], 1),
    ("RL.TAKE", ["RL.TAKE", f"take:{R}", "bench"], 1),
    ("CL.THROTTLE", ["CL.THROTTLE", f"cl:{R}", "1000000", "1", "60"], 1),
    # Limits of ten minutes: filling 200,000 keys under valgrind can take
    # longer than a minute, and the first keys must still be there after it.
    ("RL.ALL", ["RL.ALL", "LIMIT", f"a:{R}", "TOKENBUCKET", "1000000", "1", "PERIOD", "600",
                "LIMIT", f"b:{R}", "SLIDING", "1000000", "600"], 2),
    ("RL.TAKEALL", ["RL.TAKEALL", "LIMIT", f"ta:{R}", "POLICY", "bench",
                    "LIMIT", f"tb:{R}", "POLICY", "bench"], 2),
    ("RL.RELEASE", ["RL.RELEASE", f"rel:{R}", "1"], 0),
    ("RL.POLICY GET", ["RL.POLICY", "GET", "bench"], None),
    # One key, denied on every call once the warm-up has spent it.
    ("INCR hot", ["INCR", "hot:incr"], None),
    ("RL.TAKE hot", ["RL.TAKE", "hot:take", "hot"], None),
    ("RL.SLIDING hot", ["RL.SLIDING", "hot:sl", "10", "3600"], None),
    ("RL.ALL hot", ["RL.ALL", "LIMIT", "hot:a", "SLIDING", "10", "3600",
                    "LIMIT", "hot:b", "TOKENBUCKET", "1000000", "1", "PERIOD", "60"], None),
]


def run(module, n, only, json_path=None, keep=None, binary="redis-server"):
    workdir = tempfile.mkdtemp(prefix="rl-callgrind-")
    out_base = os.path.join(workdir, "callgrind.out")
    server = bs.Server(module, workdir, name="callgrind", ready_timeout=120, binary=binary,
                       wrapper=["valgrind", "--tool=callgrind",
                                f"--callgrind-out-file={out_base}"])
    results = {}
    if json_path and os.path.exists(json_path):
        with open(json_path) as f:
            results = json.load(f)  # a run with --only adds to an earlier one
    try:
        server.start()
        pid = server.proc.pid
        for name, args, keys in CASES:
            if only and name not in only:
                continue
            random_keys = any(R in a for a in args)
            template = [a.replace(R, "%012d") for a in args]
            fill = b"".join(bs.resp([a % i if "%012d" in a else a for a in template])
                            for i in range(bs.KEYSPACE if random_keys else 100))
            server.cli("FLUSHALL")
            # redis-benchmark counts an error reply as an answer: check one.
            one = [a % 0 if "%012d" in a else a for a in template]
            out = server.cli(*one, raw=False).strip()
            if out.startswith("(error)"):
                raise bs.BenchError(f"{name}: {' '.join(one)} replied {out}")
            server.cli("FLUSHALL")
            bs.pipe_load(server, [fill])
            if random_keys and keys is not None:
                got = int(server.cli("DBSIZE").strip())
                if got != bs.KEYSPACE * keys:
                    # Keys of a minute's limit expire when the fill takes
                    # longer (a loaded machine): those calls create keys.
                    bs.log(f"WARNING: {name}: {got} keys after the fill, not "
                           f"{bs.KEYSPACE * keys}; some calls will create their key")
            bs.benchmark(server, args, max(n // 4, 1000), 16, random_keys)  # warm-up
            subprocess.run(["callgrind_control", "--zero", str(pid)], capture_output=True,
                           timeout=120, check=True)
            before = set(glob.glob(out_base + "*"))
            bs.benchmark(server, args, n, 16, random_keys)
            tag = re.sub(r"[^A-Za-z0-9]", "_", name)
            subprocess.run(["callgrind_control", "--dump=" + tag, str(pid)],
                           capture_output=True, timeout=300, check=True)
            new = sorted(set(glob.glob(out_base + "*")) - before, key=os.path.getmtime)
            if not new:
                raise bs.BenchError("callgrind_control --dump wrote no file")
            found = {}
            with open(new[-1]) as f:
                for line in f:
                    m = re.match(r"^(totals|summary):\s+(\d+)", line)
                    if m:
                        found[m.group(1)] = int(m.group(2))
            # `summary`, as bench_server.py reads it: what callgrind_annotate
            # shows as PROGRAM TOTALS (`totals` adds a few hundred a request).
            total = found.get("summary", found.get("totals"))
            if total is None:
                raise bs.BenchError(f"no totals in {new[-1]}")
            results[name] = total / n
            if keep:
                os.makedirs(keep, exist_ok=True)
                shutil.copy(new[-1], os.path.join(keep, "callgrind." + tag))
            bs.log(f"{name:<18} {results[name]:10,.0f} instructions per request")
            if json_path:
                with open(json_path, "w") as f:
                    json.dump(results, f, indent=1)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def compare(a_path, b_path):
    with open(a_path) as f:
        a = json.load(f)
    with open(b_path) as f:
        b = json.load(f)
    print(f"| case | {os.path.basename(a_path)} | {os.path.basename(b_path)} | change |")
    print("|---|---:|---:|---:|")
    for name, _, _ in CASES:
        if name in a and name in b:
            d = b[name] - a[name]
            print(f"| {name} | {a[name]:,.0f} | {b[name]:,.0f} | {d:+,.0f} ({d / a[name]:+.1%}) |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", default=bs.DEFAULT_MODULE)
    ap.add_argument("--server", default="redis-server",
                    help="the server binary (default: redis-server on PATH)")
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--only", default=None, help="comma-separated case names")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--keep-dumps", default=None, metavar="DIR",
                    help="copy each case's dump to DIR (for callgrind_annotate)")
    opts = ap.parse_args()
    if opts.compare:
        compare(*opts.compare)
        return
    only = {s.strip() for s in opts.only.split(",")} if opts.only else None
    results = run(os.path.abspath(opts.module), opts.requests, only, opts.json,
                  opts.keep_dumps, opts.server)
    for name, _, _ in CASES:
        if name in results:
            print(f"{name:<18} {results[name]:10,.0f}")


if __name__ == "__main__":
    main()
