"""errors.py: how redis-py raises the module's error replies."""

import redis
from harness import check, client, eq, finish, load, printed


@check("errors.py prints what its comments say")
def _():
    _, out = load("errors.py")
    eq(out.splitlines(), printed("errors.py"), "errors.py's output")


@check("an error changes nothing: no key for the refused calls")
def _():
    eq(client().exists("api:alice", "api:carol"), 0, "EXISTS api:alice api:carol")
    eq(client().get("api:bob"), b"not a limiter", "api:bob untouched")


@check("the same exceptions in RESP2 and RESP3; arity and syntax errors too")
def _():
    calls = [
        (("RL.SLIDING", "e", 0, 60), "ERR", "limit must be an integer between 1 and 9223372036854775807"),
        (("RL.SLIDING", "e", 10), "ERR", "wrong number of arguments for 'RL.SLIDING' command"),
        (("RL.SLIDING", "e", 10, 60, "PERIOD", 1), "ERR", "syntax error"),
        (("RL.FIXED", "e", 10, "DAY", "TZ", "Mars/Olympus"), "ERR",
         "TZ must be an IANA time zone name such as America/New_York"),
        (("RL.ALL", "LIMIT", "e", "SLIDING", 1, 1, "LIMIT", "e", "SLIDING", 1, 1), "ERR",
         "RL.ALL needs a different key for each LIMIT"),
    ]
    for protocol in (2, 3):
        r = client(protocol)
        for args, code, message in calls:
            try:
                r.execute_command(*args)
            except redis.ResponseError as e:
                eq((type(e), e.status_code, str(e)), (redis.ResponseError, code, message), f"RESP{protocol} {args}")
            else:
                raise AssertionError(f"RESP{protocol} {args}: no exception")


finish()
