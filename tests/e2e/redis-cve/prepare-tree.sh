#!/usr/bin/env bash
# The Redis tree just before one fix of Debian's series, built the way a user
# would: what run.sh and bench/build-time start from.
#   prepare-tree.sh WORK_DIR FIX MARK
# FIX is the patch's name in debian/patches; MARK is FILE:TEXT that only the
# fixed tree has. The source package is downloaded once per WORK_DIR (under a
# lock, so callers may run at once); the tree goes to WORK_DIR/CVE/tree where
# CVE is the caller's choice of directory (the environment's CVE_DIR), built
# with `make MALLOC=libc redis-server` (Debian's tree has no bundled jemalloc).
# Both are kept: a second call finds them ready. Prints nothing on success.
set -euo pipefail
W=$1 FIX=$2 MARK=$3
C=${CVE_DIR:?CVE_DIR names the directory for this fix}
export GIT_CEILING_DIRECTORIES=$W  # see run.sh
fail() { echo "prepare-tree: FAIL: $*" >&2; exit 1; }

exec 9>"$W/source.lock"
flock 9
if [[ ! -f $W/source.ready ]]; then
  rm -rf "$W/source"
  mkdir -p "$W/source"
  (cd "$W/source" && apt-get source -qq redis >"$W/apt-source.log" 2>&1) ||
    fail "apt-get source redis failed (a deb-src entry is needed; scripts/install-deps.sh adds it): $(tail -n 3 "$W/apt-source.log")"
  rm -f "$W/source"/*.tar.* "$W/source"/*.dsc
  touch "$W/source.ready"
fi
flock -u 9
pristine=$(ls -d "$W"/source/redis-*/ | head -n 1)

if [[ ! -f $C/tree.ready ]]; then
  rm -rf "$C/tree"
  mkdir -p "$C"
  cp -a "$pristine" "$C/tree"
  series=$C/tree/debian/patches/series
  grep -qx "$FIX" "$series" || fail "$FIX is not in $series"
  before=$(grep -v '^#' "$series" | grep -B1 -x "$FIX" | head -n 1)
  (cd "$C/tree" && QUILT_PATCHES=debian/patches quilt pop -q "$before" >/dev/null) || fail "quilt pop to $before failed"
  grep -qF "${MARK#*:}" "$C/tree/${MARK%%:*}" && fail "the fix is still applied (${MARK%%:*} has '${MARK#*:}')"
  cp "$C/tree/debian/patches/$FIX" "$C/fix.diff"
  rm -rf "$C/tree/.pc"
  make -C "$C/tree" -j"$(nproc)" MALLOC=libc redis-server >"$C/user-build.log" 2>&1 ||
    fail "building redis failed: $(tail -n 5 "$C/user-build.log")"
  touch "$C/tree.ready"
fi
