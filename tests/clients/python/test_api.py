"""api.py: rate_limit() and its http.server handler, the seed limit (10 a minute) and small windows."""

import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

from harness import HTTP_PORT, check, client, eq, finish, load, serving, within

api, _ = load("api.py")


def get(port, user):
    """(status, headers) of GET / as `user`."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"X-User": user})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def rl_headers(h):
    return {k: v for k, v in h.items() if k.lower().startswith(("ratelimit", "retry-after"))}


@check("python api.py serves the seed limit: 10 a minute per user, the 11th gets 429")
def _():
    with serving([sys.executable, "api.py"]):
        seen = [get(HTTP_PORT, "alice") for _ in range(11)]
        bob = get(HTTP_PORT, "bob")
    log = "\n".join(f"  {i + 1}: {s} {rl_headers(h)}" for i, (s, h, _) in enumerate(seen))
    eq([s for s, _, _ in seen], [200] * 10 + [429], f"statuses:\n{log}\n")
    status, h, body = seen[0]
    eq(rl_headers(h), {"RateLimit-Policy": '"api";q=10;w=60', "RateLimit": '"api";r=9;t=60'}, "first")
    eq(body, b"hello\n", "first body")
    status, h, body = seen[10]
    eq(h.get("RateLimit-Policy"), '"api";q=10;w=60', f"11th: {log}")
    eq(h.get("Retry-After"), "60", f"11th (the first was well under a second ago): {log}")
    eq(h.get("RateLimit"), '"api";r=0;t=60', f"11th: {log}")
    eq(body, b"too many requests\n", "11th body")
    eq((bob[0], rl_headers(bob[1])["RateLimit"]), (200, '"api";r=9;t=60'), "bob has his own limit")
    eq(client().type("api:alice"), b"rl-window", "TYPE api:alice")


def small_window_run(protocol):
    """3 per 0.5 s through the handler: 3 allowed, 1 denied, allowed again after the window."""

    class Small(api.Handler):
        r = client(protocol)
        limit, window_s = 3, 0.5

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Small)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        port = server.server_address[1]
        user = f"small{protocol}"
        seen = [get(port, user) for _ in range(4)]
        time.sleep(0.55)
        seen.append(get(port, user))
    finally:
        server.shutdown()
        server.server_close()
    return [(s, rl_headers(h)) for s, h, _ in seen]


@check("small window (3 per 0.5 s) through the handler: RESP2 and RESP3 answer the same")
def _():
    r2, r3 = small_window_run(2), small_window_run(3)
    eq(r2, r3, "RESP2 vs RESP3 responses")
    eq([s for s, _ in r3], [200, 200, 200, 429, 200], f"statuses {r3}")
    eq(r3[3][1], {"RateLimit-Policy": '"api";q=3;w=1', "RateLimit": '"api";r=0;t=1', "Retry-After": "1"},
       "the denial (under 500 ms to wait: 1 s rounded up)")
    eq(r3[4][1]["RateLimit"], '"api";r=2;t=1', "after the window")


@check("rate_limit(): Retry-After is retry_after_ms in seconds rounded up, RESP2 and RESP3 alike")
def _():
    for protocol in (2, 3):
        r = client(protocol)
        key_user = f"ceil{protocol}"
        for _ in range(2):
            eq(api.rate_limit(r, key_user, 2, 5)[0], True, "allowed")
        raw = r.execute_command("RL.SLIDING", f"api:{key_user}", 2, 5, "DRYRUN")
        allowed, headers = api.rate_limit(r, key_user, 2, 5)
        eq(allowed, False, f"denied (the same call DRYRUN said {raw})")
        within(raw[3], 4000, 5000, "retry_after_ms")
        eq(headers["Retry-After"], "5", f"Retry-After for {raw[3]} ms")
        eq(headers["RateLimit"], '"api";r=0;t=5', "RateLimit")


finish()
