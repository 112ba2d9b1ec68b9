"""Round trips per decision from Valkey GLIDE (Python, GlideClusterClient),
counted by the servers (../python/roundtrips.py). GLIDE routes a command it
does not know by its first argument: one round trip for RL.SLIDING, RL.TAKE
and RL.ALL in its first-key form; the keyword form (`RL.ALL LIMIT ...`) is
hashed by the word LIMIT and redirected (MOVED) for two keys in three."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from glide import GlideClusterClient, GlideClusterClientConfiguration, NodeAddress  # noqa: E402
from harness import check, eq, finish, within  # noqa: E402
from roundtrips import NODES, counts, report  # noqa: E402

WARM_UP, DECISIONS = 20, 100
CLIENT = f"Valkey GLIDE {os.environ['RL_GLIDE']} (Python) GlideClusterClient"


async def measure(command, call, how, expect=1):
    config = GlideClusterClientConfiguration([NodeAddress(h, p) for h, p in NODES[:1]], request_timeout=2000)
    c = await GlideClusterClient.create(config)
    try:
        for i in range(WARM_UP):
            await c.custom_command(call(f"{{rt-glide-warm:{command}:{i}}}"))
        before = counts(command)
        for i in range(DECISIONS):
            await c.custom_command(call(f"{{rt-glide:{command}:{i}}}"))
        after = counts(command)
    finally:
        await c.close()
    return report(CLIENT, command, DECISIONS, before, after, how, expect)


def policy_everywhere():
    import socket
    for host, port in NODES:
        with socket.create_connection((host, port), timeout=5) as s:
            words = [b"RL.POLICY", b"SET", b"rt-glide", b"SLIDING", b"1000", b"60"]
            s.sendall(b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words))
            eq(s.makefile("rb").readline(), b"+OK\r\n", f"RL.POLICY SET on {host}:{port}")


@check("RL.SLIDING: one round trip per decision")
def _():
    per = asyncio.run(measure("RL.SLIDING", lambda k: ["RL.SLIDING", k, "1000", "60"],
                              'custom_command(["RL.SLIDING", key, ...])'))
    eq(per, 1, "round trips per decision")


@check("RL.ALL in its first-key form: one round trip per decision")
def _():
    per = asyncio.run(measure(
        "RL.ALL", lambda t: ["RL.ALL", f"{t}:m", "SLIDING", "1000", "60", "LIMIT", f"{t}:d", "FIXED", "5000", "DAY"],
        'custom_command(["RL.ALL", first_key, ...])'))
    eq(per, 1, "round trips per decision")


@check("RL.ALL in its keyword form: redirected (GLIDE hashes the word LIMIT)")
def _():
    per = asyncio.run(measure(
        "RL.ALL", lambda t: ["RL.ALL", "LIMIT", f"{t}:m", "SLIDING", "1000", "60", "LIMIT", f"{t}:d", "FIXED", "5000", "DAY"],
        'custom_command(["RL.ALL", "LIMIT", ...]) (the keyword form)', expect=">1"))
    within(per, 1.2, 2, "round trips per decision (about 1.67: two keys in three live on another node)")


@check("RL.TAKE: one round trip per decision")
def _():
    policy_everywhere()
    per = asyncio.run(measure("RL.TAKE", lambda k: ["RL.TAKE", k, "rt-glide"],
                              'custom_command(["RL.TAKE", key, policy])'))
    eq(per, 1, "round trips per decision")


finish()
