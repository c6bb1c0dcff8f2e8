#!/usr/bin/env bash
# Debian's own redis-server, as installed, patched live under redis-benchmark
# load: PING's reply changes, the data set is untouched (DEBUG DIGEST), revert
# brings the old reply back, and the server never stops answering.
#   run.sh SUTURE INCLUDE_DIR WORK_DIR
set -euo pipefail
SUTURE=$1 INCLUDE=$2 W=$3
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$W" && mkdir -p "$W"
fail() { echo "redis-ping: FAIL: $*" >&2; [[ -f $W/redis.log ]] && tail -n 20 "$W/redis.log" >&2; exit 1; }
command -v redis-server >/dev/null || fail "redis-server is not installed (scripts/install-deps.sh installs it)"

PORT=$((20000 + RANDOM % 20000))
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$W" --enable-debug-command local \
  >"$W/redis.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; kill $LOAD 2>/dev/null || true' EXIT
cli() { redis-cli -p "$PORT" "$@"; }
for _ in $(seq 50); do cli ping >/dev/null 2>&1 && break; sleep 0.1; done
[[ $(cli ping) == PONG ]] || fail "redis did not start"

[[ $(cli debug populate 100000 key 32) == OK ]] || fail "DEBUG POPULATE failed"
[[ $(cli dbsize) == 100000 ]] || fail "the data set was not loaded"
digest=$(cli debug digest)
[[ $digest =~ ^[0-9a-f]{40}$ ]] || fail "DEBUG DIGEST did not answer a digest: $digest"

cc -c -O2 -fPIC -I "$INCLUDE" "$HERE/fix.c" -o "$W/fix.o"
"$SUTURE" pack --target /usr/bin/redis-server "$W/fix.o" -o "$W/fix.sut"

redis-benchmark -p "$PORT" -t ping,get -n 2000000 -c 16 -q >"$W/load.log" 2>&1 &
LOAD=$!
sleep 1
"$SUTURE" apply "$PID" "$W/fix.sut" | tee "$W/apply.out"
[[ $(cli ping) == "PONG (patched live)" ]] || fail "PING does not answer with the patched reply"
"$SUTURE" status "$PID" | grep -q pingCommand || fail "status does not list pingCommand"
sleep 1
"$SUTURE" revert "$PID" | tee "$W/revert.out"
[[ $(cli ping) == PONG ]] || fail "PING does not answer PONG after revert"
kill -0 "$LOAD" 2>/dev/null || fail "redis-benchmark ended early: $(tail -c 300 "$W/load.log")"
kill "$LOAD"; wait "$LOAD" 2>/dev/null || true
after=$(cli debug digest)
[[ $after == "$digest" ]] || fail "the data set changed: digest $digest before, $after after"
kill -0 "$PID" || fail "redis-server died"
grep -q 'pause' "$W/apply.out" || fail "apply did not report its pause"
echo "redis-ping: OK ($(grep pause "$W/apply.out"))"
