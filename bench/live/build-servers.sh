#!/usr/bin/env bash
# The servers of the live benchmark, built from Debian's source packages with
# symbols, and their live patches made by `suture build` from source diffs.
#
#   build-servers.sh SUTURE CACHE_DIR
#
# Why from source: Debian's memcached binary is stripped (no .symtab, no
# request-path function in .dynsym), so nothing in it can be named; and a patch
# from a diff needs the tree the binary was built from. Both servers are built
# the way Debian builds them, without the final strip:
#   redis      the tree just before Debian's CVE-2025-32023 fix (quilt series
#              popped to the patch before it, as tests/e2e/redis-cve does),
#              `make MALLOC=libc redis-server` (Debian's tree has no jemalloc);
#              its patch is the fix's own diff (replaces hllSparseToDense, hllSparseRegHisto, hllMerge).
#   memcached  Debian's tree with all of its patches, configured with Debian's
#              flags (dpkg-buildflags with hardening=+all: -g -O2, PIE, relro,
#              now, fortify) and options (--enable-sasl --enable-tls); its patch
#              is memcached-version.diff next to this script.
# Each tree is downloaded and built once per CACHE_DIR (a stamp file marks it
# done); `suture build` runs every time (it caches its own original build under
# CACHE_DIR too, so a second run recompiles only the changed file) so the
# patches always come from the suture being measured.
#
# Result (paths run.py reads):
#   CACHE/redis/tree/src/redis-server      CACHE/redis/patch/        (.sut files)
#   CACHE/memcached/tree/memcached         CACHE/memcached/patch/
#   CACHE/redis/fix.diff (the CVE fix)     CACHE/*/build.out (suture build's report)
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 SUTURE CACHE_DIR" >&2; exit 2; }
SUTURE=$(realpath "$1") C=$(realpath -m "$2")
HERE=$(cd "$(dirname "$0")" && pwd)
JOBS=$(nproc)
REDIS_FIX=0006-CVE-2025-32023.patch
mkdir -p "$C"
fail() { echo "build-servers: $*" >&2; exit 1; }
[[ -x $SUTURE ]] || fail "$SUTURE: not an executable"

# Downloads SOURCE_PACKAGE into DIR/src and prints the unpacked tree.
fetch() {
  local pkg=$1 dir=$2
  rm -rf "$dir/src" && mkdir -p "$dir/src"
  (cd "$dir/src" && apt-get source -qq "$pkg" >"$dir/apt-source.log" 2>&1) ||
    fail "apt-get source $pkg failed (needs deb-src; scripts/install-deps.sh adds it): $(tail -n 3 "$dir/apt-source.log")"
  ls -d "$dir"/src/"$pkg"-*/ | head -n 1
}

# --- redis ---------------------------------------------------------------------
R=$C/redis
if [[ ! -f $R/tree.ready ]]; then
  mkdir -p "$R"
  tree=$(fetch redis "$R")
  series=$tree/debian/patches/series
  grep -qx "$REDIS_FIX" "$series" || fail "redis: $REDIS_FIX is not in $series"
  before=$(grep -v '^#' "$series" | grep -B1 -x "$REDIS_FIX" | head -n 1)
  (cd "$tree" && QUILT_PATCHES=debian/patches quilt pop -q "$before" >/dev/null) || fail "redis: quilt pop to $before failed"
  grep -qF '!valid || idx != HLL_REGISTERS' "$tree/src/hyperloglog.c" && fail "redis: the CVE fix is still applied"
  cp "$tree/debian/patches/$REDIS_FIX" "$R/fix.diff"
  rm -rf "$tree/.pc" "$R/tree"
  mv "$tree" "$R/tree"
  echo "build-servers: building redis-server (make MALLOC=libc, -O2 -g as the tree sets it)" >&2
  nice make -C "$R/tree" -j"$JOBS" MALLOC=libc redis-server >"$R/build.log" 2>&1 ||
    fail "redis: build failed: $(tail -n 5 "$R/build.log")"
  touch "$R/tree.ready"
fi

# --- memcached -----------------------------------------------------------------
M=$C/memcached
if [[ ! -f $M/tree.ready ]]; then
  mkdir -p "$M"
  tree=$(fetch memcached "$M")
  rm -rf "$tree/.pc" "$M/tree"
  mv "$tree" "$M/tree"
  echo "build-servers: building memcached (Debian's configure options and flags, not stripped)" >&2
  (
    cd "$M/tree"
    # dpkg-buildflags maps the current directory to "." in -ffile-prefix-map, as
    # dpkg-buildpackage run in the tree would.
    eval "$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --export=sh)"
    ./configure --enable-sasl --enable-tls >"$M/configure.log" 2>&1 ||
      fail "memcached: configure failed: $(tail -n 5 "$M/configure.log")"
    nice make -j"$JOBS" memcached >"$M/build.log" 2>&1 || fail "memcached: build failed: $(tail -n 5 "$M/build.log")"
  )
  touch "$M/tree.ready"
fi

for bin in "$R/tree/src/redis-server" "$M/tree/memcached"; do
  readelf -S "$bin" | grep -q '\.symtab' || fail "$bin has no .symtab"
  readelf -S "$bin" | grep -q '\.debug_info' || fail "$bin has no debug info"
done

# --- the patches -----------------------------------------------------------------
echo "build-servers: suture build of the redis fix ($REDIS_FIX)" >&2
rm -rf "$R/patch"
nice "$SUTURE" build --source "$R/tree" --build "make -j$JOBS MALLOC=libc redis-server" --output "$R/patch" \
  --cache "$R/suture-cache" "$R/fix.diff" >"$R/build.out" 2>&1 || fail "redis: suture build failed: $(tail -n 5 "$R/build.out")"
grep -q 'replaces hllSparseToDense' "$R/build.out" || fail "redis: suture build does not replace hllSparseToDense (see $R/build.out)"

echo "build-servers: suture build of memcached-version.diff" >&2
rm -rf "$M/patch"
nice "$SUTURE" build --source "$M/tree" --build "make -j$JOBS memcached" --output "$M/patch" \
  --cache "$M/suture-cache" "$HERE/memcached-version.diff" >"$M/build.out" 2>&1 ||
  fail "memcached: suture build failed: $(tail -n 5 "$M/build.out")"
grep -q 'replaces process_command_ascii' "$M/build.out" ||
  fail "memcached: suture build does not replace process_command_ascii (see $M/build.out)"
echo "build-servers: ready in $C" >&2
