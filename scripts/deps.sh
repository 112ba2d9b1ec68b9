#!/usr/bin/env bash
# Makes sure what a make target needs is on this machine, installing the
# missing Debian packages with apt-get when running as root or with
# passwordless sudo, and otherwise printing the exact command to run.
#
#   scripts/deps.sh [GROUP...] [PACKAGE...]
#
# Groups (default: build):
#   build    cargo, a C compiler and libc headers, make, libclang (bindgen),
#            redis-server, redis-cli, redis-benchmark    (make run, make test)
#   bench    python3, taskset, valgrind                  (make bench-server)
#   python   python3 with venv or pip                     (make test-valkey, test-matrix, test-clients)
#   node     node and npm                                (make test-clients)
#   servers  a C compiler, make, pkg-config, tar         (make test-matrix: servers built from source)
#   future   faketime, and what `servers` needs          (make test-future)
# Any other argument is taken as a Debian package name (checked with dpkg -s).
#
# Every check looks for the file or command that is really used, never for a
# neighbour with a similar name: bindgen loads libclang.so / libclang-<ver>.so,
# and libclang-cpp.so (the C++ interface, another package) does not do.
#
#   scripts/deps.sh --has-libclang DIR...   exits 0 if one of the DIRs holds a
#                                           libclang bindgen can load (for tests)
set -euo pipefail

# --------------------------------------------------------------- libclang

# Is `name` (a file name) a libclang that bindgen's clang-sys loads?
# libclang.so, libclang.so.14, libclang-14.so, libclang-14.so.1, ... but not
# libclang-cpp.so.14 or libclangBasic.a.
is_libclang_name() {
  [[ "$1" =~ ^libclang(-[0-9][0-9.]*)?\.so(\.[0-9.]+)?$ ]]
}

# Exits 0 if one of the directories holds a loadable libclang.
libclang_in_dirs() {
  local d f
  for d in "$@"; do
    [ -d "$d" ] || continue
    for f in "$d"/libclang*; do
      [ -e "$f" ] || continue
      if is_libclang_name "$(basename "$f")"; then
        return 0
      fi
    done
  done
  return 1
}

# The directories clang-sys searches on Linux, plus LIBCLANG_PATH.
libclang_dirs() {
  [ -n "${LIBCLANG_PATH:-}" ] && echo "$LIBCLANG_PATH"
  if command -v llvm-config >/dev/null 2>&1; then llvm-config --libdir 2>/dev/null || true; fi
  local d
  for d in /usr/lib/llvm-*/lib /usr/local/llvm*/lib /usr/lib /usr/lib64 /usr/local/lib \
    /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /lib/x86_64-linux-gnu /lib/aarch64-linux-gnu; do
    [ -d "$d" ] && echo "$d"
  done
  return 0
}

has_libclang() {
  local dirs=()
  mapfile -t dirs < <(libclang_dirs)
  libclang_in_dirs "${dirs[@]}" && return 0
  # The dynamic linker's cache, filtered the same way.
  local name
  while read -r name; do
    is_libclang_name "$name" && return 0
  done < <(ldconfig -p 2>/dev/null | awk '{print $1}')
  return 1
}

if [ "${1:-}" = "--has-libclang" ]; then
  shift
  libclang_in_dirs "$@"
  exit $?
fi

# --------------------------------------------------------------- checks

need=()
missing_cargo=0

want_cmd() { # want_cmd COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 || need+=("$2")
}

want_c_toolchain() {
  want_cmd cc gcc
  want_cmd make make
  # libc headers: a compiler without them cannot build any C.
  [ -e /usr/include/stdio.h ] || need+=(libc6-dev)
}

group_build() {
  command -v cargo >/dev/null 2>&1 || missing_cargo=1
  want_c_toolchain
  has_libclang || need+=(libclang-dev)
  want_cmd redis-server redis-server
  want_cmd redis-cli redis-tools
  want_cmd redis-benchmark redis-tools
}

group_python() {
  want_cmd python3 python3
  if command -v python3 >/dev/null 2>&1; then
    python3 -m venv --help >/dev/null 2>&1 || python3 -m pip --version >/dev/null 2>&1 ||
      need+=(python3-venv python3-pip)
  fi
}

group_bench() {
  want_cmd python3 python3
  want_cmd taskset util-linux
  want_cmd valgrind valgrind
  want_cmd callgrind_control valgrind
}

group_node() {
  want_cmd node nodejs
  want_cmd npm npm
}

group_servers() {
  want_c_toolchain
  want_cmd pkg-config pkg-config
  want_cmd tar tar
  want_cmd sha256sum coreutils
}

group_future() {
  group_servers
  want_cmd faketime faketime
}

[ $# -eq 0 ] && set -- build
for a in "$@"; do
  case "$a" in
    build | bench | python | node | servers | future) "group_$a" ;;
    *) dpkg -s "$a" >/dev/null 2>&1 || need+=("$a") ;;
  esac
done

if [ "$missing_cargo" = 1 ]; then
  echo "cargo is missing: install Rust (https://rustup.rs: curl https://sh.rustup.rs -sSf | sh), then run this again." >&2
  exit 1
fi
[ ${#need[@]} -eq 0 ] && exit 0

mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
cmd="apt-get install -y --no-install-recommends ${need[*]}"
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo"
else
  echo "Missing Debian packages: ${need[*]}" >&2
  echo "Install them with:  sudo apt-get update && sudo $cmd" >&2
  exit 1
fi
echo "Installing ${need[*]} ..."
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo $cmd

# What was installed must now be found, or the build fails later and further
# from the cause.
for a in "$@"; do
  if [ "$a" = build ] && ! has_libclang; then
    echo "libclang is still not found after installing libclang-dev; set LIBCLANG_PATH to the directory holding libclang.so" >&2
    exit 1
  fi
done
