"""glide_gateway.py: an AI gateway reserves an estimate and settles the
actual count through Valkey GLIDE (RL.ALL ... ESTIMATE, RL.SETTLE): debt,
give-back, expiry, twice, the same as redis-py's gateway.py."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from harness import CLUSTER_URL, URL, check, eq, finish, load, printed, run_script, within  # noqa: E402
from roundtrips import counts  # noqa: E402

gateway, _ = load("glide_gateway.py")
from glide import (GlideClient, GlideClientConfiguration, GlideClusterClient,  # noqa: E402
                   GlideClusterClientConfiguration, NodeAddress)

SMALL = dict(gateway.LIMITS, tpm=1000, tpd=5000)  # seconds of debt, a day's count exact
WIDE = dict(SMALL, tpm=100_000)  # the day binds
model = lambda used: gateway.usage("answer", used)  # noqa: E731


def address(url):
    host, port = url.removeprefix("redis://").rsplit(":", 1)
    return NodeAddress(host, int(port))


def run(fn):
    """Runs `fn(client)` on a fresh GlideClient."""

    async def go():
        client = await GlideClient.create(GlideClientConfiguration([address(URL)]))
        try:
            await fn(client)
        finally:
            await client.close()

    asyncio.run(go())


@check("glide_gateway.py prints what its comments say")
def _():
    out = [line for line in run_script("glide_gateway.py").splitlines() if "logger_core" not in line]
    eq(out, printed("glide_gateway.py"), "glide_gateway.py's output")


@check("above the estimate: the key is in debt, the next reservation is denied with retry_after > 0")
def _():
    async def fn(c):
        answer, settled = await gateway.call_model(c, "debt", "p", 100, model(1500), SMALL)
        eq(answer, "answer", "the answer")
        eq(settled[:3], [1, 1000, 0], "settlement: settled, the tpm's limit, remaining 0")
        within(settled[3], 20_000, 60_000, "settlement: retry_after_ms (500 tokens of debt + 1 at 60 ms each)")
        eq(settled[5], 1, "settlement: the binding key, 1st after the anchor (tpm)")
        answer, denied = await gateway.call_model(c, "debt", "p", 0, model(0), SMALL)
        eq(answer, None, "no answer while in debt")
        eq([denied[0], denied[1], denied[2], denied[5], denied[6]], [0, 1000, 0, 2, 0],
           f"denied by the tpm (2nd limit), remaining 0, no lease: {denied}")
        within(denied[3], 20_000, 60_000, "denial: retry_after_ms")

    run(fn)


@check("below the estimate: the unused tokens come back (the day's count is exact)")
def _():
    async def fn(c):
        _, settled = await gateway.call_model(c, "back", "p", 4000, model(300), WIDE)
        eq(settled[:3], [1, 5000, 4699], "settlement: the day's 5000 less 300, less one token")
        _, again = await gateway.call_model(c, "back", "p", 4600, model(4600), WIDE)
        eq(again[:3], [1, 5000, 99], "4600 more fit because 3700 came back")

    run(fn)


@check("an exception in the model: settled at the estimate, the slot freed")
def _():
    async def boom(prompt):
        raise RuntimeError("model down")

    async def fn(c):
        try:
            await gateway.call_model(c, "boom", "p", 700, boom, WIDE)
            raise AssertionError("the exception was swallowed")
        except RuntimeError as e:
            eq(str(e), "model down", "the model's exception")
        _, settled = await gateway.call_model(c, "boom", "p", 0, model(0), dict(WIDE, in_flight=1))
        eq(settled[:3], [1, 5000, 4299], "700 charged (the estimate), the one slot free again")

    run(fn)


@check("a forgotten reservation ends with its lease, settled at its estimate; settling twice answers 0")
def _():
    async def fn(c):
        limits = dict(WIDE, in_flight=1, lease_s=1)
        first = await gateway.reserve(c, "lost", 1200, **limits)
        eq(first[0], 1, f"reserved: {first}")
        full = await gateway.reserve(c, "lost", 0, **limits)
        eq(full[:3] + full[5:], [0, 1, 0, 1, 0], f"the one slot is taken: {full}")
        await asyncio.sleep(1.3)  # the lease (1 s) ends: the gateway "died"
        eq(await gateway.settle(c, "lost", first[6], 10), [0, 0, 0, 0, 0, 0], "a settlement after the lease")
        second = await gateway.reserve(c, "lost", 0, **limits)
        eq(second[0], 1, f"the slot came back: {second}")
        settled = await gateway.settle(c, "lost", second[6], 0)
        eq(settled[:3], [1, 5000, 3799], "the day kept the 1200 estimate (5000 - 1200 - 1)")
        eq(await gateway.settle(c, "lost", second[6], 0), [0, 0, 0, 0, 0, 0], "settling twice")

    run(fn)


@check("in a cluster: RL.ALL and RL.SETTLE sent to the anchor's node (no MOVED)")
def _():
    async def fn():
        cluster = await GlideClusterClient.create(GlideClusterClientConfiguration([address(CLUSTER_URL)]))
        try:
            _, settled = await gateway.call_model(cluster, "ckey", "p", 100, model(1500), SMALL)
            eq(settled[:3], [1, 1000, 0], f"in debt: {settled}")
            _, denied = await gateway.call_model(cluster, "ckey", "p", 1, model(1), SMALL)
            eq(denied[0], 0, f"denied: {denied}")
            within(denied[3], 1, 60_000, "denial: retry_after_ms")
        finally:
            await cluster.close()

    before = {c: counts(c) for c in ("RL.ALL", "RL.SETTLE")}
    asyncio.run(fn())
    for c in ("RL.ALL", "RL.SETTLE"):
        after = counts(c)
        eq((after["moved"] - before[c]["moved"], after["ask"] - before[c]["ask"]), (0, 0), f"{c}: MOVED and ASK replies")
        eq(after["calls"] - before[c]["calls"], 2 if c == "RL.ALL" else 1, f"{c} calls on the nodes")


finish()
