#!/usr/bin/env bash
# Every snippet of docs/CLIENTS.md, run against a real redis-server with the
# module loaded (`make test-clients`): Python with redis-py and with Valkey
# GLIDE, Node.js with node-redis, each at a pinned version installed under
# target/clients/ (reused when already there), never system-wide; then the
# round trips per decision of each client and of the client crate
# (client/examples/cluster_round_trips.rs) on a 3-master cluster.
#
#   scripts/test-clients.sh [TEST_FILE...]   e.g. test_partner.py test_partner.mjs
#
# scripts/test_clients.py does the work: it starts a redis-server and a
# 3-master cluster on free 127.0.0.1 ports, extracts the snippets and runs
# tests/clients/{python,node}/test_*. RL_SERVER picks another server binary
# (default: redis-server on PATH); RL_MODULE another module (default: the
# release build, which `make test-clients` builds first).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

PY_REDIS="8.1.0"   # redis-py: PyPI `redis` (needs Python 3.10+)
NODE_REDIS="6.3.1" # node-redis: npm `redis` (needs Node.js 20+)
GLIDE="2.5.3"      # Valkey GLIDE for Python: PyPI `valkey-glide` (needs Python 3.9+, Linux x86_64/arm64 wheels)
DIR="target/clients"

# python3 with venv or pip, node and npm, and the time zone database the
# tests compute New York midnights from: installed, or named with the command.
./scripts/deps.sh python node tzdata

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "redis-py $PY_REDIS needs Python 3.10 or later; python3 is $(python3 --version 2>&1)" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "node-redis $NODE_REDIS needs Node.js 20 or later; node is $(node --version)" >&2
  exit 1
fi

# ---------------------------------------------------------------- redis-py

has_redis_py() { # has_redis_py PYTHON: exits 0 if it imports the pinned redis-py
  "$1" -c "import redis, sys; sys.exit(redis.__version__ != '$PY_REDIS')" >/dev/null 2>&1
}

python=""
if [ -x "$DIR/py/bin/python" ] && has_redis_py "$DIR/py/bin/python"; then
  python="$DIR/py/bin/python"
elif [ -d "$DIR/py-pip" ] && PYTHONPATH="$DIR/py-pip" has_redis_py python3; then
  python="python3"
  export PYTHONPATH="$PWD/$DIR/py-pip"
else
  echo "Installing redis==$PY_REDIS (redis-py) from PyPI into $DIR/ ..."
  rm -rf "$DIR/py" "$DIR/py-pip"
  mkdir -p "$DIR"
  if python3 -m venv "$DIR/py" >/dev/null 2>&1 && "$DIR/py/bin/python" -m pip --version >/dev/null 2>&1; then
    "$DIR/py/bin/python" -m pip install --quiet --disable-pip-version-check "redis==$PY_REDIS"
    python="$DIR/py/bin/python"
  else
    # No venv module (Debian's python3-venv): pip straight into a directory.
    rm -rf "$DIR/py"
    python3 -m pip install --quiet --disable-pip-version-check --target "$DIR/py-pip" "redis==$PY_REDIS"
    python="python3"
    export PYTHONPATH="$PWD/$DIR/py-pip"
  fi
  if ! has_redis_py "$python"; then
    echo "redis-py $PY_REDIS is not importable after installing it" >&2
    exit 1
  fi
fi

# ---------------------------------------------------------------- Valkey GLIDE

has_glide() { # has_glide PYTHON: exits 0 if it imports the pinned GLIDE
  "$1" -c "import importlib.metadata as m, sys, glide; sys.exit(m.version('valkey-glide') != '$GLIDE')" >/dev/null 2>&1
}

glide_python=""
if [ -x "$DIR/glide/bin/python" ] && has_glide "$DIR/glide/bin/python"; then
  glide_python="$DIR/glide/bin/python"
elif [ -d "$DIR/glide-pip" ] && PYTHONPATH="$DIR/glide-pip" has_glide python3; then
  glide_python="$DIR/glide-python"
else
  echo "Installing valkey-glide==$GLIDE (Valkey GLIDE for Python) from PyPI into $DIR/ ..."
  rm -rf "$DIR/glide" "$DIR/glide-pip" "$DIR/glide-python"
  mkdir -p "$DIR"
  if python3 -m venv "$DIR/glide" >/dev/null 2>&1 && "$DIR/glide/bin/python" -m pip --version >/dev/null 2>&1; then
    "$DIR/glide/bin/python" -m pip install --quiet --disable-pip-version-check "valkey-glide==$GLIDE"
    glide_python="$DIR/glide/bin/python"
  else
    rm -rf "$DIR/glide"
    python3 -m pip install --quiet --disable-pip-version-check --target "$DIR/glide-pip" "valkey-glide==$GLIDE"
    glide_python="$DIR/glide-python"
  fi
fi
if [ "$glide_python" = "$DIR/glide-python" ]; then
  # No venv: a wrapper that puts the pip directory on python3's path.
  printf '#!/bin/sh\nPYTHONPATH="%s" exec python3 "$@"\n' "$PWD/$DIR/glide-pip" >"$DIR/glide-python"
  chmod +x "$DIR/glide-python"
fi
if ! has_glide "$glide_python"; then
  echo "valkey-glide $GLIDE is not importable after installing it" >&2
  exit 1
fi

# ---------------------------------------------------------------- node-redis

has_node_redis() {
  [ "$(node -p "require('./$DIR/node/node_modules/redis/package.json').version" 2>/dev/null)" = "$NODE_REDIS" ]
}

if ! has_node_redis; then
  echo "Installing redis@$NODE_REDIS (node-redis) from npm into $DIR/node ..."
  rm -rf "$DIR/node"
  mkdir -p "$DIR/node"
  npm install --prefix "$DIR/node" --save-exact --no-audit --no-fund --loglevel=error "redis@$NODE_REDIS"
  if ! has_node_redis; then
    echo "node-redis $NODE_REDIS is not in $DIR/node/node_modules after installing it" >&2
    exit 1
  fi
fi

# ---------------------------------------------------------------- run

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
module="${RL_MODULE:-$target_dir/release/libredis_ratelimit.so}"
if [ ! -f "$module" ]; then
  echo "$module is missing: build it with \`cargo build --release --lib\` (make test-clients does)" >&2
  exit 1
fi
echo "python: $python ($("$python" --version 2>&1), redis-py $PY_REDIS); GLIDE: $glide_python (valkey-glide $GLIDE); node: $(node --version) (node-redis $NODE_REDIS)"

# ---------------------------------------------------------------- the crate

echo "Building the client crate's cluster_round_trips example ..."
cargo build --quiet -p redis-ratelimit-client --example cluster_round_trips
crate_round_trips="$target_dir/debug/examples/cluster_round_trips"

status=0
"$python" scripts/test_clients.py --python "$python" --glide-python "$glide_python" \
  --node-modules "$DIR/node/node_modules" --crate-round-trips "$crate_round_trips" \
  --module "$module" --py-redis "$PY_REDIS" --node-redis "$NODE_REDIS" --glide "$GLIDE" "$@" || status=$?
echo "test-clients: $((SECONDS - start)) s in all, package installs included"
exit "$status"
