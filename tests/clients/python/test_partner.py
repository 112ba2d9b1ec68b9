"""partner.py: the exact RL.ALL it sends, the seed limits (10 a minute, 500 a
New York day), and the worker loop with small windows (no test waits a minute)."""

import time

from harness import (check, client, eq, finish, load, next_midnight_ms, run_script,
                     same_reply, server_ms, within)

partner, _ = load("partner.py")
SEED = "LIMIT {partner}:minute SLIDING 10 60 LIMIT {partner}:day FIXED 500 DAY TZ America/New_York"


@check("python partner.py sends the seed RL.ALL, exactly, and the day ends at New York midnight")
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
    eq(sent, [f"RL.ALL COST 1 {SEED}", f"RL.ALL COST 2 {SEED}"], "the commands the server ran")
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


@check("run_worker, 3 per 0.5 s: 7 batches, never 4 sends within 0.5 s, done in about 1 s")
def _():
    r = client()
    times, sent = [], []

    def send(batch):
        times.append(time.monotonic())
        sent.append(batch)

    batches = [[i] for i in range(7)]
    partner.run_worker(r, "pace", batches, send, per_minute=3, minute_s=0.5)
    offsets = [round(t - times[0], 3) for t in times]
    eq(sent, batches, "sent")
    for i in range(len(times) - 3):
        # The server admits 3 per 0.5 s on its clock; times here are taken after each reply.
        within(times[i + 3] - times[i], 0.45, 10, f"sends {i + 1} and {i + 4}, send times {offsets}")
    within(offsets[-1], 0.95, 1.6, f"the 7th send (two waits of 0.5 s, jitter at most 0.05 each): {offsets}")


@check("run_worker stops on retry_after_ms -1 (a batch above the limit) and takes nothing for it")
def _():
    r = client()
    sent = []
    limits = {"per_minute": 3, "minute_s": 0.5}
    try:
        partner.run_worker(r, "big", [["a"], ["b"] * 4, ["c"]], sent.append, **limits)
    except ValueError as e:
        eq(str(e), "a batch of 4 exceeds limit 1 (3)", "the error")
    else:
        raise AssertionError(f"no ValueError; sent {sent}")
    eq(sent, [["a"]], "sent before stopping")
    peek = partner.take(r, "big", 0, **limits)
    eq(peek[:4], [1, 3, 2, 0], f"a peek after: only the first batch was taken: {peek}")
    eq(r.execute_command("RL.ALL", "COST", 4, "DRYRUN", "LIMIT", "{big}:minute", "SLIDING", 3, 0.5,
                         "LIMIT", "{big}:day", "FIXED", 500, "DAY", "TZ", "America/New_York")[3], -1,
       "retry_after_ms of the batch of 4")


finish()
