"""Waiting in line (BLOCK): the server benchmark of issue 12.

Run by scripts/bench_server.py (`make bench-server`, or `--only-blocking`
for this part alone); Python 3 standard library only. The caller starts
the server with SERVER_ARGS (AOF on, without fsync, and room for the
clients) pinned to one core, and calls `run`; `section` renders the result
for docs/BENCHMARKS.md.

One server, one run, in turn:

  * idle: the server's CPU with no client at all;
  * none, paced: RL.SLIDING calls that are all allowed at once (no one
    waits), about as many a second as the waiting cases admit, one at a
    time on a few connections: the server CPU per call;
  * none, saturated: the same command from redis-benchmark (-c 50) as fast
    as the server answers (a floor: the event loop batches work);
  * waiting, small and large: W clients on K keys (W/K per key), every key
    limited to one admission per span (`RL.SLIDING key 1 span BLOCK 0`),
    each admitted client queuing again at once, so that the line of every
    key is never empty. Both admit about 1,000 a second;
  * none, paced, again: the machine's drift shows as the difference.

For each, the server's CPU time (INFO cpu: used_cpu_sys + used_cpu_user,
the whole process) over a fixed window is divided by the admissions in it
(INFO ratelimit). A snapshot every second also gives the same over the
seconds in which the hypervisor stole nothing from the server's core (on a
virtual machine, stolen time counts as the running process's CPU time). The wake-up delay comes from the AOF: every admission is
propagated as `RL.WINDOWADD key <payload>` whose bytes 16..24 are the
admission instant (server clock, microseconds); with a limit of L units a
span S and waiters always present, admission k of a key is allowed at
at[k-L] + S, so its delay is at[k] - (at[k-L] + S). The clients stamp each
reply with their own CLOCK_REALTIME, the clock the server's admissions are
taken on (same machine), and the k-th reply received on a key is its k-th
admission (first come first served; replies of one key are a span apart):
that gives the delay a client sees, from the allowed instant to its reply.
"""

import asyncio
import glob
import json
import os
import resource
import time

HOST = "127.0.0.1"

# Appended to the server's command line by the caller.
SERVER_ARGS = ["--appendonly", "yes", "--aof-use-rdb-preamble", "no",
               "--appendfsync", "no", "--auto-aof-rewrite-percentage", "0",
               "--maxclients", "20000", "--tcp-backlog", "4096"]

# (label, waiters, keys, span in seconds): about 1,000 admissions a second each.
FULL_CASES = [("100 waiters", 100, 10, "0.01"), ("10,000 waiters", 10_000, 1_000, "1")]
QUICK_CASES = [("100 waiters", 100, 10, "0.01"), ("1,000 waiters", 1_000, 100, "0.1")]
FULL_SECONDS = 15.0
QUICK_SECONDS = 3.0
PACED_RATE = 1000       # calls a second without waiting
PACED_CONNS = 10
PACED_KEYS = 5000       # each key called every 5 s: allowed at once, even after a stall
SATURATED_N = 300_000
SATURATED_N_QUICK = 50_000
CONNECT_PARALLEL = 256


class BlockError(Exception):
    """The BLOCK benchmark cannot go on (message for the user)."""


class Incomplete(Exception):
    pass


class RespError(str):
    pass


def parse(buf, pos=0):
    """One RESP2 value of `buf` at `pos`: (value, next position)."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete
    kind, line, pos = buf[pos:pos + 1], bytes(buf[pos + 1:end]), end + 2
    if kind == b":":
        return int(line), pos
    if kind == b"+":
        return line.decode(), pos
    if kind == b"-":
        return RespError(line.decode(errors="replace")), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise Incomplete
        return bytes(buf[pos:pos + n]), pos + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, pos
        out = []
        for _ in range(n):
            v, pos = parse(buf, pos)
            out.append(v)
        return out, pos
    raise BlockError(f"unexpected RESP at byte {pos}: {bytes(buf[pos - 1:pos + 40])!r}")


def resp(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def percentile(sorted_vals, q):
    """Nearest rank."""
    if not sorted_vals:
        return None
    per_mille = round(q * 1000)
    i = max(0, min(len(sorted_vals) - 1, -(-per_mille * len(sorted_vals) // 1000) - 1))
    return sorted_vals[i]


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


# --------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------

class Helper(asyncio.Protocol):
    """A plain request/reply connection."""

    def __init__(self):
        self.buf = bytearray()
        self.waiting = []
        self.tr = None

    def connection_made(self, tr):
        self.tr = tr

    def data_received(self, data):
        self.buf += data
        while self.waiting:
            try:
                v, pos = parse(self.buf, 0)
            except Incomplete:
                return
            del self.buf[:pos]
            fut = self.waiting.pop(0)
            if not fut.done():
                fut.set_result(v)

    def connection_lost(self, exc):
        for fut in self.waiting:
            if not fut.done():
                fut.set_exception(BlockError(f"connection lost: {exc}"))
        self.waiting = []

    async def call(self, *args):
        fut = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        self.tr.write(resp(args))
        v = await fut
        if isinstance(v, RespError):
            raise BlockError(f"{' '.join(map(str, args))}: {v}")
        return v

    async def info(self, *sections):
        text = (await self.call("INFO", *sections)).decode()
        out = {}
        for line in text.splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v.strip()
        return out

    def close(self):
        if self.tr:
            self.tr.close()


class Waiter(asyncio.Protocol):
    """One client waiting in line: sends its command, and again at each
    admission, stamping every reply with the wall clock."""

    def __init__(self, run, key):
        self.run = run
        self.key = key
        self.cmd = resp(["RL.SLIDING", run.keys[key], "1", run.span, "BLOCK", "0"])
        self.buf = bytearray()
        self.tr = None
        self.lost = None

    def connection_made(self, tr):
        self.tr = tr

    def data_received(self, data):
        t = time.time_ns()
        self.buf += data
        while True:
            try:
                v, pos = parse(self.buf, 0)
            except Incomplete:
                return
            del self.buf[:pos]
            self.run.reply(self, v, t)

    def connection_lost(self, exc):
        self.lost = exc
        if self.run.running:
            self.run.errors.append(f"connection lost while running: {exc}")

    def send(self):
        if self.run.running and self.tr is not None and not self.tr.is_closing():
            self.tr.write(self.cmd)


class WaitRun:
    """The clients of one waiting case."""

    def __init__(self, prefix, span):
        self.prefix = prefix
        self.span = span
        self.keys = []
        self.recv = []           # per key: reply instants (ns) of admissions, in order
        self.running = True
        self.denied = 0
        self.errors = []

    def reply(self, w, v, t):
        if isinstance(v, list) and v and v[0] == 1:
            self.recv[w.key].append(t)
            w.send()
        elif isinstance(v, list) and v and v[0] == 0:
            # Could not wait (the cap): try again shortly.
            self.denied += 1
            asyncio.get_running_loop().call_later(0.005, w.send)
        else:
            self.errors.append(str(v))


# --------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------

_SERVER_PID = None


def runqueue_wait_ns(pid):
    """Time `pid` spent runnable but waiting for a CPU (/proc/PID/schedstat),
    or None: how much other jobs on its core held it up."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None


_TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 10.0


def steal_ms():
    """Per core, the time the hypervisor ran something else while this
    machine's core wanted to run (/proc/stat, `steal`), in ms."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0].startswith("cpu") and parts[0] != "cpu" and len(parts) > 8:
                    out[int(parts[0][3:])] = int(parts[8]) * _TICK_MS
    except (OSError, ValueError):
        pass
    return out


def cpu_of(info):
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def snapshot(h):
    info = await h.info("cpu", "ratelimit", "memory", "clients")
    t = await h.call("TIME")
    info["_time_us"] = int(t[0]) * 1_000_000 + int(t[1])
    info["_wall"] = time.monotonic()
    info["_rq_server"] = runqueue_wait_ns(_SERVER_PID) if _SERVER_PID else None
    info["_rq_client"] = runqueue_wait_ns(os.getpid())
    info["_steal"] = steal_ms()
    return info


def delta(a, b, what):
    return {
        "cpu_s": cpu_of(b) - cpu_of(a),
        "wall_s": b["_wall"] - a["_wall"],
        "allowed": int(b["ratelimit_sliding_allowed"]) - int(a["ratelimit_sliding_allowed"]),
        "denied": int(b["ratelimit_sliding_denied"]) - int(a["ratelimit_sliding_denied"]),
        "admitted_after_wait": int(b["ratelimit_waits_admitted"]) - int(a["ratelimit_waits_admitted"]),
        "from_us": a["_time_us"],
        "to_us": b["_time_us"],
        "what": what,
        "waiters_end": int(b["ratelimit_waiters"]),
        "rq_server_ms": (b["_rq_server"] - a["_rq_server"]) / 1e6
        if a["_rq_server"] is not None and b["_rq_server"] is not None else None,
        "rq_client_ms": (b["_rq_client"] - a["_rq_client"]) / 1e6
        if a["_rq_client"] is not None and b["_rq_client"] is not None else None,
        # The server's core is 0 when pinned (the clients': 1).
        "steal_server_ms": b["_steal"].get(0, 0) - a["_steal"].get(0, 0)
        if 0 in a["_steal"] else None,
        "steal_client_ms": b["_steal"].get(1, 0) - a["_steal"].get(1, 0)
        if 1 in a["_steal"] else None,
    }


async def sampled(h, seconds, what):
    """A timed window of `seconds`, with a snapshot every second: the
    window's delta, and its one-second slices."""
    a = prev = await snapshot(h)
    end = a["_wall"] + seconds
    slices = []
    while True:
        left = end - time.monotonic()
        if left <= 0.001:
            break
        await asyncio.sleep(min(1.0, left))
        cur = await snapshot(h)
        slices.append(delta(prev, cur, what))
        prev = cur
    d = delta(a, prev, what)
    d["slices"] = slices
    d["min_waiters"] = min([int(a["ratelimit_waiters"])]
                           + [x["waiters_end"] for x in slices])
    return d


async def phase_idle(h, seconds):
    return await sampled(h, seconds, "idle")


async def phase_paced(port, h, seconds, log):
    """Allowed calls, one at a time on PACED_CONNS connections, PACED_RATE a second."""
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(PACED_CONNS):
        _, p = await loop.create_connection(Helper, HOST, port)
        conns.append(p)

    async def paced(c, start, end, first_slot=0):
        j = 0
        while True:
            slot = j * PACED_CONNS + c
            t = start + slot / PACED_RATE
            if t >= end:
                return
            wait = t - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            # The keys in turn, across the warm-up and the window: each one
            # called every PACED_KEYS / PACED_RATE seconds.
            key = "bn:%06d" % ((first_slot + slot) % PACED_KEYS)
            await conns[c].call("RL.SLIDING", key, "1", "1")
            j += 1

    # Warm-up of a second (not measured), then the timed window.
    start = loop.time() + 0.05
    await asyncio.gather(*(paced(c, start, start + 1.0) for c in range(PACED_CONNS)))
    window = asyncio.ensure_future(sampled(h, seconds, "none, paced"))
    start = loop.time()
    await asyncio.gather(*(paced(c, start, start + seconds, PACED_RATE)
                           for c in range(PACED_CONNS)))
    d = await window
    for c in conns:
        c.close()
    # A call runs late only after a stall of the machine; one that comes
    # more than 4 s late can be denied (its key's next call is on time).
    if d["denied"] > d["allowed"] // 100:
        raise BlockError(f"none, paced: {d['denied']} calls denied, "
                         f"{d['allowed']} allowed; they must all be allowed")
    return d


async def phase_saturated(port, h, n, pin1, log):
    cmd = pin1 + ["redis-benchmark", "-h", HOST, "-p", str(port), "-c", "50", "-n", str(n),
                  "-P", "1", "-r", "100000", "--csv",
                  "RL.SLIDING", "bs:__rand_int__", "1", "0.001"]
    a = await snapshot(h)
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    b = await snapshot(h)
    if proc.returncode != 0:
        raise BlockError(f"redis-benchmark failed: {out.decode()}\n{err.decode()}")
    d = delta(a, b, "none, saturated")
    if d["allowed"] + d["denied"] < n or d["denied"] > n // 100:
        raise BlockError(f"none, saturated: {d['allowed']} allowed, {d['denied']} denied of {n}")
    return d


async def phase_wait(port, h, label, waiters, nkeys, span, seconds, log):
    loop = asyncio.get_running_loop()
    span_s = float(span)
    prefix = "bw%d" % nkeys
    run = WaitRun(prefix, span)
    run.keys = ["%s:%06d" % (prefix, i) for i in range(nkeys)]
    run.recv = [[] for _ in range(nkeys)]
    before = await snapshot(h)

    # Connect every client first (nothing sent), a few hundred at a time.
    sem = asyncio.Semaphore(CONNECT_PARALLEL)
    clients = []

    async def connect(j):
        async with sem:
            for attempt in range(5):
                try:
                    _, w = await loop.create_connection(lambda: Waiter(run, j % nkeys), HOST, port)
                    clients.append(w)
                    return
                except OSError as e:
                    if attempt == 4:
                        raise BlockError(f"cannot open client {j}: {e}")
                    await asyncio.sleep(0.2)

    t0 = time.monotonic()
    await asyncio.gather(*(connect(j) for j in range(waiters)))
    await asyncio.sleep(0.5)
    connected = await snapshot(h)
    log(f"   {label}: {waiters} clients connected in {time.monotonic() - t0:.1f} s "
        f"(connected_clients {connected['connected_clients']})")
    # What the connections cost with no one waiting (the server's cron
    # visits every client).
    idle_connected = await sampled(h, min(3.0, seconds), f"{label}, connected, idle")

    # Key i starts at i/K of a span: admissions spread evenly over the span.
    by_key = [[] for _ in range(nkeys)]
    for w in clients:
        by_key[w.key].append(w)
    start = loop.time() + 0.05
    for i, ws in enumerate(by_key):
        for w in ws:
            loop.call_at(start + i * span_s / nkeys, w.send)
    # Everyone in line, then a span and a second more to settle.
    deadline = time.monotonic() + 30 + span_s
    while True:
        await asyncio.sleep(0.1)
        s = await h.info("ratelimit")
        if int(s["ratelimit_waiters"]) >= waiters - max(2, waiters // 100):
            break
        if time.monotonic() > deadline:
            raise BlockError(f"{label}: only {s['ratelimit_waiters']} of {waiters} clients "
                             "waiting after 30 s")
    await asyncio.sleep(span_s + 1.0)
    a = await snapshot(h)  # memory with everyone waiting
    d = await sampled(h, seconds, label)
    b = await snapshot(h)

    # Stop: no more requests, close every connection, wait for the line to empty.
    run.running = False
    for w in clients:
        w.tr.close()
    deadline = time.monotonic() + 20
    while True:
        await asyncio.sleep(0.2)
        s = await h.info("ratelimit", "clients")
        if int(s["ratelimit_waiters"]) == 0 and int(s["connected_clients"]) <= 2:
            break
        if time.monotonic() > deadline:
            raise BlockError(f"{label}: {s['ratelimit_waiters']} waiters still there after "
                             "closing every client")
    if run.errors:
        raise BlockError(f"{label}: {len(run.errors)} error replies, first: {run.errors[0]}")
    d.update({
        "label": label, "waiters": waiters, "keys": nkeys, "span": span, "prefix": prefix,
        "refused": run.denied,
        "mem_before": int(before["used_memory"]), "mem_connected": int(connected["used_memory"]),
        "mem_waiting": int(a["used_memory"]), "waiting_at_start": int(a["ratelimit_waiters"]),
        "mem_waiting_end": int(b["used_memory"]), "waiting_at_end": int(b["ratelimit_waiters"]),
        "clients_connected": int(connected["connected_clients"]) - int(before["connected_clients"]),
        "recv": run.recv, "keys_list": run.keys,
        "idle_connected": idle_connected,
    })
    return d


# --------------------------------------------------------------------------
# The AOF
# --------------------------------------------------------------------------

def read_aof(workdir, prefixes):
    """RL.WINDOWADD admissions of the keys that start with one of
    `prefixes`: {key: [(at_us, units, span_us, coalesce)]}, in AOF order."""
    files = sorted(glob.glob(os.path.join(workdir, "appendonlydir", "*.incr.aof")),
                   key=lambda p: int(p.rsplit(".", 3)[-3]))
    if not files:
        raise BlockError(f"no AOF under {workdir}/appendonlydir")
    out = {}
    pre = tuple(p.encode() + b":" for p in prefixes)
    for path in files:
        with open(path, "rb") as f:
            buf = f.read()
        pos = 0
        while pos < len(buf):
            try:
                v, pos = parse(buf, pos)
            except Incomplete:
                break  # a torn last command (it cannot be: the server was shut down)
            if (isinstance(v, list) and len(v) == 3 and v[0].upper() == b"RL.WINDOWADD"
                    and v[1].startswith(pre)):
                p = v[2]
                if len(p) != 33:
                    raise BlockError(f"RL.WINDOWADD payload of {len(p)} bytes")
                at = int.from_bytes(p[16:24], "little")
                out.setdefault(v[1].decode(), []).append(
                    (at, int.from_bytes(p[24:32], "little"), int.from_bytes(p[8:16], "little"),
                     p[32]))
    return out


def analyze(case, adds):
    """The wake-up delays (server clock) and the delays the clients saw,
    in microseconds, of the admissions inside the timed window."""
    limit = 1
    span_us = round(float(case["span"]) * 1_000_000)
    server, client = [], []
    mismatched = 0
    odd = 0
    for i, key in enumerate(case["keys_list"]):
        entries = adds.get(key, [])
        recv = case["recv"][i]
        for k, (at, units, span, coalesce) in enumerate(entries):
            if units != 1 or span != span_us or coalesce:
                odd += 1
            if k < limit or not (case["from_us"] <= at <= case["to_us"]):
                continue
            allowed = entries[k - limit][0] + span_us
            server.append(at - allowed)
            if k < len(recv):
                r_us = recv[k] // 1000
                if r_us < at:
                    mismatched += 1
                client.append(r_us - allowed)
    server.sort()
    client.sort()
    res = {"n": len(server), "odd": odd, "mismatched": mismatched, "client_n": len(client)}
    for name, vals in (("server", server), ("client", client)):
        res[name] = {q: percentile(vals, q) for q in (0.5, 0.9, 0.99)}
        res[name]["max"] = vals[-1] if vals else None
        res[name]["min"] = vals[0] if vals else None
        res[name]["late_1ms"] = sum(1 for x in vals if x > 1000)
        res[name]["late_5ms"] = sum(1 for x in vals if x > 5000)
    return res


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------

def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if new < want:
        raise BlockError(f"{want} file descriptors needed, the hard limit is {hard} "
                         "(ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


async def _run(server, quick, pin1, log, cases, seconds):
    loop = asyncio.get_running_loop()
    _, h = await loop.create_connection(Helper, HOST, server.port)
    await h.call("CONFIG", "SET", "ratelimit.max-waiters", "20000")
    maxclients = int((await h.call("CONFIG", "GET", "maxclients"))[1])
    most = max(c[1] for c in cases)
    if maxclients < most + 50:
        raise BlockError(f"the server accepts {maxclients} clients, {most + 50} needed "
                         "(raise ulimit -n)")
    res = {"maxclients": maxclients, "seconds": seconds}
    log("   idle server")
    res["idle"] = await phase_idle(h, 3.0 if not quick else 1.0)
    log(f"   none, paced: {PACED_RATE} calls/s for {seconds:.0f} s")
    res["paced"] = await phase_paced(server.port, h, seconds, log)
    n = SATURATED_N_QUICK if quick else SATURATED_N
    log(f"   none, saturated: redis-benchmark, {n} calls")
    res["saturated"] = await phase_saturated(server.port, h, n, pin1, log)
    res["cases"] = []
    for label, waiters, nkeys, span in cases:
        log(f"   {label} on {nkeys} keys, 1 per {span} s each, {seconds:.0f} s")
        res["cases"].append(await phase_wait(server.port, h, label, waiters, nkeys, span,
                                             seconds, log))
    # Once more after the waiting cases: the machine's drift shows as the
    # difference, and the comparison is with both together.
    log(f"   none, paced again: {PACED_RATE} calls/s for {seconds:.0f} s")
    res["paced_after"] = await phase_paced(server.port, h, seconds, log)
    res["paced_after"]["what"] = "none, paced, after"
    h.close()
    return res


def run(server, quick=False, pinning=False, pin1=(), log=print, seconds=None):
    """Measures on `server` (started with SERVER_ARGS, already up; stopped by
    the caller, and it must be stopped before `finish`)."""
    global _SERVER_PID
    _SERVER_PID = server.proc.pid
    cases = QUICK_CASES if quick else FULL_CASES
    seconds = seconds or (QUICK_SECONDS if quick else FULL_SECONDS)
    raise_fd_limit(max(c[1] for c in cases) + 1024)
    old_affinity = None
    if pinning and hasattr(os, "sched_setaffinity"):
        old_affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {1})
    started = time.time()
    load_before = loadavg()
    try:
        res = asyncio.run(_run(server, quick, list(pin1), log, cases, seconds))
    finally:
        if old_affinity is not None:
            os.sched_setaffinity(0, old_affinity)
    res["load_before"] = load_before
    res["load_after"] = loadavg()
    res["quick"] = quick
    res["measure_s"] = time.time() - started
    return res


def finish(res, workdir, keep=None):
    """Reads the AOF of the stopped server: the delays of every waiting case.
    With `keep`, also writes the results there as JSON."""
    adds = read_aof(workdir, [c["prefix"] for c in res["cases"]])
    for c in res["cases"]:
        c["delay"] = analyze(c, adds)
        if c["delay"]["n"] < c["allowed"] // 2:
            raise BlockError(f"{c['label']}: {c['delay']['n']} admissions in the AOF's window, "
                             f"{c['allowed']} counted by INFO")
        del c["recv"]
        del c["keys_list"]
    if keep:
        os.makedirs(os.path.dirname(keep), exist_ok=True)
        with open(keep, "w") as f:
            json.dump(res, f, indent=1, default=str)
    return res


def per_call_us(d):
    return 1e6 * d["cpu_s"] / d["allowed"] if d["allowed"] else float("nan")


QUIET_STEAL_MS = 10.0   # one tick of /proc/stat at 100 Hz


def quiet_us(*ds):
    """CPU per call over the one-second slices of `ds` in which the
    hypervisor stole at most a tick from the server's core: (µs or None,
    slices used, slices)."""
    slices = [x for d in ds for x in d.get("slices", [])]
    qs = [x for x in slices if x.get("steal_server_ms") is not None
          and x["steal_server_ms"] <= QUIET_STEAL_MS and x["allowed"] > 0]
    n = sum(x["allowed"] for x in qs)
    us = 1e6 * sum(x["cpu_s"] for x in qs) / n if n else None
    return us, len(qs), len(slices)


def baseline_us(res):
    """CPU per call without waiting: both paced windows together."""
    a, b = res["paced"], res["paced_after"]
    return 1e6 * (a["cpu_s"] + b["cpu_s"]) / (a["allowed"] + b["allowed"])


def summary_lines(res):
    """Plain text, for the terminal."""
    base = baseline_us(res)
    idle = res["idle"]
    out = [f"BLOCK: idle server {1e6 * idle['cpu_s'] / idle['wall_s']:.0f} us CPU/s"]
    for key in ("paced", "saturated", "paced_after"):
        d = res[key]
        out.append(f"BLOCK: {d['what']:<18} {d['allowed'] / d['wall_s']:>8.0f} calls/s, "
                   f"CPU {100 * d['cpu_s'] / d['wall_s']:5.1f}%, {per_call_us(d):6.1f} us/call"
                   f"{_quiet_text(d)}{_rq_text(d)}")
    for c in res["cases"]:
        dl = c["delay"]
        out.append(f"BLOCK: {c['label']:<18} {c['allowed'] / c['wall_s']:>8.0f} admissions/s, "
                   f"CPU {100 * c['cpu_s'] / c['wall_s']:5.1f}%, {per_call_us(c):6.1f} us/admission "
                   f"({per_call_us(c) / base:.2f}x none, paced: {base:.1f} us)"
                   f"{_quiet_text(c, res)}{_rq_text(c)}")
        s = dl["server"]
        out.append(f"BLOCK: {c['label']:<18} wake-up delay us: median {s[0.5]}, p90 {s[0.9]}, "
                   f"p99 {s[0.99]}, max {s['max']}, min {s['min']} ({dl['n']} admissions)")
        cl = dl["client"]
        out.append(f"BLOCK: {c['label']:<18} client-observed us: median {cl[0.5]}, p90 {cl[0.9]}, "
                   f"p99 {cl[0.99]}, max {cl['max']} ({dl['client_n']} replies, "
                   f"{dl['mismatched']} before their admission)")
        ic = c["idle_connected"]
        out.append(f"BLOCK: {c['label']:<18} connected, none waiting: server CPU "
                   f"{100 * ic['cpu_s'] / ic['wall_s']:.1f}% "
                   f"({1e6 * ic['cpu_s'] / ic['wall_s'] / (c['allowed'] / c['wall_s']):.1f} us "
                   "per admission at the admission rate)")
        out.append(f"BLOCK: {c['label']:<18} memory: {per_connection(c):.0f} B per idle connection, "
                   f"{per_waiter(c):.0f} B more per waiter ({per_waiter(c, True):.0f} at the end); "
                   f"fewest waiting {c['min_waiters']}")
    return out


def _quiet_text(d, res=None):
    us, k, n = quiet_us(d)
    if us is None:
        return f"; no steal-free second ({n})" if n else ""
    out = f"; steal-free seconds ({k}/{n}): {us:.1f} us"
    if res is not None:
        base, _, _ = quiet_us(res["paced"], res["paced_after"])
        if base:
            out += f" ({us / base:.2f}x none's {base:.1f} us)"
    return out


def _rq_text(d):
    if d.get("rq_server_ms") is None:
        return ""
    out = (f"; waited for a CPU: server {d['rq_server_ms']:.0f} ms, "
           f"clients {d['rq_client_ms']:.0f} ms")
    if d.get("steal_server_ms") is not None:
        out += (f"; steal: core 0 {d['steal_server_ms']:.0f} ms, "
                f"core 1 {d['steal_client_ms']:.0f} ms")
    return out


def _rq_cell(d):
    rq = "-" if d.get("rq_server_ms") is None else f"{d['rq_server_ms']:,.0f} ms"
    st = "-" if d.get("steal_server_ms") is None else f"{d['steal_server_ms']:,.0f} ms"
    return f"{rq} | {st} ({100 * d['steal_server_ms'] / 1000 / d['wall_s']:.0f}%)" \
        if d.get("steal_server_ms") is not None else f"{rq} | {st}"


def per_connection(c):
    return (c["mem_connected"] - c["mem_before"]) / max(1, c["clients_connected"])


def per_waiter(c, end=False):
    if end:
        return (c["mem_waiting_end"] - c["mem_connected"]) / max(1, c["waiting_at_end"])
    return (c["mem_waiting"] - c["mem_connected"]) / max(1, c["waiting_at_start"])


def _us(x):
    return "-" if x is None else f"{x:,}"


def _ms(x):
    return "-" if x is None else f"{x / 1000:.2f}"


def section(res, meta):
    """Markdown lines of the "Waiting in line (BLOCK)" section."""
    base = baseline_us(res)
    idle = res["idle"]
    out = ["## Waiting in line (BLOCK)\n"]
    out.append(f"- Date: {meta['date']}; module commit {meta['commit']} "
               f"(sha256 {meta['digest']}...); `{meta['redis']}`")
    out.append(f"- Machine: {meta['cpu']}, {meta['cores']} cores; load average "
               f"{res['load_before']} at the start, {res['load_after']} at the end")
    out.append(f"- Command: `{meta['argv']}`; this part took {res['measure_s']:.0f} s "
               f"({res['seconds']:.0f} s timed per case)\n")
    out.append(
        "One server (`--appendonly yes --appendfsync no`, AOF without RDB preamble on tmpfs, "
        "pinned to core 0; the clients, Python asyncio, on core 1) runs in turn, in the rows' "
        "order: nothing; allowed calls that never wait, paced, then as fast as they are "
        "answered; then W clients on K keys, every key limited to one admission per span "
        "(`RL.SLIDING key 1 <span> BLOCK 0`), each admitted client queuing again at once, so "
        "every key's line always holds W/K - 1 or more waiters and about 1,000 admissions "
        "happen a second; then the paced calls again. Server CPU is `INFO cpu` "
        "(`used_cpu_sys` + `used_cpu_user`, the whole "
        "process) over a fixed window, divided by the calls or admissions in it (`INFO "
        "ratelimit`). The wake-up delay of an admission is its instant (bytes 16..24 of the "
        "`RL.WINDOWADD` payload read back from the AOF, server clock) minus the instant its "
        "limit allowed it: the previous admission on the key plus the span.\n")
    big, small = res["cases"][-1], res["cases"][0]
    sv = big["delay"]["server"]
    ic = big["idle_connected"]
    out.append(
        f"**In short**: with {big['label']} on {big['keys']:,} keys, an admission cost the "
        f"server {per_call_us(big):.1f} µs of CPU, {per_call_us(big) / base:.2f}x a call that "
        f"never waits at the same rate ({base:.1f} µs; {small['label']} on {small['keys']:,} "
        f"keys: {per_call_us(small):.1f} µs, {per_call_us(small) / base:.2f}x). An admission "
        "takes two turns of the event loop where a call takes one: the call that joins the "
        "line, then the timer that admits, writes and replies. The open connections alone "
        f"cost {1e6 * ic['cpu_s'] / ic['wall_s'] / (big['allowed'] / big['wall_s']):.1f} µs "
        "an admission (the server's cron visits every client). Admissions came a median "
        f"{_us(sv[0.5])} µs after the instant their limit allowed them (p90 {_us(sv[0.9])}, "
        f"p99 {_us(sv[0.99])}, max {_us(sv['max'])} µs): the timer of a line's first waiter "
        "is armed in whole milliseconds, rounded up.\n")
    qbase, _, _ = quiet_us(res["paced"], res["paced_after"])
    out.append("| case | keys | limit per key | calls or admissions / s | server CPU | "
               "CPU per call or admission | vs none (paced) | the same over steal-free seconds "
               "| vs none | server waited for a CPU | steal on its core |")
    out.append("|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|")

    def row(name, keys, limit, d):
        us, k, n = quiet_us(d)
        q = f"{us:.1f} µs ({k}/{n} s)" if us is not None else (f"- (0/{n} s)" if n else "-")
        qr = f"{us / qbase:.2f}x" if us is not None and qbase else "-"
        out.append(f"| {name} | {keys} | {limit} | {d['allowed'] / d['wall_s']:,.0f} | "
                   f"{100 * d['cpu_s'] / d['wall_s']:.1f}% | {per_call_us(d):.1f} µs | "
                   f"{per_call_us(d) / base:.2f}x | {q} | {qr} | {_rq_cell(d)} |")

    out.append(f"| idle server, no client | - | - | - | "
               f"{100 * idle['cpu_s'] / idle['wall_s']:.1f}% | - | - | - | - | {_rq_cell(idle)} |")
    paced = (f"none, paced: {PACED_RATE:,}/s on {PACED_CONNS} connections, one at a time",
             f"{PACED_KEYS:,}", "`RL.SLIDING bn:N 1 1`, never waits")
    row(*paced, res["paced"])
    row("none, saturated: redis-benchmark -c 50", "100,000", "`RL.SLIDING bs:N 1 0.001`, "
        "never waits", res["saturated"])
    for c in res["cases"]:
        row(f"{c['label']} ({c['waiters'] // c['keys']} a key)", f"{c['keys']:,}",
            f"1 per {c['span']} s, BLOCK 0", c)
    row(paced[0] + ", again", *paced[1:], res["paced_after"])
    out.append("")
    out.append("Wake-up delay, from the instant the limit allowed an admission to the admission "
               "(server clock, µs), over the admissions of the timed window; and the delay a "
               "client saw, to the arrival of its reply (ms):\n")
    out.append("| case | admissions | median | p90 | p99 | max | over 1 ms | over 5 ms | "
               "client: median ms | p90 | p99 | max |")
    out.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for c in res["cases"]:
        dl, sv, cl = c["delay"], c["delay"]["server"], c["delay"]["client"]
        out.append(f"| {c['label']} | {dl['n']:,} | {_us(sv[0.5])} | {_us(sv[0.9])} | "
                   f"{_us(sv[0.99])} | {_us(sv['max'])} | {sv['late_1ms']:,} | {sv['late_5ms']:,} | "
                   f"{_ms(cl[0.5])} | {_ms(cl[0.9])} | {_ms(cl[0.99])} | {_ms(cl['max'])} |")
    out.append("")
    notes = []
    for c in res["cases"]:
        notes.append(f"{c['label']}: {c['waiting_at_start']:,} waiting when the window opened, "
                     f"never fewer than {c['min_waiters']:,} (sampled every second); "
                     f"{c['admitted_after_wait']:,} of the {c['allowed']:,} admissions came "
                     f"after a wait; memory {per_connection(c):,.0f} bytes per connected "
                     f"client before any command, {per_waiter(c):,.0f} more per waiting client "
                     f"when the window opened and {per_waiter(c, True):,.0f} when it closed "
                     f"(`used_memory`; the server trims the buffers of idle clients in its cron)")
        ic = c["idle_connected"]
        notes.append(f"{c['label']}: with the clients connected and no command sent yet, the "
                     f"server used {100 * ic['cpu_s'] / ic['wall_s']:.1f}% CPU over "
                     f"{ic['wall_s']:.0f} s (its cron visits every client), "
                     f"{1e6 * ic['cpu_s'] / ic['wall_s'] / (c['allowed'] / c['wall_s']):.1f} µs "
                     "for each admission at the rate admissions came")
        dl = c["delay"]
        if dl["server"]["min"] is not None and dl["server"]["min"] < 0:
            notes.append(f"{c['label']}: an admission came {-dl['server']['min']} µs before "
                         "its limit allowed it")
        if dl["mismatched"]:
            notes.append(f"{c['label']}: {dl['mismatched']} replies arrived before the "
                         "admission they were matched with: the client column is unsound")
        if c.get("denied"):
            notes.append(f"{c['label']}: {c['denied']} calls denied")
        if c["refused"]:
            notes.append(f"{c['label']}: {c['refused']} calls could not wait (cap) and retried")
        if dl["odd"]:
            notes.append(f"{c['label']}: {dl['odd']} RL.WINDOWADD payloads were not one "
                         "unit without coalescing")
    notes.append(
        "Server waited for a CPU: the time its main thread was runnable but not running "
        "during the window (`/proc/PID/schedstat`), that is how much other jobs on its core "
        "held it up. Steal: the time the hypervisor gave the server's core (core 0) to "
        "other machines (`/proc/stat`), during which nothing on it runs at all. On an idle "
        "machine both are near 0; a stall shows in every key's delays at once.")
    qtext = f"{qbase:.1f} µs" if qbase else "none of them was"
    notes.append(
        f"vs none (paced): over the CPU per call of both paced windows together "
        f"({base:.1f} µs; {qtext} over their steal-free seconds), one run before the waiting "
        "cases and one after, so that the machine's drift shows. Steal-free seconds: the "
        "one-second slices of a window (a snapshot every second) in which the hypervisor took "
        "at most one tick (10 ms) from the server's core: in a virtual machine, time stolen "
        "while the server runs is counted as the server's CPU time.")
    notes.append(
        f"None, paced: {PACED_CONNS} connections, each sending its next call at its own slot "
        f"of a {PACED_RATE:,}-a-second schedule after its previous reply, on {PACED_KEYS:,} keys "
        f"in turn (each key called every {PACED_KEYS // PACED_RATE} s: allowed, a fresh key each "
        "time, as an admission after a wait finds its key just expired). Saturated: the event loop serves many "
        "requests per wake-up, the floor of the cost per call.")
    notes.append(
        "Client delay: each client stamps a reply with CLOCK_REALTIME on arrival (Python, "
        "so it includes the client's own event loop), the clock the module takes admission "
        "instants from on the same machine; the k-th reply of a key is its k-th admission. It "
        "includes the deliberate pacing of replies (one per millisecond, in the order "
        "admitted) and the reply's trip.")
    notes.append("`python3 scripts/bench_server.py --only-blocking` reruns this section alone "
                 "and rewrites only it; `--quick` runs 100 and 1,000 waiters for 3 s and "
                 "writes nothing.")
    for n in notes:
        out.append(f"- {n}")
    out.append("")
    return out


def splice(path, lines):
    """Replaces (or adds, before "## How to reproduce") the section in `path`."""
    with open(path) as f:
        text = f.read().split("\n")
    head = "## Waiting in line (BLOCK)"
    start = next((i for i, l in enumerate(text) if l.strip() == head), None)
    if start is None:
        at = next((i for i, l in enumerate(text) if l.startswith("## How to reproduce")),
                  len(text))
        text[at:at] = lines
    else:
        end = next((i for i in range(start + 1, len(text)) if text[i].startswith("## ")),
                   len(text))
        text[start:end] = lines
    with open(path, "w") as f:
        f.write("\n".join(text))
