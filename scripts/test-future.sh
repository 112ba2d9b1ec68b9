#!/usr/bin/env bash
# The whole integration suite with the servers' clock a year ahead
# (`make test-future`): the module's tests and the client crate's, on Redis
# 7.2.6 built with MALLOC=libc (Debian's jemalloc build aborts under
# libfaketime), started through a wrapper that preloads libfaketime with
# FAKETIME="+365d". Tests take time from the server (TIME), so a suite
# that passes here does not depend on the test machine's date or on the
# server's clock agreeing with the test process's.
#
#   scripts/test-future.sh [OFFSET]     (default +365d; any FAKETIME offset)
#
# The wrapper (target/future/redis-server) does what `faketime -f +365d`
# does, but execs the server instead of forking it: the harness kills the
# process it started, and with `faketime` in between that is faketime,
# leaving the server running. The redis-cli beside the wrapper (a link to
# the one built with the server) is the cli the cluster harness uses.
# Output goes to target/future/<suite>.log; then a table.
set -euo pipefail
cd "$(dirname "$0")/.."

offset="${1:-+365d}"
CARGO="${CARGO:-cargo}"
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
out="$target_dir/future"
mkdir -p "$out"

./scripts/deps.sh future
server="$(./scripts/servers.sh --libc redis-7.2)"
lib=""
for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
  if [ -f "$d/faketime/libfaketime.so.1" ]; then
    lib="$d/faketime/libfaketime.so.1"
    break
  fi
done
if [ -z "$lib" ]; then
  echo "libfaketime.so.1 not found (Debian: apt-get install faketime)" >&2
  exit 1
fi

wrapper="$out/redis-server"
cat >"$wrapper" <<EOF
#!/bin/sh
# faketime -f '$offset' $server "\$@", as one process (see scripts/test-future.sh).
LD_PRELOAD="$lib\${LD_PRELOAD:+:\$LD_PRELOAD}" FAKETIME='$offset' exec "$server" "\$@"
EOF
chmod +x "$wrapper"
ln -sf "$(dirname "$server")/redis-cli" "$out/redis-cli"

echo "server: $wrapper -> $server (FAKETIME=$offset)"

$CARGO build --release --lib
$CARGO build --lib --features test-hooks
export RL_MODULE="${RL_MODULE:-$target_dir/debug/libredis_ratelimit.so}"
export RL_SERVER="$wrapper"
$CARGO test --features test-hooks --tests --no-run
$CARGO test -p redis-ratelimit-client --all-features --tests --no-run
$CARGO test -p redis-ratelimit-testkit --no-run

# The clock-step test (tests/abuse.rs) starts its own server under
# libfaketime, stepping its clock back and forth through a file.
export RL_FAKETIME_LIB="$lib" RL_LIBC_SERVER="$server"

declare -A passed failed ignored secs status
suites=(module client testkit steps)
for suite in "${suites[@]}"; do
  log="$out/$suite.log"
  case "$suite" in
    module) args=(--features test-hooks --tests) ;;
    client) args=(-p redis-ratelimit-client --all-features --tests) ;;
    testkit) args=(-p redis-ratelimit-testkit) ;;
    steps) args=(--features test-hooks --test abuse -- --ignored --exact block_timers_follow_a_stepped_wall_clock) ;;
  esac
  echo "== $suite (log: $log)" >&2
  start=$(date +%s)
  rc=0
  {
    echo "# RL_SERVER=$RL_SERVER RL_MODULE=$RL_MODULE FAKETIME=$offset"
    echo "# test machine's clock: $(date -u +%FT%TZ)"
    echo "# cargo test --no-fail-fast ${args[*]}"
    $CARGO test --no-fail-fast "${args[@]}" || rc=$?
  } >"$log" 2>&1
  secs[$suite]=$(($(date +%s) - start))
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
  passed[$suite]=$p
  failed[$suite]=$f
  ignored[$suite]=$i
  if [ "$f" -gt 0 ] || [ "$rc" -ne 0 ]; then
    status[$suite]=FAIL
    grep -E '^test .* FAILED$|^error: test failed|process didn.t exit successfully' "$log" | sed 's/^/   /' >&2 || true
  else
    status[$suite]=ok
  fi
  echo "   $p passed, $f failed, $i ignored in ${secs[$suite]} s (${status[$suite]}; $n test binaries)" >&2
done

# The server's TIME, as the tests saw it, against this machine's clock.
probe_dir="$(mktemp -d)"
trap 'rm -rf "$probe_dir"' EXIT
real=$(date +%s)
"$wrapper" --port 0 --unixsocket "$probe_dir/s" --save "" --daemonize no >/dev/null 2>&1 &
pid=$!
for _ in $(seq 50); do [ -S "$probe_dir/s" ] && break; sleep 0.1; done
server_time="$("$out/redis-cli" -s "$probe_dir/s" TIME | head -n 1)"
kill "$pid" && wait "$pid" 2>/dev/null || true
ahead=$(((server_time - real) / 86400))

echo
echo "Server clock ${offset} (TIME read $ahead days ahead of this machine's), $("$server" --version | sed -nE 's/^.* v=([^ ]+).*$/Redis \1/p') malloc=libc"
echo
printf '| %-8s | %6s | %6s | %7s | %7s | %-6s |\n' suite passed failed ignored seconds result
printf '|%s|%s|%s|%s|%s|%s|\n' ---------- -------- -------- --------- --------- --------
bad=0
for suite in "${suites[@]}"; do
  printf '| %-8s | %6s | %6s | %7s | %7s | %-6s |\n' "$suite" "${passed[$suite]}" "${failed[$suite]}" \
    "${ignored[$suite]}" "${secs[$suite]}" "${status[$suite]}"
  [ "${status[$suite]}" = ok ] || bad=1
done
echo
echo "Logs: $out/<suite>.log"
exit $bad
