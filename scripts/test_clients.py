#!/usr/bin/env python3
"""Runs every snippet of docs/CLIENTS.md against real servers with the module
loaded (`make test-clients`, through scripts/test-clients.sh). Standard
library only.

The doc is the source: a fenced block whose info string names a file,
```python title="api.py"``` or ```js title="partner.mjs"```, is written as
that file into a work directory (python/, node/, or glide/ for a python
block whose title starts with glide_), with three addresses replaced, and
nothing else changed:

    redis://localhost:6379   ->  the standalone redis-server started here
    redis://localhost:7000   ->  a node of the 3-master cluster started here
    8080                     ->  a free loopback port (HTTP servers)

(and GLIDE's `NodeAddress("localhost", 6379)` and `("localhost", 7000)` alike).

Then each test file tests/clients/<suite>/test_*.{py,mjs} runs in that
directory (python/ with redis-py's interpreter, glide/ with GLIDE's, node/
with node): it imports or runs the snippets and asserts on what they print
and do. Every python/js block of the doc must name a file, and every file
must be named by a test, or the run fails: no snippet goes untested. The
doc's install lines must name the pinned versions (--py-redis,
--node-redis, --glide), which the tests check against what is installed.

Last, the client crate's cluster_round_trips example runs. The test_round_
trips files and it print `round-trips: ...` lines (requests the cluster's
nodes saw per decision, for RL.SLIDING, RL.ALL and RL.TAKE): the run ends
with their table, and fails unless every client's advised way takes one.

Servers listen on 127.0.0.1 only, in a temporary directory, and are stopped
on every exit (normal, error, SIGINT, SIGTERM, SIGHUP).
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "CLIENTS.md")
TESTS = os.path.join(ROOT, "tests", "clients")
# Each suite: the fence language of its snippets, its directory under
# tests/clients/ (and the work directory), the file extension. A python
# snippet whose title starts with "glide_" is GLIDE's (run by the
# interpreter that has valkey-glide); other python snippets are redis-py's.
SUITES = {"python": ("python", ".py"), "node": ("js", ".mjs"), "glide": ("python", ".py")}
GLIDE_PREFIX = "glide_"


def suite_of(lang, title):
    """The suite a fenced block belongs to, or None (not a snippet)."""
    if lang == "js":
        return "node"
    if lang == "python":
        return "glide" if title and title.startswith(GLIDE_PREFIX) else "python"
    return None
TEST_TIMEOUT_S = 120


# ------------------------------------------------------------ the doc


def snippets(text):
    """[(lang, title, code, line)] of every fenced block, title None if absent."""
    out = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)(.*)$", lines[i])
        if not m:
            i += 1
            continue
        lang, info, start = m.group(1), m.group(2), i + 1
        t = re.search(r'title="([^"]+)"', info)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if j == len(lines):
            sys.exit(f"{DOC}:{start}: fenced block never closed")
        out.append((lang, t.group(1) if t else None, "\n".join(lines[i + 1 : j]) + "\n", start))
        i = j + 1
    return out


def check_doc(blocks, py_pin, node_pin, glide_pin):
    """Problems with the doc itself: untitled code, duplicates, stale pins."""
    problems, seen = [], set()
    for lang, title, code, line in blocks:
        if suite_of(lang, title):
            if title is None:
                problems.append(f"CLIENTS.md:{line}: a ```{lang} block without title=\"...\" (every snippet must be tested)")
                continue
            ext = SUITES[suite_of(lang, title)][1]
            if not title.endswith(ext) or "/" in title:
                problems.append(f"CLIENTS.md:{line}: title {title!r} must be a bare file name ending in {ext}")
            if title in seen:
                problems.append(f"CLIENTS.md:{line}: two blocks named {title}")
            seen.add(title)
        elif lang == "sh":
            for m in re.finditer(r"pip install redis==(\S+)", code):
                if m.group(1) != py_pin:
                    problems.append(f"CLIENTS.md:{line}: pip installs redis=={m.group(1)}, the tests pin {py_pin}")
            for m in re.finditer(r"npm install redis@(\S+)", code):
                if m.group(1) != node_pin:
                    problems.append(f"CLIENTS.md:{line}: npm installs redis@{m.group(1)}, the tests pin {node_pin}")
            for m in re.finditer(r"pip install valkey-glide==(\S+)", code):
                if m.group(1) != glide_pin:
                    problems.append(f"CLIENTS.md:{line}: pip installs valkey-glide=={m.group(1)}, the tests pin {glide_pin}")
    text = "".join(code for lang, _title, code, _line in blocks if lang == "sh")
    if f"pip install redis=={py_pin}" not in text:
        problems.append(f"CLIENTS.md: no ```sh block with `pip install redis=={py_pin}`")
    if f"npm install redis@{node_pin}" not in text:
        problems.append(f"CLIENTS.md: no ```sh block with `npm install redis@{node_pin}`")
    if f"pip install valkey-glide=={glide_pin}" not in text:
        problems.append(f"CLIENTS.md: no ```sh block with `pip install valkey-glide=={glide_pin}`")
    return problems


def localize(code, title, redis_url, cluster_url, http_port):
    code = code.replace("redis://localhost:6379", redis_url)
    code = code.replace("redis://localhost:7000", cluster_url)
    # GLIDE's NodeAddress("localhost", 6379): a host and a port.
    for url, doc_port in ((redis_url, 6379), (cluster_url, 7000)):
        host, port = url.removeprefix("redis://").rsplit(":", 1)
        code = code.replace(f'"localhost", {doc_port}', f'"{host}", {port}')
    code = code.replace("8080", str(http_port))
    if "localhost" in code:
        sys.exit(f"CLIENTS.md {title}: an address other than redis://localhost:6379 or :7000 "
                 "(the tests would not know where it points)")
    return code


# ------------------------------------------------------------ servers

PROCS = []  # (name, Popen, directory)


def free_port(also_bus=False):
    """A free loopback port (and port + 10000, for a cluster bus)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not also_bus:
            return port
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    sys.exit("no free loopback port found")


def resp(port, *args, timeout=5.0):
    """One command over a fresh connection, RESP2, minimal parser."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        f = s.makefile("rb")

        def read():
            line = f.readline()
            if not line:
                raise ConnectionError("connection closed")
            kind, rest = line[:1], line[1:-2]
            if kind == b"+":
                return rest.decode()
            if kind == b"-":
                raise RuntimeError(rest.decode())
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                return None if n < 0 else f.read(n + 2)[:-2].decode()
            if kind == b"*":
                n = int(rest)
                return None if n < 0 else [read() for _ in range(n)]
            raise RuntimeError(f"unexpected reply {line!r}")

        return read()


def start_server(server, module, base, name, cluster=False):
    """Starts one server on a free port; returns the port once PING answers."""
    last_log = ""
    for attempt in range(3):
        port = free_port(also_bus=cluster)
        d = os.path.join(base, f"{name}-{port}")
        os.makedirs(d)
        log = os.path.join(d, "server.log")
        args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", d, "--logfile", log,
                "--loadmodule", module]
        if cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "2000"]
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT)
        PROCS.append((name, p, d))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if p.poll() is not None:
                break
            try:
                if resp(port, "PING", timeout=1) == "PONG":
                    return port
            except (OSError, RuntimeError):
                time.sleep(0.05)
        last_log = tail(log)
        print(f"{name}: not answering on 127.0.0.1:{port} (attempt {attempt + 1}); its log:\n{last_log}")
        stop(p)
    sys.exit(f"{name}: could not start {server}")


def start_cluster(server, module, base):
    """Three masters, slots split in three, formed with MEET; returns ports
    once every node says cluster_state:ok and knows the other two."""
    ports = [start_server(server, module, base, f"cluster{i}", cluster=True) for i in range(3)]
    ranges = [(0, 5460), (5461, 10922), (10923, 16383)]
    for i, (port, (lo, hi)) in enumerate(zip(ports, ranges)):
        resp(port, "CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        resp(port, "CLUSTER", "ADDSLOTSRANGE", lo, hi)
    for port in ports[1:]:
        resp(ports[0], "CLUSTER", "MEET", "127.0.0.1", port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        infos = [resp(p, "CLUSTER", "INFO") for p in ports]
        if all("cluster_state:ok" in i and "cluster_known_nodes:3" in i for i in infos) and all(
            len(resp(p, "CLUSTER", "SLOTS")) == 3 for p in ports
        ):
            return ports
        time.sleep(0.1)
    for p in ports:
        print(f"cluster node {p}:\n{resp(p, 'CLUSTER', 'INFO')}\n{resp(p, 'CLUSTER', 'NODES')}")
    sys.exit("the cluster did not form within 30 s")


def tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"(no log: {e})"


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_all():
    while PROCS:
        _, p, _ = PROCS.pop()
        stop(p)


def on_signal(signum, _frame):
    raise SystemExit(f"stopped by signal {signum}")


# ------------------------------------------------------------ tests


def run_test(cmd, cwd, env):
    """Runs one test file; returns (passed, failed, output)."""
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=TEST_TIMEOUT_S)
        out, rc = p.stdout.decode(errors="replace"), p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        out += f"\n(killed after {TEST_TIMEOUT_S} s)\n"
        rc = -1
    passed = len(re.findall(r"^ok - ", out, re.M))
    failed = len(re.findall(r"^not ok - ", out, re.M))
    if rc != 0 and failed == 0:
        failed = 1
        out += f"not ok - {os.path.basename(cmd[-1])} exited with {rc}\n"
    if rc == 0 and passed == 0:
        failed = 1
        out += f"not ok - {os.path.basename(cmd[-1])} ran no check\n"
    return passed, failed, out, time.monotonic() - start


ROUND_TRIPS = re.compile(
    r"^round-trips: client='(?P<client>[^']*)' command=(?P<command>\S+) decisions=\d+ requests=\d+ "
    r"moved=(?P<moved>\d+) ask=(?P<ask>\d+) getkeys=(?P<getkeys>\d+) per_decision=(?P<per>[\d.]+) "
    r"expect=(?P<expect>\S+) how='(?P<how>[^']*)'$", re.M)
ROUND_TRIP_COMMANDS = ("RL.SLIDING", "RL.ALL", "RL.TAKE")


def round_trips_table(outputs, every_client):
    """The table of round trips per decision the tests printed; problems:
    a way the doc advises (expect=1) that took more than one, a client that
    printed no row for a command (when every suite ran)."""
    rows = [m.groupdict() for out in outputs for m in ROUND_TRIPS.finditer(out)]
    problems = []
    clients = list(dict.fromkeys(r["client"] for r in rows))
    print("\nround trips per decision on the 3-master cluster, steady state (requests the nodes saw:"
          "\ncalls run + rejected with MOVED/ASK + COMMAND GETKEYS, over 100 decisions):")
    print(f"  {'client':48} " + " ".join(f"{c:>10}" for c in ROUND_TRIP_COMMANDS))
    for client in clients:
        mine = [r for r in rows if r["client"] == client and r["expect"] == "1"]
        cells = []
        for c in ROUND_TRIP_COMMANDS:
            r = next((r for r in mine if r["command"] == c), None)
            cells.append(f"{float(r['per']):10.2f}" if r else f"{'-':>10}")
            if r is None and every_client:
                problems.append(f"{client}: no round-trip count for {c}")
        print(f"  {client:48} " + " ".join(cells))
        for r in mine:
            if float(r["per"]) != 1.0:
                problems.append(f"{client} {r['command']}: {r['per']} round trips per decision "
                                f"(MOVED {r['moved']}, ASK {r['ask']}, COMMAND GETKEYS {r['getkeys']}), want 1")
    others = [r for r in rows if r["expect"] != "1"]
    if others:
        print("  not the recipe, for comparison:")
        for r in others:
            print(f"    {r['client']} {r['command']}: {float(r['per']):.2f} (MOVED {r['moved']}, "
                  f"COMMAND GETKEYS {r['getkeys']}): {r['how']}")
    if every_client and len(clients) < 4:
        problems.append(f"round trips measured for {len(clients)} clients, want 4: {clients}")
    for p in problems:
        print(f"not ok - {p}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", required=True, help="the interpreter that has redis-py")
    ap.add_argument("--glide-python", required=True, help="the interpreter that has valkey-glide")
    ap.add_argument("--node-modules", required=True, help="node_modules holding node-redis")
    ap.add_argument("--crate-round-trips", required=True,
                    help="the client crate's cluster_round_trips example, built")
    ap.add_argument("--module", required=True, help="the module .so to load")
    ap.add_argument("--server", default=os.environ.get("RL_SERVER", "redis-server"))
    ap.add_argument("--py-redis", required=True, help="the pinned redis-py version")
    ap.add_argument("--node-redis", required=True, help="the pinned node-redis version")
    ap.add_argument("--glide", required=True, help="the pinned valkey-glide version")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("only", nargs="*", help="test files to run (default: all, and every snippet must be tested)")
    a = ap.parse_args()

    with open(DOC) as f:
        blocks = snippets(f.read())
    problems = check_doc(blocks, a.py_redis, a.node_redis, a.glide)

    tests = {}
    for suite, (lang, ext) in SUITES.items():
        d = os.path.join(TESTS, suite)
        tests[suite] = sorted(f for f in os.listdir(d) if f.startswith("test_") and f.endswith(ext))
        texts = "".join(open(os.path.join(d, f)).read() for f in tests[suite])
        for bl, title, _, line in blocks:
            if suite_of(bl, title) == suite and title and title not in texts and not a.only:
                problems.append(f"CLIENTS.md:{line}: {title} is named by no test in tests/clients/{suite}/")
    if problems:
        print("\n".join(problems))
        print("clients: 0 passed, %d failed" % len(problems))
        return 1

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    module = os.path.abspath(a.module)
    base = tempfile.mkdtemp(prefix="rl-clients-")
    ok = completed = False
    total_pass = total_fail = 0
    try:
        server = shutil.which(a.server) or a.server
        print(f"server: {server} ({subprocess.run([server, '--version'], capture_output=True, text=True).stdout.strip()})")
        print(f"module: {module}")
        t0 = time.monotonic()
        port = start_server(server, module, base, "standalone")
        cluster = start_cluster(server, module, base)
        print(f"standalone 127.0.0.1:{port}, cluster 127.0.0.1:{cluster} ready in {time.monotonic() - t0:.1f} s")
        redis_url, cluster_url = f"redis://127.0.0.1:{port}", f"redis://127.0.0.1:{cluster[0]}"
        http_port = free_port()

        work = os.path.join(base, "work")
        for suite, (lang, ext) in SUITES.items():
            d = os.path.join(work, suite)
            os.makedirs(d)
            for f in os.listdir(os.path.join(TESTS, suite)):
                shutil.copy(os.path.join(TESTS, suite, f), d)
            for bl, title, code, _ in blocks:
                if suite_of(bl, title) == suite:
                    with open(os.path.join(d, title), "w") as f:
                        f.write(localize(code, title, redis_url, cluster_url, http_port))
        # ESM resolves bare imports ('redis') from node_modules up the tree.
        os.symlink(os.path.abspath(a.node_modules), os.path.join(work, "node", "node_modules"))

        env = dict(os.environ)
        env.update(RL_REDIS_URL=redis_url, RL_CLUSTER_URL=cluster_url, RL_HTTP_PORT=str(http_port),
                   RL_CLUSTER_NODES=",".join(f"redis://127.0.0.1:{p}" for p in cluster),
                   RL_PY_REDIS=a.py_redis, RL_NODE_REDIS=a.node_redis, RL_GLIDE=a.glide,
                   PYTHONDONTWRITEBYTECODE="1")

        def interpreter(path):
            return os.path.abspath(path) if os.sep in path else shutil.which(path)

        runners = {"python": [interpreter(a.python)], "node": [shutil.which("node") or "node"],
                   "glide": [interpreter(a.glide_python)]}
        runs = [(suite, t, runners[suite] + [t], os.path.join(work, suite))
                for suite in SUITES for t in tests[suite]]
        # The client crate's count, beside the others (the table needs it).
        crate = os.path.abspath(a.crate_round_trips)
        runs.append(("crate", os.path.basename(crate), [crate], work))
        results, outputs = [], []
        for suite, t, cmd, cwd in runs:
            if a.only and t not in a.only:
                continue
            for p in [port] + cluster:  # every file starts from empty servers, stats at 0
                resp(p, "FLUSHALL")
                resp(p, "CONFIG", "RESETSTAT")
            print(f"\n=== {suite}/{t}", flush=True)
            passed, failed, out, secs = run_test(cmd, cwd, env)
            print(out.rstrip("\n"))
            print(f"--- {suite}/{t}: {passed} passed, {failed} failed, {secs:.1f} s", flush=True)
            results.append((f"{suite}/{t}", passed, failed, secs))
            outputs.append(out)
            total_pass += passed
            total_fail += failed
        table_problems = round_trips_table(outputs, every_client=not a.only)
        total_fail += len(table_problems)
        print("\nclients:")
        for name, p_, f_, s_ in results:
            print(f"  {name:36} {p_:3} passed {f_:3} failed {s_:6.1f} s")
        completed = True
        ok = total_fail == 0 and total_pass > 0
        if not ok:
            for name, p, d in PROCS:
                print(f"\n--- {name} log ({d}/server.log), last lines:\n{tail(os.path.join(d, 'server.log'))}")
        return 0 if ok else 1
    finally:
        stop_all()
        if ok and not a.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"work directory kept: {base} (snippets as run: {base}/work)")
        if not completed:
            total_fail += 1
            print("not ok - the run did not finish (see above)")
        print(f"\nclients: {total_pass} passed, {total_fail} failed")


if __name__ == "__main__":
    sys.exit(main())
