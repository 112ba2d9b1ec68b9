"""glide_partner.py: the exact RL.ALL it sends (first-key form, BLOCK), the
worker loop on a client that only waits, paced by waiting in line; why the
waiting client is a dedicated one with a request timeout above the wait (a
call behind a waiting one waits too; a timeout shorter than the wait leaves
a waiter that is admitted for nobody); a failover and a lost connection
end the wait and run_worker gets in after asking again."""

import asyncio
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from glide import GlideClient, GlideClientConfiguration, NodeAddress  # noqa: E402
from glide import TimeoutError as GlideTimeout  # noqa: E402
from harness import URL, check, eq, finish, load, within  # noqa: E402

partner, _ = load("glide_partner.py")
HOST, PORT = URL.removeprefix("redis://").rsplit(":", 1)
ADDRESS = NodeAddress(HOST, int(PORT))
PACE = {"per_minute": 3, "minute_s": 0.5}  # 3 per 0.5 s: the small limit the loops share


def admin(*args):
    """One command over a fresh RESP2 connection; the reply's first line or bulk."""
    with socket.create_connection((HOST, int(PORT)), timeout=5) as s:
        s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(str(a)), str(a).encode()) for a in args))
        f = s.makefile("rb")
        line = f.readline()
        if line.startswith(b"$"):
            return f.read(int(line[1:]) + 2)[:-2].decode()
        return line.decode().strip()


def info(section, field):
    m = re.search(rf"^{field}:(\d+)", admin("INFO", section), re.M)
    return int(m.group(1)) if m else 0


def all_calls():
    m = re.search(r"^cmdstat_rl\.all:calls=(\d+)", admin("INFO", "commandstats"), re.M | re.I)
    return int(m.group(1)) if m else 0


class Seen:
    """A client, noting the errors that reach run_worker through it."""

    def __init__(self, client):
        self.client, self.errors = client, []

    async def custom_command(self, args):
        try:
            return await self.client.custom_command(args)
        except Exception as e:
            self.errors.append(f"{type(e).__name__}: {e}")
            raise


class Recorder:
    def __init__(self):
        self.sent = []

    async def custom_command(self, args):
        self.sent.append(args)
        return [1, 10, 9, 0, 60000, 1]


@check("take sends the seed RL.ALL in its first-key form, COST in each limit, BLOCK last")
def _():
    r = Recorder()
    asyncio.run(partner.take(r, "partner", 2, 1500))
    eq(r.sent, [["RL.ALL", "{partner}:minute", "SLIDING", "10", "60", "COST", "2",
                 "LIMIT", "{partner}:day", "FIXED", "500", "DAY", "TZ", "America/New_York", "COST", "2",
                 "BLOCK", "1500"]], "the words sent")


@check("waiting_client's request timeout is the wait plus a second")
def _():
    async def go():
        c = await partner.waiting_client(2.5, ADDRESS)
        try:
            # A 2.5 s wait answered by the server (denied when it ran out), not by a client timeout.
            # The window is spent under the same 60 s limit: spent under a 0.5 s one, the key
            # would expire with its units, and the waiter be admitted at once (a key's value
            # gone re-checks its line).
            eq((await partner.take(c, "to", 3, per_minute=3, minute_s=60))[0], 1, "the window spent")
            t = time.monotonic()
            reply = await partner.take(c, "to", 3, 2500, per_minute=3, minute_s=60)
            within(time.monotonic() - t, 2.4, 3.4, "answered when the wait ran out")
            eq(reply[0], 0, f"denied at the end of the wait: {reply}")
        finally:
            await c.close()
    asyncio.run(go())


@check("run_worker, 3 per 0.5 s: 7 batches paced by waiting in line, one RL.ALL each, in about 1 s")
def _():
    async def go():
        c = await partner.waiting_client(10, ADDRESS)
        try:
            sent = []
            before = all_calls()
            t = time.monotonic()
            await partner.run_worker(c, "pace", [["x"]] * 7, sent.append, max_wait_s=10, **PACE)
            within(time.monotonic() - t, 0.9, 1.6, "7 calls at 3 per 0.5 s")
            eq(len(sent), 7, "batches sent")
            eq(all_calls() - before, 7, "RL.ALL calls: one per admission")
        finally:
            await c.close()
    asyncio.run(go())


@check("one multiplexed connection: a call behind a waiting one on the same client waits for it; "
       "on another client it does not")
def _():
    async def go():
        waiting = await partner.waiting_client(5, ADDRESS)
        other = await GlideClient.create(GlideClientConfiguration([ADDRESS]))
        try:
            eq((await partner.take(waiting, "mux", 3, **PACE))[0], 1, "the window spent")
            wait = asyncio.create_task(partner.take(waiting, "mux", 1, 3000, **PACE))
            await asyncio.sleep(0.05)
            t = time.monotonic()
            await other.custom_command(["PING"])
            other_s = time.monotonic() - t
            t = time.monotonic()
            await waiting.custom_command(["PING"])
            same_s = time.monotonic() - t
            eq((await wait)[0], 1, "the waiting call admitted")
            within(other_s, 0, 0.1, "PING on another client")
            within(same_s, 0.3, 1, "PING behind the waiting call (admitted about 0.45 s later)")
        finally:
            await waiting.close()
            await other.close()
    asyncio.run(go())


@check("a request timeout shorter than BLOCK: TimeoutError, and the server admits the waiter later, for nobody")
def _():
    async def go():
        short = await GlideClient.create(GlideClientConfiguration([ADDRESS]))  # 250 ms by default
        try:
            eq((await partner.take(short, "short", 3, **PACE))[0], 1, "the window spent")
            admitted = info("ratelimit", "ratelimit_waits_admitted")
            try:
                await partner.take(short, "short", 1, 2000, **PACE)
                raise AssertionError("no TimeoutError")
            except GlideTimeout:
                pass
            await asyncio.sleep(0.6)
            eq(info("ratelimit", "ratelimit_waits_admitted") - admitted, 1, "waits admitted after the timeout")
            peek = await partner.take(short, "short", 0, **PACE)
            eq(peek[2], 2, f"remaining: the unit went to the request no one waits for: {peek}")
        finally:
            await short.close()
    asyncio.run(go())


def failover():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    admin("REPLICAOF", "127.0.0.1", dead)
    admin("REPLICAOF", "NO", "ONE")


def kill_waiting():
    ids = [re.search(r"\bid=(\d+)", line).group(1) for line in admin("CLIENT", "LIST").split("\n")
           if re.search(r"\bflags=\w*b", line)]
    eq(len(ids), 1, "connections waiting")
    admin("CLIENT", "KILL", "ID", ids[0])


@check("a failover (REPLICAOF and back) and a lost connection end the wait: run_worker asks again, gets in")
def _():
    for name, interrupt in (("fo", failover), ("kill", kill_waiting)):
        async def go():
            c = await partner.waiting_client(10, ADDRESS)
            try:
                limits = {"per_minute": 2, "minute_s": 0.5}
                eq((await partner.take(c, name, 2, **limits))[0], 1, f"{name}: the window spent")
                sent = []
                t = time.monotonic()
                seen = Seen(c)
                work = asyncio.create_task(partner.run_worker(seen, name, [["x"]], sent.append, max_wait_s=10, **limits))
                deadline = time.monotonic() + 5
                while info("ratelimit", "ratelimit_waiters") != 1:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{name}: the worker never waited")
                    await asyncio.sleep(0.01)
                interrupt()
                await asyncio.wait_for(work, 10)
                eq(sent, [["x"]], f"{name}: sent")
                print(f"# {name}: errors that reached run_worker: {seen.errors}")
                if not seen.errors:
                    raise AssertionError(f"{name}: the wait ended without an error")
                within(time.monotonic() - t, 0.3, 2, f"{name}: admitted when the window let it in")
                peek = await partner.take(c, name, 0, **limits)
                eq(peek[:3], [1, 2, 1], f"{name}: a peek: one unit in the window, the worker's: {peek}")
            finally:
                await c.close()
        asyncio.run(go())


def resp(port, *args):
    """One command to a cluster node over a fresh RESP2 connection, parsed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(str(a)), str(a).encode()) for a in args))
        f = s.makefile("rb")

        def read():
            line = f.readline()
            kind, rest = line[:1], line[1:-2]
            if kind == b"+":
                return rest.decode()
            if kind == b"-":
                raise RuntimeError(rest.decode())
            if kind == b":":
                return int(rest)
            if kind == b"$":
                return None if int(rest) < 0 else f.read(int(rest) + 2)[:-2].decode()
            return None if int(rest) < 0 else [read() for _ in range(int(rest))]

        return read()


@check("a slot that moves while the worker waits (cluster): GLIDE asks again at the new node itself, run_worker gets in")
def _():
    from glide import GlideClusterClient, GlideClusterClientConfiguration

    ports = [int(u.rsplit(":", 1)[1]) for u in os.environ["RL_CLUSTER_NODES"].split(",")]
    keys = ["{mv}:minute", "{mv}:day"]
    slot = resp(ports[0], "CLUSTER", "KEYSLOT", keys[0])
    ids = {p: resp(p, "CLUSTER", "MYID") for p in ports}

    def owner(port):
        return next(o[1] for lo, hi, o, *_ in resp(port, "CLUSTER", "SLOTS") if lo <= slot <= hi)

    src = owner(ports[0])
    dst = next(p for p in ports if p != src)

    def move(frm, to, keys=()):
        resp(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[frm])
        resp(frm, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to])
        if keys:
            resp(frm, "MIGRATE", "127.0.0.1", to, "", 0, 5000, "KEYS", *keys)
        for p in (to, frm):
            resp(p, "CLUSTER", "SETSLOT", slot, "NODE", ids[to])
        deadline = time.monotonic() + 10
        while not all(owner(p) == to for p in ports):
            if time.monotonic() > deadline:
                raise AssertionError(f"slot {slot} never moved to {to} on every node")
            time.sleep(0.02)

    def waiters(port):
        return int(re.search(r"^ratelimit_waiters:(\d+)", resp(port, "INFO", "ratelimit"), re.M).group(1))

    async def go():
        limits = {"per_minute": 2, "minute_s": 1}
        config = GlideClusterClientConfiguration([NodeAddress("127.0.0.1", ports[0])], request_timeout=11000)
        c = await GlideClusterClient.create(config)
        try:
            eq((await partner.take(c, "mv", 2, **limits))[0], 1, "2 calls: the second's limit spent")
            sent = []
            t = time.monotonic()
            seen = Seen(c)
            work = asyncio.create_task(partner.run_worker(seen, "mv", [["x"]], sent.append, max_wait_s=10, **limits))
            deadline = time.monotonic() + 5
            while waiters(src) != 1:
                if time.monotonic() > deadline:
                    raise AssertionError("the worker never waited")
                await asyncio.sleep(0.01)
            await asyncio.to_thread(move, src, dst, keys)
            await asyncio.wait_for(work, 10)
            eq(sent, [["x"]], "sent")
            eq(seen.errors, [], "errors that reached run_worker: GLIDE asked again itself, at the new node")
            within(time.monotonic() - t, 0.85, 3, "admitted when the window let it in")
            peek = resp(dst, "RL.SLIDING", keys[0], 2, 1, "COST", 0)
            eq(peek[:3], [1, 2, 1], f"a peek on the new node: one unit in the window, the worker's: {peek}")
        finally:
            await c.close()

    try:
        asyncio.run(go())
    finally:
        resp(dst, "DEL", *keys)
        move(dst, src)  # back where it was


finish()
