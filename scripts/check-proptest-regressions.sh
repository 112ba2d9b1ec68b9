#!/usr/bin/env bash
# Every proptest regression file in the repository must be one that a
# proptest reads: a seed file nothing reads replays nothing, silently (as
# proptest-regressions/algo/sliding.txt did once sliding.rs moved to core/).
#
# Where proptest looks (FileFailurePersistence::SourceParallel, its
# default): from a test's source file S it walks up to the nearest
# directory D holding lib.rs or main.rs, and reads
#   parent(D)/proptest-regressions/<S relative to D, .rs -> .txt>
# (core/src/algo/sliding.rs -> core/proptest-regressions/algo/sliding.txt).
# Where no such D exists (an integration test under tests/), it reads
# S with the extension .proptest-regressions instead.
#
# So a regression file is read if it maps back to a source file that uses
# proptest and maps to it. Exits 1 naming each file that is not.
#
#   scripts/check-proptest-regressions.sh [ROOT]
set -euo pipefail
root=$(cd "${1:-$(dirname "$0")/..}" && pwd)
cd "$root"

# The nearest ancestor directory of file $1 (relative to the root, or the
# root itself as ".") that holds lib.rs or main.rs; empty if none.
crate_src_dir() {
  local d
  d=$(dirname "$1")
  while :; do
    if [ -f "$d/lib.rs" ] || [ -f "$d/main.rs" ]; then
      echo "$d"
      return
    fi
    [ "$d" = "." ] && return
    d=$(dirname "$d")
  done
}

bad=0
checked=0
while IFS= read -r -d '' f; do
  f=${f#./}
  checked=$((checked + 1))
  src=""
  case "$f" in
    *.proptest-regressions)
      src=${f%.proptest-regressions}.rs
      # Only read this way where no lib.rs/main.rs is found above it.
      if [ -f "$src" ] && [ -n "$(crate_src_dir "$src")" ]; then
        src=""
      fi
      ;;
    */proptest-regressions/*.txt | proptest-regressions/*.txt)
      base=${f%%proptest-regressions/*}   # "core/" or ""
      rel=${f#*proptest-regressions/}     # "algo/sliding.txt"
      rel=${rel%.txt}.rs
      # D is a sibling of the proptest-regressions directory.
      for d in "${base}"*/; do
        d=${d%/}
        cand="$d/$rel"
        if [ -f "$cand" ] && [ "$(crate_src_dir "$cand")" = "$d" ]; then
          src=$cand
          break
        fi
      done
      ;;
  esac
  if [ -z "$src" ]; then
    echo "not read by any proptest: $f (no source file maps to it)" >&2
    bad=1
  elif ! grep -q 'proptest' "$src"; then
    echo "not read by any proptest: $f ($src has no proptest)" >&2
    bad=1
  fi
done < <(find . \( -path ./target -o -path ./.git -o -name node_modules \) -prune -o \
  \( -path '*/proptest-regressions/*' -type f -o -name '*.proptest-regressions' -type f \) -print0)

if [ "$bad" -ne 0 ]; then
  echo "Move each file where proptest reads it (see the top of $0), or delete it." >&2
  exit 1
fi
echo "proptest regressions: $checked file(s), each read by a proptest"
