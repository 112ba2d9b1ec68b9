"""Helpers for the tests of docs/CLIENTS.md's Python snippets.

scripts/test_clients.py writes each snippet (api.py, partner.py, ...) beside
these files, pointed at its servers, and runs each test_*.py here. A test
prints `ok - name` or `not ok - name` and the traceback, values included,
for each check, and exits 1 if any failed. The GLIDE tests (tests/clients/
glide/) import this file too, from an interpreter that has GLIDE and no
redis-py.
"""

import contextlib
import datetime
import importlib
import io
import os
import re
import socket
import subprocess
import sys
import time
import traceback
import zoneinfo

URL = os.environ["RL_REDIS_URL"]
CLUSTER_URL = os.environ["RL_CLUSTER_URL"]
HTTP_PORT = int(os.environ["RL_HTTP_PORT"])
PY_REDIS = os.environ["RL_PY_REDIS"]

_failed = 0


def check(name):
    """Decorator: runs the function now, as one check."""

    def run(fn):
        global _failed
        t = time.monotonic()
        try:
            fn()
        except Exception:  # noqa: BLE001 - every failure is reported the same way
            _failed += 1
            print(f"not ok - {name}")
            traceback.print_exc(file=sys.stdout)
        else:
            print(f"ok - {name} ({time.monotonic() - t:.2f} s)")
        sys.stdout.flush()
        return fn

    return run


def finish():
    sys.exit(1 if _failed else 0)


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}:\n  got  {got!r}\n  want {want!r}")


def within(got, lo, hi, what):
    if not lo <= got <= hi:
        raise AssertionError(f"{what}: got {got!r}, want between {lo!r} and {hi!r}")


def client(protocol=None):
    import redis  # here: the GLIDE tests share this file without redis-py

    return redis.Redis.from_url(URL, protocol=protocol) if protocol else redis.Redis.from_url(URL)


def resp_of(r):
    """The protocol the connection really speaks, from the server's side."""
    info = r.execute_command("CLIENT", "INFO")
    info = info.decode() if isinstance(info, bytes) else info
    return int(re.search(r"\bresp=(\d)", info).group(1))


def load(filename):
    """Imports a snippet; returns (module, what it printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        module = importlib.import_module(filename.removesuffix(".py"))
    return module, out.getvalue()


def run_script(filename, timeout=60):
    """Runs a snippet as `python file`; returns its stdout, raises with everything if it fails."""
    p = subprocess.run([sys.executable, filename], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"{filename} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p.stdout


@contextlib.contextmanager
def serving(argv, port=HTTP_PORT):
    """Runs a server snippet until the block ends; waits until it accepts."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            if p.poll() is not None:
                raise AssertionError(f"{argv} exited {p.returncode}:\n{p.stdout.read()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{argv} never listened on 127.0.0.1:{port}")
                time.sleep(0.05)
        yield p
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()


def printed(filename):
    """What a snippet says it prints: the `# comment` ending each print(...) statement."""
    with open(filename) as f:
        lines = f.read().split("\n")
    want, i = [], 0
    while i < len(lines):
        if lines[i].lstrip().startswith("print("):
            depth, j = 0, i
            while True:
                depth += _parens(lines[j])
                if depth <= 0:
                    break
                j += 1
            m = re.search(r"\)\s+# (.*)$", lines[j])
            if m:
                want.append(m.group(1))
            i = j
        i += 1
    return want


def _parens(line):
    """Opening minus closing parentheses outside quotes and comments."""
    depth, quote = 0, None
    for c in line:
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#":
            break
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
    return depth


def server_ms(r):
    sec, usec = r.time()
    return sec * 1000 + usec // 1000


def next_midnight_ms(now_ms, zone="America/New_York"):
    """Unix ms of the first local midnight after now_ms (DST included)."""
    tz = zoneinfo.ZoneInfo(zone)
    local = datetime.datetime.fromtimestamp(now_ms / 1000, tz)
    tomorrow = local.date() + datetime.timedelta(days=1)
    midnight = datetime.datetime.combine(tomorrow, datetime.time(0), tz)
    return int(midnight.timestamp() * 1000)


def same_reply(a, b, what, slack_ms=100):
    """Two replies of the same calls made moments apart: every field an int,
    equal, the two time fields (3 and 4) within slack_ms of each other."""
    for reply in (a, b):
        if not (isinstance(reply, list) and all(type(x) is int for x in reply)):
            raise AssertionError(f"{what}: not a list of int: {reply!r}")
    eq(len(a), len(b), f"{what}: length")
    for i, (x, y) in enumerate(zip(a, b)):
        if i in (3, 4) and x > 0 and y > 0:
            within(abs(x - y), 0, slack_ms, f"{what}: field {i + 1} of {a!r} and {b!r}")
        else:
            eq(x, y, f"{what}: field {i + 1} of {a!r} and {b!r}")
