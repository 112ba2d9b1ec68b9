"""cluster.py: RedisCluster routes RL.* by key, RL.ALL through COMMAND GETKEYS."""

import redis
from harness import CLUSTER_URL, check, eq, finish, load, printed, same_reply
from redis.cluster import RedisCluster


def nodes():
    return [redis.Redis(host=n.host, port=n.port) for n in RedisCluster.from_url(CLUSTER_URL).get_nodes()]


def stat(section, name, field):
    """INFO <section>'s <name>:<field>=N summed over the nodes."""
    return sum(n.info(section).get(name, {}).get(field, 0) for n in nodes())


@check("cluster.py prints what its comments say, each call sent to its key's node")
def _():
    before = stat("commandstats", "cmdstat_command|getkeys", "calls")
    _, out = load("cluster.py")
    eq(out.splitlines(), printed("cluster.py"), "cluster.py's output")
    eq(stat("errorstats", "errorstat_MOVED", "count"), 0, "MOVED replies (a call sent to the wrong node)")
    eq(stat("errorstats", "errorstat_CROSSSLOT", "count"), 0, "CROSSSLOT replies (redis-py refuses before sending)")
    eq(stat("commandstats", "cmdstat_command|getkeys", "calls") - before, 3,
       "COMMAND GETKEYS calls: 2 for the RL.ALL, 0 with target_nodes, 1 before refusing two slots")


@check("COMMAND GETKEYS: twice before each RL.ALL, never with target_nodes, never for one key")
def _():
    rc = RedisCluster.from_url(CLUSTER_URL)
    args = ("RL.ALL", "LIMIT", "{gk}:m", "SLIDING", 10, 60, "LIMIT", "{gk}:d", "FIXED", 5, "DAY")
    counts = []
    for call in (lambda: rc.execute_command(*args),
                 lambda: rc.execute_command(*args, target_nodes=rc.get_node_from_key("{gk}:m")),
                 lambda: rc.execute_command("RL.SLIDING", "gk", 10, 60)):
        before = stat("commandstats", "cmdstat_command|getkeys", "calls")
        call()
        counts.append(stat("commandstats", "cmdstat_command|getkeys", "calls") - before)
    eq(counts, [2, 0, 0], "COMMAND GETKEYS calls for RL.ALL, RL.ALL with target_nodes, RL.SLIDING")


@check("RESP2 cluster connections: the same replies")
def _():
    for protocol in (2, 3):
        rc = RedisCluster.from_url(CLUSTER_URL, protocol=protocol)
        got = [rc.execute_command("RL.SLIDING", f"user:{protocol}:{i}", 10, 60) for i in range(20)]
        got.append(rc.execute_command("RL.ALL", "LIMIT", f"{{p{protocol}}}:m", "SLIDING", 1, 60,
                                      "LIMIT", f"{{p{protocol}}}:d", "FIXED", 5, "DAY"))
        got.append(rc.execute_command("RL.ALL", "LIMIT", f"{{p{protocol}}}:m", "SLIDING", 1, 60,
                                      "LIMIT", f"{{p{protocol}}}:d", "FIXED", 5, "DAY"))
        if protocol == 2:
            resp2 = got
    for i, (a, b) in enumerate(zip(resp2, got)):
        same_reply(a, b, f"call {i + 1}")
    eq(got[-1][:3] + got[-1][5:], [0, 1, 0, 1], f"the second RL.ALL is denied by the minute: {got[-1]}")


finish()
