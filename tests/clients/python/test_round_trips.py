"""Round trips per decision from redis-py's RedisCluster, counted by the
servers (roundtrips.py): one for RL.SLIDING, RL.TAKE, and RL.ALL sent as
CLIENTS.md shows (target_nodes= its first key's node); three for an RL.ALL
without target_nodes (redis-py asks COMMAND GETKEYS twice: its keys are
movable)."""

import redis
from harness import CLUSTER_URL, PY_REDIS, check, eq, finish
from redis.cluster import RedisCluster
from roundtrips import NODES, counts, report

WARM_UP, DECISIONS = 20, 100
CLIENT = f"redis-py {PY_REDIS} RedisCluster"

rc = RedisCluster.from_url(CLUSTER_URL)
for host, port in NODES:  # RL.TAKE's policy, on every primary
    redis.Redis(host=host, port=port).execute_command("RL.POLICY", "SET", "rt-py", "SLIDING", 1000, 60)


def measure(command, call, how, expect=1):
    for i in range(WARM_UP):
        call(f"{{rt-py-warm:{command}:{i}}}")
    before = counts(command)
    for i in range(DECISIONS):
        call(f"{{rt-py:{command}:{i}}}")
    after = counts(command)
    eq(report(CLIENT, command, DECISIONS, before, after, how, expect), expect, f"{command}: round trips per decision")


def rl_all(tag, **kw):
    return rc.execute_command("RL.ALL", f"{tag}:m", "SLIDING", 1000, 60,
                              "LIMIT", f"{tag}:d", "FIXED", 5000, "DAY", **kw)


@check("RL.SLIDING: one round trip per decision")
def _():
    measure("RL.SLIDING", lambda k: rc.execute_command("RL.SLIDING", k, 1000, 60),
            'rc.execute_command("RL.SLIDING", key, ...)')


@check("RL.ALL with target_nodes=rc.get_node_from_key(first key): one round trip per decision")
def _():
    measure("RL.ALL", lambda t: rl_all(t, target_nodes=rc.get_node_from_key(f"{t}:m")),
            "execute_command(..., target_nodes=rc.get_node_from_key(first_key))")


@check("RL.ALL without target_nodes: three (COMMAND GETKEYS twice, the keys being movable)")
def _():
    measure("RL.ALL", rl_all, "execute_command without target_nodes (not the recipe)", expect=3)


@check("RL.TAKE: one round trip per decision")
def _():
    measure("RL.TAKE", lambda k: rc.execute_command("RL.TAKE", k, "rt-py"),
            'rc.execute_command("RL.TAKE", key, policy)')


finish()
