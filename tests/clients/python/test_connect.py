"""connect.py, and the reply in RESP2 and RESP3 for every command."""

import redis
from harness import PY_REDIS, check, client, eq, finish, load, printed, resp_of, same_reply


@check(f"redis-py is the pinned {PY_REDIS}")
def _():
    eq(redis.__version__, PY_REDIS, "redis.__version__")


@check("connect.py prints what its comments say")
def _():
    global connect
    connect, out = load("connect.py")
    eq(out.splitlines(), printed("connect.py"), "connect.py's output")


@check("connect.py's r3 speaks RESP3 and r2 RESP2 (CLIENT INFO)")
def _():
    eq(resp_of(connect.r3), 3, "r3")
    eq(resp_of(connect.r2), 2, "r2")


@check("redis-py 8 speaks RESP3 when not told")
def _():
    eq(resp_of(client()), 3, "redis.Redis.from_url(url)")


@check("every command, allowed and denied: the same list of int in RESP2 and RESP3")
def _():
    r2, r3 = client(2), client(3)
    calls = [
        ("RL.TOKENBUCKET", "{k}", 2, 1, 1),
        ("RL.SLIDING", "{k}", 2, 60),
        ("RL.GCRA", "{k}", 2, 1, 60),
        ("RL.FIXED", "{k}", 2, "DAY", "TZ", "America/New_York"),
        ("RL.ALL", "LIMIT", "{k}:a", "SLIDING", 2, 60, "LIMIT", "{k}:b", "FIXED", 5, "HOUR"),
        ("CL.THROTTLE", "{k}", 1, 1, 60),
    ]
    for call in calls:
        for n in range(4):  # 2 allowed, 2 denied; then a peek and a cost that never fits
            replies = []
            for r, tag in ((r2, "resp2"), (r3, "resp3")):
                args = [a.replace("{k}", f"{{{tag}:{call[0]}}}") if isinstance(a, str) else a for a in call]
                replies.append(r.execute_command(*args))
            same_reply(replies[0], replies[1], f"{call[0]} call {n + 1}")
            if call[0].startswith("RL."):
                eq(replies[0][0], 1 if n < 2 else 0, f"{call[0]} call {n + 1}: allowed")
        if call[0] == "RL.SLIDING":
            never = [r.execute_command("RL.SLIDING", f"{{{tag}:never}}", 2, 60, "COST", 3)
                     for r, tag in ((r2, "resp2"), (r3, "resp3"))]
            eq(never, [[0, 2, 2, -1, 0]] * 2, "a cost above the limit, RESP2 and RESP3")


finish()
