"""gateway.py: an AI gateway reserves an estimate and settles the actual
count (RL.ALL ... ESTIMATE, RL.SETTLE): debt, give-back, expiry, twice."""

import time

from harness import CLUSTER_URL, check, client, eq, finish, load, printed, run_script, within
from redis.cluster import RedisCluster

gateway, _ = load("gateway.py")
SMALL = dict(gateway.LIMITS, tpm=1000, tpd=5000)  # seconds of debt, a day's count exact


def model(used):
    return lambda prompt: ("answer", used)


@check("gateway.py prints what its comments say")
def _():
    eq(run_script("gateway.py").splitlines(), printed("gateway.py"), "gateway.py's output")


@check("above the estimate: the key is in debt, the next reservation is denied with retry_after > 0")
def _():
    r = client()
    answer, settled = gateway.call_model(r, "debt", "p", 100, model(1500), SMALL)
    eq(answer, "answer", "the answer")
    eq(settled[:3], [1, 1000, 0], "settlement: settled, the tpm's limit, remaining 0")
    within(settled[3], 20_000, 60_000, "settlement: retry_after_ms (500 tokens of debt + 1 at 60 ms each)")
    eq(settled[5], 1, "settlement: the binding key, 1st after the anchor (tpm)")
    answer, denied = gateway.call_model(r, "debt", "p", 0, model(0), SMALL)
    eq(answer, None, "no answer while in debt")
    eq([denied[0], denied[1], denied[2], denied[5], denied[6]], [0, 1000, 0, 2, 0],
       f"denied by the tpm (2nd limit), remaining 0, no lease: {denied}")
    within(denied[3], 20_000, 60_000, "denial: retry_after_ms")
    eq(int(r.execute_command("RL.ACQUIRE", "{debt}:inflight", 10, 120, "DRYRUN")[2]), 9,
       "in flight after the settlement: none (9 left for one more)")


@check("below the estimate: the unused tokens come back (the day's count is exact)")
def _():
    r = client()
    _, settled = gateway.call_model(r, "back", "p", 4000, model(300), dict(SMALL, tpm=100_000))
    eq(settled[:3], [1, 5000, 4699], "settlement: the day's 5000 less 300, less one token")
    _, again = gateway.call_model(r, "back", "p", 4600, model(4600), dict(SMALL, tpm=100_000))
    eq(again[:3], [1, 5000, 99], "4600 more fit because 3700 came back")


@check("an exception in the model: settled at the estimate, the slot freed")
def _():
    r = client()

    def boom(prompt):
        raise RuntimeError("model down")

    try:
        gateway.call_model(r, "boom", "p", 700, boom, dict(SMALL, tpm=100_000))
        raise AssertionError("the exception was swallowed")
    except RuntimeError as e:
        eq(str(e), "model down", "the model's exception")
    _, settled = gateway.call_model(r, "boom", "p", 0, model(0), dict(SMALL, tpm=100_000, in_flight=1))
    eq(settled[:3], [1, 5000, 4299], "700 charged (the estimate), the one slot free again")


@check("a forgotten reservation ends with its lease, settled at its estimate; settling twice answers 0")
def _():
    r = client()
    limits = dict(SMALL, in_flight=1, lease_s=1, tpm=100_000)
    reply = gateway.reserve(r, "lost", 1200, **limits)
    eq(reply[0], 1, f"reserved: {reply}")
    full = gateway.reserve(r, "lost", 0, **limits)
    eq(full[:3] + full[5:], [0, 1, 0, 1, 0], f"the one slot is taken: {full}")
    time.sleep(1.3)  # the lease (1 s) ends: the gateway "died"
    eq(gateway.settle(r, "lost", reply[6], 10), [0, 0, 0, 0, 0, 0], "a settlement after the lease")
    lease2 = gateway.reserve(r, "lost", 0, **limits)
    eq(lease2[0], 1, f"the slot came back: {lease2}")
    settled = gateway.settle(r, "lost", lease2[6], 0)
    eq(settled[:3], [1, 5000, 3799], "the day kept the 1200 estimate (5000 - 1200 - 1)")
    eq(gateway.settle(r, "lost", lease2[6], 0), [0, 0, 0, 0, 0, 0], "settling twice")


@check("in a cluster: the keys share a slot, RL.ALL and RL.SETTLE go to its node (no MOVED)")
def _():
    import redis

    rc = RedisCluster.from_url(CLUSTER_URL)
    nodes = [redis.Redis(host=n.host, port=n.port) for n in rc.get_nodes()]
    moved = lambda: sum(n.info("errorstats").get("errorstat_MOVED", {}).get("count", 0) for n in nodes)  # noqa: E731
    before = moved()
    _, settled = gateway.call_model(rc, "ckey", "p", 100, model(1500), SMALL)
    eq(settled[:3], [1, 1000, 0], f"in debt: {settled}")
    _, denied = gateway.call_model(rc, "ckey", "p", 1, model(1), SMALL)
    eq(denied[0], 0, f"denied: {denied}")
    if denied[3] <= 0:
        raise AssertionError(f"retry_after_ms {denied[3]}")
    eq(moved() - before, 0, "MOVED replies")


finish()
