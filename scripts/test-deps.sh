#!/usr/bin/env bash
# Regression tests of scripts/deps.sh's detection, run by `make test`.
# Each case builds a temporary directory holding only the named files and asks
# deps.sh whether a libclang that bindgen can load is there.
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0

case_() { # case_ EXPECT FILE...
  local expect=$1
  shift
  local d="$tmp/case$n"
  n=$((n + 1))
  mkdir -p "$d"
  local f
  for f in "$@"; do : >"$d/$f"; done
  local got=absent
  if ./scripts/deps.sh --has-libclang "$d"; then got=present; fi
  if [ "$got" != "$expect" ]; then
    echo "FAIL: a directory holding [$*] reads as $got, expected $expect" >&2
    fail=1
  fi
}

# The machine that broke a fresh `make test`: only the C++ interface library.
case_ absent libclang-cpp.so.14
case_ absent libclang-cpp.so libclang-cpp.so.14 libclangBasic.a
case_ absent
case_ present libclang.so
case_ present libclang-14.so.1
case_ present libclang-cpp.so.14 libclang-14.so.14.0.6
case_ present libclang.so.1
case_ present libclang-16.so

# The old check (any libclang*.so*) read the first case as present.
if ls "$tmp"/case0/libclang*.so* >/dev/null 2>&1; then
  echo "ok: the old glob would have been fooled by libclang-cpp.so.14; the new check is not"
fi
[ $fail = 0 ] && echo "deps.sh detection: $n cases passed"
exit $fail
