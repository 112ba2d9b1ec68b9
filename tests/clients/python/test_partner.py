"""partner.py: the exact RL.ALL it sends (BLOCK included), the seed limits (10
a minute, 500 a New York day), and the worker loop with small windows (no test
waits a minute): paced, first come first served among workers, one command per
admission, giving up when the wait runs out, asking again after a failover or a
slot move, polling a module without BLOCK, and redis-py's timeouts."""

import re
import socket
import threading
import time

import redis
from harness import (CLUSTER_URL, URL, check, client, eq, finish, load, next_midnight_ms,
                     run_script, same_reply, server_ms, within)
from redis.cluster import RedisCluster

partner, _ = load("partner.py")
SEED = "LIMIT {partner}:minute SLIDING 10 60 LIMIT {partner}:day FIXED 500 DAY TZ America/New_York"
PACE = {"per_minute": 3, "minute_s": 0.5}  # 3 per 0.5 s: the small limit the loops share


def waiting_client(protocol=3):
    """A client whose reads outlast the waits here (redis-py 8.1 gives up at 5 s by default)."""
    return redis.Redis.from_url(URL, protocol=protocol, socket_timeout=30)


def counters(r):
    """RL.ALL calls since CONFIG RESETSTAT, and INFO ratelimit's wait counters."""
    stats = r.info("commandstats").get("cmdstat_RL.ALL", {})
    waits = {k.removeprefix("ratelimit_"): v for k, v in r.info("ratelimit").items() if "wait" in k}
    return stats.get("calls", 0), stats.get("failed_calls", 0), waits


def delta(before, after):
    return {k: after[k] - before[k] for k in before if k != "waiters"}


def wait_for(what, cond, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout_s} s: {what}")
        time.sleep(0.01)


def in_thread(fn):
    """Runs fn in a thread; returns a join() that gives back fn's result or raises its error."""
    out = {}

    def run():
        try:
            out["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to join()
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()

    def join(timeout_s=30):
        t.join(timeout_s)
        if t.is_alive():
            raise AssertionError(f"still running after {timeout_s} s")
        if "error" in out:
            raise out["error"]
        return out.get("result")

    return join


class Seen:
    """A client, noting the errors that reach run_worker through it."""

    def __init__(self, r):
        self.r, self.errors = r, []

    def execute_command(self, *args):
        try:
            return self.r.execute_command(*args)
        except Exception as e:
            self.errors.append(e)
            raise


def paced(times, sent, batches, last=(0.95, 1.6)):
    """Sends at most 3 in any 0.5 s, 7 batches of one in about 1 s."""
    offsets = [round(t - times[0], 3) for t in times]
    eq(sent, batches, "sent")
    for i in range(len(times) - 3):
        # The server admits 3 per 0.5 s on its clock; times here are taken after each reply.
        within(times[i + 3] - times[i], 0.4, 10, f"sends {i + 1} and {i + 4}, send times {offsets}")
    within(offsets[-1], *last, f"the 7th send (two turns of 0.5 s): {offsets}")


@check("python partner.py sends the seed RL.ALL with BLOCK, exactly, and the day ends at New York midnight")
def _():
    r = client()
    r.config_set("slowlog-log-slower-than", 0)  # log every command, with its arguments
    r.slowlog_reset()
    try:
        out = run_script("partner.py")
        log = r.slowlog_get(128)
    finally:
        r.config_set("slowlog-log-slower-than", 10000)
    eq(out, "sent ['a']\nsent ['b', 'c']\n", "partner.py's output")
    sent = [e["command"].decode() for e in reversed(log) if e["command"].startswith(b"RL.ALL")]
    blocks = [re.match(r"RL\.ALL BLOCK (\d+) ", c) for c in sent]
    if not all(blocks):
        raise AssertionError(f"RL.ALL without BLOCK first: {sent}")
    for m in blocks:  # what is left of max_wait_s=300 when it asks
        within(int(m.group(1)), 299000, 300000, f"BLOCK's timeout in {sent}")
    eq([re.sub(r"BLOCK \d+", "BLOCK ms", c) for c in sent],
       [f"RL.ALL BLOCK ms COST 1 {SEED}", f"RL.ALL BLOCK ms COST 2 {SEED}"], "the commands the server ran")
    eq(r.type("{partner}:minute"), b"rl-window", "TYPE {partner}:minute")
    eq(r.type("{partner}:day"), b"rl-fixwin", "TYPE {partner}:day")
    now = server_ms(r)
    eq(r.pexpiretime("{partner}:day"), next_midnight_ms(now),
       f"PEXPIRETIME {{partner}}:day (server time {now})")
    within(r.pexpiretime("{partner}:minute") - now, 59000, 60000, "the minute key's TTL")


@check("seed limits: the 11th call in a minute is denied by the minute (position 1), RESP2 = RESP3")
def _():
    replies = {}
    for protocol in (2, 3):
        r = client(protocol)
        partner_name = f"seed{protocol}"
        got = [partner.take(r, partner_name) for _ in range(11)]
        for i, reply in enumerate(got[:10]):
            eq(reply[:4] + reply[5:], [1, 10, 9 - i, 0, 1], f"call {i + 1}: {reply}")
            within(reply[4], 59000, 60000, f"call {i + 1}'s reset_after_ms: {reply}")
        denied = got[10]
        eq(denied[:3] + denied[5:], [0, 10, 0, 1], f"the 11th: {denied}")
        within(denied[3], 59000, 60000, f"the 11th's retry_after_ms: {denied}")
        within(denied[4], 59000, 60000, f"the 11th's reset_after_ms: {denied}")
        replies[protocol] = got
    for i, (a, b) in enumerate(zip(replies[2], replies[3])):
        same_reply(a, b, f"call {i + 1}, RESP2 vs RESP3")


@check("the day decides once spent (position 2): retry_after_ms is the time to New York midnight")
def _():
    for protocol in (2, 3):
        r = client(protocol)
        for _ in range(2):
            eq(partner.take(r, f"day{protocol}", per_day=2)[0], 1, "allowed")
        before = server_ms(r)
        reply = partner.take(r, f"day{protocol}", per_day=2)
        after = server_ms(r)
        eq(reply[:3] + reply[5:], [0, 2, 0, 2], f"RESP{protocol}: {reply}")
        midnight = next_midnight_ms(before)
        within(reply[3], midnight - after, midnight - before + 1, f"RESP{protocol} retry_after_ms {reply}")
        eq(reply[4], reply[3], f"RESP{protocol}: the day is fresh again when it fits again: {reply}")


@check("run_worker, 3 per 0.5 s: 7 batches paced by waiting in line, one RL.ALL each, done in about 1 s")
def _():
    r = waiting_client()
    r.config_resetstat()
    _, _, before = counters(r)
    times, sent = [], []

    def send(batch):
        times.append(time.monotonic())
        sent.append(batch)

    batches = [[i] for i in range(7)]
    partner.run_worker(r, "pace", batches, send, **PACE)
    paced(times, sent, batches, last=(0.95, 1.3))
    calls, failed, after = counters(r)
    eq((calls, failed), (7, 0), "RL.ALL calls, failed: one per batch, no polling")
    waits = delta(before, after)
    # Batches 4 and 7 wait a turn; 5 and 6 too when they come before the
    # units of batches 2 and 3 leave (a millisecond or two later).
    within(waits.pop("waits_started"), 2, 4, f"INFO ratelimit waits_started: {after}")
    eq(waits, {"waits_admitted": after["waits_admitted"] - before["waits_admitted"], "waits_timed_out": 0,
               "waits_cancelled": 0, "waits_refused": 0}, "INFO ratelimit: every wait admitted")
    eq(after["waits_admitted"] - before["waits_admitted"], after["waits_started"] - before["waits_started"],
       "INFO ratelimit: waits admitted = waits started")


@check("4 workers (threads sharing one client) on 3 per 0.5 s: served in turn, one RL.ALL per admission, RESP2 and RESP3")
def _():
    for protocol in (2, 3):
        r = waiting_client(protocol)  # its pool lends each waiting call a connection of its own
        name = f"fifo{protocol}"
        eq(partner.take(r, name, 3, **PACE)[0], 1, "3 calls at once: every worker starts in line")
        start = time.monotonic()
        r.config_resetstat()
        _, _, before = counters(r)
        admitted = []  # (time, worker)

        def worker(w):
            return lambda: partner.run_worker(
                r, name, [[w]] * 3, lambda b: admitted.append((time.monotonic(), w)), max_wait_s=10, **PACE)

        joins = [in_thread(worker(w)) for w in range(4)]
        for join in joins:
            join()
        admitted.sort()
        trace = [(round(t - start, 3), w) for t, w in admitted]
        eq(len(admitted), 12, f"RESP{protocol} admissions (seconds after the first 3 calls, worker): {trace}")
        # Turns: the 3 units free up together every 0.5 s and go to the first 3
        # in line, first come first served. Workers answered in the same turn
        # rejoin the line in the order their calls reach the server, so the
        # line guarantees: while at least 3 workers have batches left, a turn
        # admits 3 different workers, and no worker misses two turns in a row.
        turns = {}
        for t, w in trace:
            turns.setdefault(round(t / 0.5), []).append(w)
        eq(sorted(turns), [1, 2, 3, 4], f"RESP{protocol}: turns, at 0.5 s, 1 s, 1.5 s and 2 s: {trace}")
        left = [3] * 4
        for k in sorted(turns):
            eq(len(turns[k]), 3, f"RESP{protocol}: turn {k}'s admissions: {trace}")
            if sum(1 for n in left if n > 0) >= 3:
                eq(sorted(set(turns[k])), sorted(turns[k]), f"RESP{protocol}: turn {k}, a worker at most once: {trace}")
            for w in turns[k]:
                left[w] -= 1
        for k in (1, 2):
            served = set(turns[k]) | set(turns[k + 1])
            eq(sorted(served), [0, 1, 2, 3], f"RESP{protocol}: every worker served in turns {k} and {k + 1}: {trace}")
        calls, failed, after = counters(r)
        eq((calls, failed), (12, 0), f"RESP{protocol}: RL.ALL calls, failed: one per admission, no polling")
        waits = delta(before, after)
        # The last calls may find a unit free and nobody waiting: admitted at once.
        within(waits["waits_started"], 10, 12, f"RESP{protocol}: INFO ratelimit: calls that waited: {waits}")
        eq(waits, {"waits_started": waits["waits_started"], "waits_admitted": waits["waits_started"],
                   "waits_timed_out": 0, "waits_cancelled": 0, "waits_refused": 0},
           f"RESP{protocol}: INFO ratelimit: every call that waited in line got in")


@check("a call without BLOCK cannot jump the line: denied while a batch waits, its retry_after_ms counts the batch")
def _():
    r = waiting_client()
    limits = {"per_minute": 2, "minute_s": 1}
    eq(partner.take(r, "jump", **limits)[0], 1, "call 1")
    time.sleep(0.5)
    eq(partner.take(r, "jump", **limits)[0], 1, "call 2: the limit spent")
    t2 = time.monotonic()  # call 1's unit leaves within 0.5 s, call 2's within 1 s
    join = in_thread(lambda: (partner.take(r, "jump", 2, 5000, **limits), time.monotonic() - t2))
    wait_for("the batch of 2 waits in line", lambda: r.info("ratelimit")["ratelimit_waiters"] == 1)
    time.sleep(max(0.0, t2 + 0.7 - time.monotonic()))
    p0 = time.monotonic()
    reply = partner.take(r, "jump", **limits)  # call 1's unit is free, but the batch is first in line
    p1 = time.monotonic()
    waited, at = join()
    eq(reply[:3], [0, 2, 0], f"the call without BLOCK: {reply}")
    eq(waited[0], 1, f"the batch: {waited}")
    within(at, 0.9, 2, "the batch got in when call 2's unit left (s after call 2)")
    within(p1 - t2, 0.5, at, "the call without BLOCK came once call 1's unit left, and before the batch got in")
    # Its wait: the batch gets in when call 2's unit leaves, and holds both units 1 s.
    within(reply[3], (t2 + 2 - p1) * 1000 - 100, (t2 + 2 - p0) * 1000 + 1, f"its retry_after_ms: {reply}")


@check("run_worker gives up when its wait runs out (TimeoutError), after one RL.ALL, taking nothing")
def _():
    r = waiting_client()
    limits = {"per_minute": 1, "minute_s": 10}
    eq(partner.take(r, "late", **limits)[0], 1, "the one call of 10 s")
    r.config_resetstat()
    _, _, before = counters(r)
    sent = []
    start = time.monotonic()
    try:
        partner.run_worker(r, "late", [["x"]], sent.append, max_wait_s=0.3, **limits)
    except TimeoutError as e:
        eq(str(e), "a batch of 1 waited 0.3 s", "the error")
    else:
        raise AssertionError(f"no TimeoutError; sent {sent}")
    within(time.monotonic() - start, 0.3, 1, "gave up after")
    eq(sent, [], "sent")
    calls, _, after = counters(r)
    eq(calls, 1, "RL.ALL calls: one wait, no polling")
    eq(delta(before, after)["waits_timed_out"], 1, "INFO ratelimit waits_timed_out")
    peek = partner.take(r, "late", 0, **limits)
    eq(peek[:3], [1, 1, 0], f"a peek: still only the first call taken: {peek}")


@check("run_worker stops on retry_after_ms -1 (a batch above the limit) at once, and takes nothing for it")
def _():
    r = waiting_client()
    sent = []
    start = time.monotonic()
    try:
        partner.run_worker(r, "big", [["a"], ["b"] * 4, ["c"]], sent.append, **PACE)
    except ValueError as e:
        eq(str(e), "a batch of 4 exceeds limit 1 (3)", "the error")
    else:
        raise AssertionError(f"no ValueError; sent {sent}")
    within(time.monotonic() - start, 0, 1, "stopped after (BLOCK answers -1 at once, not after max_wait_s)")
    eq(sent, [["a"]], "sent before stopping")
    peek = partner.take(r, "big", 0, **PACE)
    eq(peek[:4], [1, 3, 2, 0], f"a peek after: only the first batch was taken: {peek}")
    eq(r.execute_command("RL.ALL", "COST", 4, "DRYRUN", "LIMIT", "{big}:minute", "SLIDING", 3, 0.5,
                         "LIMIT", "{big}:day", "FIXED", 500, "DAY", "TZ", "America/New_York")[3], -1,
       "retry_after_ms of the batch of 4")


def failover(admin):
    """REPLICAOF a port nothing listens on, and back, both at once (pipelined):
    the server is a replica for no time."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    pipe = admin.pipeline(transaction=False)
    pipe.execute_command("REPLICAOF", "127.0.0.1", dead)
    pipe.execute_command("REPLICAOF", "NO", "ONE")
    pipe.execute()


def kill_waiting(admin):
    """CLIENT KILL the connection that waits (flags=b): a connection lost."""
    ids = [re.search(r"\bid=(\d+)", line).group(1) for line in admin.execute_command("CLIENT", "LIST").split("\n")
           if re.search(r"\bflags=\w*b", line)]
    eq(len(ids), 1, "connections waiting")
    admin.execute_command("CLIENT", "KILL", "ID", ids[0])


@check("a failover (REPLICAOF and back) ends the wait with UNBLOCKED, a lost connection with ConnectionError: "
       "run_worker asks again, gets in, one unit taken")
def _():
    admin = redis.Redis.from_url(URL, decode_responses=True)
    for name, interrupt, first in (("fo", failover, "UNBLOCKED"), ("kill", kill_waiting, "ConnectionError")):
        r = waiting_client()
        limits = {"per_minute": 2, "minute_s": 0.5}
        eq(partner.take(r, name, 2, **limits)[0], 1, "2 calls: the second's limit spent")
        admin.config_resetstat()
        _, _, before = counters(admin)
        sent, seen = [], Seen(r)
        start = time.monotonic()
        join = in_thread(lambda: partner.run_worker(seen, name, [["x"]], sent.append, max_wait_s=10, **limits))
        wait_for("the worker waits in line", lambda: admin.info("ratelimit")["ratelimit_waiters"] == 1)
        interrupt(admin)
        join()
        eq(sent, [["x"]], f"{name}: sent")
        # After UNBLOCKED, a call sent before the connection was seen closing gets a ConnectionError.
        names = [type(e).__name__ if isinstance(e, redis.ConnectionError) else str(e).split(" ")[0] for e in seen.errors]
        if not names or names[0] != first or any(n != "ConnectionError" for n in names[1:]):
            raise AssertionError(f"{name}: errors that reached run_worker, {first} first: {seen.errors!r}")
        print(f"# {name}: errors that reached run_worker: {', '.join(names)}")
        within(time.monotonic() - start, 0.4, 1.5, f"{name}: admitted when the window let it in")
        calls, _, after = counters(admin)
        eq(calls, 2, f"{name}: RL.ALL calls: the one interrupted, the one asked again")
        eq(delta(before, after), {"waits_started": 2, "waits_admitted": 1, "waits_timed_out": 0,
                                  "waits_cancelled": 1, "waits_refused": 0}, f"{name}: INFO ratelimit")
        peek = partner.take(r, name, 0, **limits)
        eq(peek[:3], [1, 2, 1], f"{name}: a peek: one unit in the window, the worker's: {peek}")


@check("a slot that moves while the worker waits: TRYAGAIN, RedisCluster asks again at the new node, run_worker gets in")
def _():
    rc = RedisCluster.from_url(CLUSTER_URL, socket_timeout=30)
    limits = {"per_minute": 2, "minute_s": 1}
    keys = ["{mv}:minute", "{mv}:day"]
    slot = rc.keyslot(keys[0])
    src = rc.get_node_from_key(keys[0])
    dst = next(n for n in rc.get_primaries() if n.name != src.name)
    conn = {n.name: redis.Redis(host=n.host, port=n.port) for n in rc.get_primaries()}
    ids = {name: c.execute_command("CLUSTER", "MYID").decode() for name, c in conn.items()}

    def owner_everywhere(node):
        return all(any(lo <= slot <= hi and owner[1] == node.port
                       for lo, hi, owner, *_ in c.execute_command("CLUSTER", "SLOTS")) for c in conn.values())

    def move(frm, to, keys=()):
        conn[to.name].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[frm.name])
        conn[frm.name].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to.name])
        if keys:
            conn[frm.name].execute_command("MIGRATE", to.host, to.port, "", 0, 5000, "KEYS", *keys)
        for name in (to.name, frm.name):
            conn[name].execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[to.name])
        wait_for(f"every node sees slot {slot} on {to.name}", lambda: owner_everywhere(to))

    def tryagains():
        return conn[src.name].info("errorstats").get("errorstat_TRYAGAIN", {}).get("count", 0)

    eq((owner_everywhere(src), owner_everywhere(dst)), (True, False), f"slot {slot} on {src.name}, as every node says")
    eq(partner.take(rc, "mv", 2, **limits)[0], 1, "2 calls: the second's limit spent")
    sent, seen = [], Seen(rc)
    start = time.monotonic()
    join = in_thread(lambda: partner.run_worker(seen, "mv", [["x"]], sent.append, max_wait_s=10, **limits))
    try:
        wait_for("the worker waits in line", lambda: conn[src.name].info("ratelimit")["ratelimit_waiters"] == 1)
        before = conn[src.name].info("ratelimit")["ratelimit_waits_cancelled"], tryagains()
        move(src, dst, keys)
        join()
        eq(sent, [["x"]], "sent")
        eq((conn[src.name].info("ratelimit")["ratelimit_waits_cancelled"] - before[0], tryagains() - before[1]),
           (1, 1), "waits cancelled on the old node, TRYAGAIN replies there")
        eq(seen.errors, [], "errors that reached run_worker: RedisCluster retried the TRYAGAIN itself")
        within(time.monotonic() - start, 0.85, 3, "admitted when the window let it in")
        peek = conn[dst.name].execute_command("RL.SLIDING", keys[0], 2, 1, "COST", 0)
        eq(peek[:3], [1, 2, 1], f"a peek on the new node: one unit in the window, the worker's: {peek}")
    finally:
        try:
            join()
        except BaseException:  # noqa: BLE001 - already reported above
            pass
        conn[dst.name].delete(*keys)
        move(dst, src)  # back where it was, for the tests after this one


@check("redis-py 8.1's timeouts: 5 s socket_timeout by default (Redis() resends 10 times), a shorter one ends the wait")
def _():
    for what, r, retries in (("Redis.from_url", redis.Redis.from_url(URL), 0),
                             ("Redis(host, port)", redis.Redis(host="127.0.0.1", port=int(URL.rsplit(":", 1)[1])), 10)):
        c = r.connection_pool.get_connection()
        try:
            eq((c.socket_timeout, c.retry.get_retries()), (5, retries), f"{what}: socket_timeout, retries")
        finally:
            r.connection_pool.release(c)
    admin = client()
    short = redis.Redis.from_url(URL, socket_timeout=0.3)
    limits = {"per_minute": 1, "minute_s": 10}
    eq(partner.take(short, "short", **limits)[0], 1, "the one call of 10 s")
    _, _, before = counters(admin)
    start = time.monotonic()
    try:
        partner.take(short, "short", 1, 1000, **limits)
    except redis.TimeoutError:
        within(time.monotonic() - start, 0.29, 1, "TimeoutError after")
    else:
        raise AssertionError("no TimeoutError")
    wait_for("the server drops the request", lambda: admin.info("ratelimit")["ratelimit_waiters"] == 0)
    eq(delta(before, counters(admin)[2])["waits_cancelled"], 1, "INFO ratelimit waits_cancelled")


class WithoutBlock:
    """The server as a module without BLOCK answers run_worker: BLOCK is an
    unknown option there, so it is sent as one here (the module answers
    `ERR syntax error` from the same place), moved to the end: an unknown
    first word would start RL.ALL's first-key form."""

    def __init__(self, r):
        self.r = r

    def execute_command(self, *args):
        args = list(args)
        if "BLOCK" in args:
            i = args.index("BLOCK")
            args += ["NOBLOCK", args[i + 1]]
            del args[i:i + 2]
        return self.r.execute_command(*args)


@check("a module without BLOCK (ERR syntax error): run_worker polls instead, paced as before")
def _():
    r = waiting_client()
    r.config_resetstat()
    _, _, before = counters(r)
    times, sent = [], []

    def send(batch):
        times.append(time.monotonic())
        sent.append(batch)

    batches = [[i] for i in range(7)]
    partner.run_worker(WithoutBlock(r), "old", batches, send, **PACE)
    paced(times, sent, batches)  # two sleeps of up to 0.5 s, jitter at most 0.05 each
    calls, failed, after = counters(r)
    eq(failed, 1, "RL.ALL calls failed: the first, with BLOCK")
    within(calls, 1 + 7 + 2, 1 + 7 + 10, "RL.ALL calls: the failed one, 7 allowed, a few denied (polls)")
    eq(delta(before, after)["waits_started"], 0, "INFO ratelimit waits_started")


finish()
