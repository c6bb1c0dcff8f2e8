#!/usr/bin/env bash
# CVE-2025-32023 (Redis hyperloglog), end to end, from Debian's source package:
# the tree with debian/patches applied up to, not including, the fix; built the
# way a user would; started and loaded with data; `suture build` makes the live
# patch from the fix's own diff; applied; the fix's reproducer must then get
# INVALIDOBJ from the running server, the data must be unchanged, and revert
# must work.
#   run.sh SUTURE WORK_DIR
set -euo pipefail
SUTURE=$1 W=$2
HERE=$(cd "$(dirname "$0")" && pwd)
FIX=0006-CVE-2025-32023.patch
mkdir -p "$W"
fail() { echo "redis-cve: FAIL: $*" >&2; [[ -f $W/redis.log ]] && tail -n 20 "$W/redis.log" >&2; exit 1; }
SERVER_PID='' LOAD_PID=''
trap '[[ -z $SERVER_PID ]] || kill $SERVER_PID 2>/dev/null; [[ -z $LOAD_PID ]] || kill $LOAD_PID 2>/dev/null; true' EXIT

# 1. the source tree, just before the fix (downloaded once per work dir)
if [[ ! -f $W/tree.ready ]]; then
  rm -rf "$W/src" "$W/tree"
  mkdir -p "$W/src"
  (cd "$W/src" && apt-get source -qq redis >"$W/apt-source.log" 2>&1) ||
    fail "apt-get source redis failed (a deb-src entry is needed; scripts/install-deps.sh adds it): $(tail -n 3 "$W/apt-source.log")"
  tree=$(ls -d "$W"/src/redis-*/ | head -n 1)
  series=$tree/debian/patches/series
  grep -qx "$FIX" "$series" || fail "$FIX is not in $series"
  before=$(grep -v '^#' "$series" | grep -B1 -x "$FIX" | head -n 1)
  (cd "$tree" && QUILT_PATCHES=debian/patches quilt pop -q "$before" >/dev/null) || fail "quilt pop to $before failed"
  grep -qF '!valid || idx != HLL_REGISTERS' "$tree/src/hyperloglog.c" && fail "the fix is still applied"
  cp "$tree/debian/patches/$FIX" "$W/fix.diff"
  rm -rf "$tree/.pc"
  mv "$tree" "$W/tree"
  # 2. the user's build (Debian's tree has no bundled jemalloc)
  make -C "$W/tree" -j"$(nproc)" MALLOC=libc redis-server >"$W/user-build.log" 2>&1 || fail "building redis failed: $(tail -n 5 "$W/user-build.log")"
  touch "$W/tree.ready"
fi

# 3. the running server, with data
PORT=$((20000 + RANDOM % 20000))
"$W/tree/src/redis-server" --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$W" \
  --enable-debug-command local >"$W/redis.log" 2>&1 &
SERVER_PID=$!
cli() { redis-cli -p "$PORT" "$@"; }
for _ in $(seq 50); do cli ping >/dev/null 2>&1 && break; sleep 0.1; done
[[ $(cli ping) == PONG ]] || fail "redis did not start"
[[ $(cli debug populate 100000 key 32) == OK ]] || fail "DEBUG POPULATE failed"
cli pfadd visitors a b c d >/dev/null
[[ $(cli pfcount visitors) == 4 ]] || fail "PFCOUNT is wrong before the patch"  # also caches the count in the value
digest=$(cli debug digest)
[[ $digest =~ ^[0-9a-f]{40}$ ]] || fail "DEBUG DIGEST did not answer a digest: $digest"

# 4. the live patch from the diff
"$SUTURE" build --source "$W/tree" --build "make -j$(nproc) MALLOC=libc redis-server" --output "$W/out" \
  --cache "$W/cache" "$W/fix.diff" | tee "$W/build.out"
# The fix changes these three; hllSparseSet and hllCount only see the lines of
# their serverAssert/serverPanic move, which is not a change.
for f in hllSparseToDense hllSparseRegHisto hllMerge; do
  grep -q "replaces $f\$" "$W/build.out" || fail "suture build does not replace $f"
done
grep -qE 'replaces (hllSparseSet|hllCount)$' "$W/build.out" && fail "suture build replaces a function whose lines only moved"
grep -qE '^not a change: src/hyperloglog.c: hllSparseSet: only line numbers changed: .*\(argument 3 of _serverAssert\)' \
  "$W/build.out" || fail "suture build does not say why hllSparseSet is not a change"
grep -q 'outside the build: tests/unit/hyperloglog.tcl' "$W/build.out" || fail "the test file is not reported outside the build"

redis-benchmark -p "$PORT" -t get -n 100000000 -c 8 -q >"$W/load.log" 2>&1 &
LOAD_PID=$!
sleep 1
"$SUTURE" apply "$SERVER_PID" "$W/out" | tee "$W/apply.out"
grep -q pause "$W/apply.out" || fail "apply did not report its pause"

# 5. the fix took effect, nothing was lost
"$HERE/reproduce-cve-2025-32023.py" | cli -x set corrupt >/dev/null
answer=$(cli pfcount corrupt corrupt 2>&1)
[[ $answer == *INVALIDOBJ* ]] || fail "the reproducer got '$answer', not INVALIDOBJ"
[[ $(cli ping) == PONG ]] || fail "the server does not answer after the reproducer"
cli del corrupt >/dev/null
[[ $(cli pfcount visitors) == 4 ]] || fail "PFCOUNT of a valid HLL is wrong after the patch"
kill -0 "$LOAD_PID" 2>/dev/null || fail "the load ended early: $(tail -c 300 "$W/load.log")"
kill "$LOAD_PID"; wait "$LOAD_PID" 2>/dev/null || true; LOAD_PID=''
after=$(cli debug digest)
[[ $after == "$digest" ]] || fail "the data set changed: digest $digest before, $after after"

"$SUTURE" revert "$SERVER_PID" | tee "$W/revert.out"
[[ $(cli ping) == PONG ]] || fail "the server does not answer after revert"
echo "redis-cve: OK ($(grep pause "$W/apply.out"))"
