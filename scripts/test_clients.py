#!/usr/bin/env python3
"""Runs every snippet of docs/CLIENTS.md against real servers with the module
loaded (`make test-clients`, through scripts/test-clients.sh). Standard
library only.

The doc is the source: a fenced block whose info string names a file,
```python title="api.py"``` or ```js title="partner.mjs"```, is written as
that file into a work directory (python/ or node/), with three addresses
replaced, and nothing else changed:

    redis://localhost:6379   ->  the standalone redis-server started here
    redis://localhost:7000   ->  a node of the 3-master cluster started here
    8080                     ->  a free loopback port (HTTP servers)

Then each test file tests/clients/<lang>/test_*.{py,mjs} runs in that
directory: it imports or runs the snippets and asserts on what they print
and do. Every python/js block of the doc must name a file, and every file
must be named by a test, or the run fails: no snippet goes untested. The
doc's install lines must name the pinned versions (--py-redis,
--node-redis), which the tests check against what is installed.

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
LANGS = {"python": ("python", ".py"), "js": ("node", ".mjs")}
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


def check_doc(blocks, py_pin, node_pin):
    """Problems with the doc itself: untitled code, duplicates, stale pins."""
    problems, seen = [], set()
    for lang, title, code, line in blocks:
        if lang in LANGS:
            if title is None:
                problems.append(f"CLIENTS.md:{line}: a ```{lang} block without title=\"...\" (every snippet must be tested)")
                continue
            ext = LANGS[lang][1]
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
    text = "".join(code for lang, _title, code, _line in blocks if lang == "sh")
    if f"pip install redis=={py_pin}" not in text:
        problems.append(f"CLIENTS.md: no ```sh block with `pip install redis=={py_pin}`")
    if f"npm install redis@{node_pin}" not in text:
        problems.append(f"CLIENTS.md: no ```sh block with `npm install redis@{node_pin}`")
    return problems


def localize(code, title, redis_url, cluster_url, http_port):
    code = code.replace("redis://localhost:6379", redis_url)
    code = code.replace("redis://localhost:7000", cluster_url)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", required=True, help="the interpreter that has redis-py")
    ap.add_argument("--node-modules", required=True, help="node_modules holding node-redis")
    ap.add_argument("--module", required=True, help="the module .so to load")
    ap.add_argument("--server", default=os.environ.get("RL_SERVER", "redis-server"))
    ap.add_argument("--py-redis", required=True, help="the pinned redis-py version")
    ap.add_argument("--node-redis", required=True, help="the pinned node-redis version")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("only", nargs="*", help="test files to run (default: all, and every snippet must be tested)")
    a = ap.parse_args()

    with open(DOC) as f:
        blocks = snippets(f.read())
    problems = check_doc(blocks, a.py_redis, a.node_redis)

    tests = {}
    for lang, (sub, ext) in LANGS.items():
        d = os.path.join(TESTS, sub)
        tests[lang] = sorted(f for f in os.listdir(d) if f.startswith("test_") and f.endswith(ext))
        texts = "".join(open(os.path.join(d, f)).read() for f in tests[lang])
        for bl, title, _, line in blocks:
            if bl == lang and title and title not in texts and not a.only:
                problems.append(f"CLIENTS.md:{line}: {title} is named by no test in tests/clients/{sub}/")
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
        for lang, (sub, ext) in LANGS.items():
            d = os.path.join(work, sub)
            os.makedirs(d)
            for f in os.listdir(os.path.join(TESTS, sub)):
                shutil.copy(os.path.join(TESTS, sub, f), d)
            for bl, title, code, _ in blocks:
                if bl == lang:
                    with open(os.path.join(d, title), "w") as f:
                        f.write(localize(code, title, redis_url, cluster_url, http_port))
        # ESM resolves bare imports ('redis') from node_modules up the tree.
        os.symlink(os.path.abspath(a.node_modules), os.path.join(work, "node", "node_modules"))

        env = dict(os.environ)
        env.update(RL_REDIS_URL=redis_url, RL_CLUSTER_URL=cluster_url, RL_HTTP_PORT=str(http_port),
                   RL_CLUSTER_NODES=",".join(f"redis://127.0.0.1:{p}" for p in cluster),
                   RL_PY_REDIS=a.py_redis, RL_NODE_REDIS=a.node_redis, PYTHONDONTWRITEBYTECODE="1")
        python = os.path.abspath(a.python) if os.sep in a.python else shutil.which(a.python)
        runners = {"python": [python], "js": [shutil.which("node") or "node"]}
        results = []
        for lang, (sub, _) in LANGS.items():
            for t in tests[lang]:
                if a.only and t not in a.only:
                    continue
                for p in [port] + cluster:  # every file starts from empty servers, stats at 0
                    resp(p, "FLUSHALL")
                    resp(p, "CONFIG", "RESETSTAT")
                print(f"\n=== {sub}/{t}", flush=True)
                passed, failed, out, secs = run_test(runners[lang] + [t], os.path.join(work, sub), env)
                print(out.rstrip("\n"))
                print(f"--- {sub}/{t}: {passed} passed, {failed} failed, {secs:.1f} s", flush=True)
                results.append((f"{sub}/{t}", passed, failed, secs))
                total_pass += passed
                total_fail += failed
        print("\nclients:")
        for name, p_, f_, s_ in results:
            print(f"  {name:28} {p_:3} passed {f_:3} failed {s_:6.1f} s")
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
