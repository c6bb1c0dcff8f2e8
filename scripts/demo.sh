#!/usr/bin/env bash
# The Suture demo: a multi-threaded server is patched while a load generator
# keeps it busy (about 8 s), then the patch is taken back; not one request
# fails.
#
#   scripts/demo.sh [--no-deps] [--no-build] [--build-dir DIR] [--no-patch]
#
#   --no-deps       do not run scripts/install-deps.sh
#   --no-build      use DIR as it is (default build/ in the source tree)
#   --no-patch      only the server and the load (checks the examples alone)
#
# Exits non-zero if any step fails or any request failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
DEPS=1
BUILD_IT=1
PATCH=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --no-deps) DEPS=0 ;;
    --no-build) BUILD_IT=0 ;;
    --no-patch) PATCH=0 ;;
    --build-dir) BUILD=$(realpath -m "$2"); shift ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

LOAD_SECONDS=60
CONNECTIONS=16
SERVER_THREADS=8

if [[ -t 1 ]]; then BOLD=$'\e[1m' DIM=$'\e[2m' RED=$'\e[31m' OFF=$'\e[0m'; else BOLD='' DIM='' RED='' OFF=''; fi
step() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$OFF"; }
show() { printf '%s$ %s%s\n' "$DIM" "$*" "$OFF"; "$@"; }
die() { printf '%sdemo: %s%s\n' "$RED" "$*" "$OFF" >&2; exit 1; }

SERVER_PID='' LOAD_PID=''
cleanup() {
  local rc=$?
  [[ -z $LOAD_PID ]] || kill "$LOAD_PID" 2>/dev/null || true
  [[ -z $SERVER_PID ]] || kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  if [[ $rc -ne 0 ]]; then
    printf '%sdemo: FAILED (exit %d); logs in %s%s\n' "$RED" "$rc" "${WORK:-?}" "$OFF" >&2
  fi
}
trap cleanup EXIT

if [[ $DEPS -eq 1 ]]; then
  step "Installing what the build needs"
  "$ROOT/scripts/install-deps.sh"
fi

if [[ $BUILD_IT -eq 1 ]]; then
  step "Building Suture and the examples"
  show cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
  show cmake --build "$BUILD"
fi

# Paths are shown relative to the source tree when they are inside it.
cd "$ROOT"
BUILD=$(realpath --relative-base="$ROOT" "$BUILD")
SUTURE=$BUILD/src/cli/suture
SERVER=$BUILD/examples/greeter-server
CLIENT=$BUILD/examples/load-client
for bin in "$SERVER" "$CLIENT"; do [[ -x $bin ]] || die "$bin is missing: build first"; done
[[ $PATCH -eq 0 || -x $SUTURE ]] || die "$SUTURE is missing: build first"
WORK=$BUILD/demo
[[ $PATCH -eq 1 ]] || WORK=$BUILD/demo-no-patch # may run beside the full demo (ctest -j)
rm -rf "$WORK"
mkdir -p "$WORK"

# ask NAME EXPECTED: one request; the reply must be EXPECTED.
ask() {
  local reply
  reply=$("$CLIENT" --port "$PORT" --once "$1") || die "no reply from the server"
  printf '   GET %s -> %s\n' "$1" "$reply"
  [[ $reply == "$2" ]] || die "expected '$2'"
}

step "Starting the greeter server ($SERVER_THREADS worker threads)"
"$SERVER" --port 0 --threads "$SERVER_THREADS" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 50); do
  grep -q 'listening on' "$WORK/server.log" && break
  sleep 0.1
done
PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/server.log")
[[ -n $PORT ]] || die "the server did not start: $(cat "$WORK/server.log")"
cat "$WORK/server.log"
ask world "hello, world (v1)"

if [[ $PATCH -eq 1 ]]; then
  # Written, compiled and packed ahead of time, as a fix would be; only the
  # apply happens on the live server.
  step "Writing the patch: examples/greeter-server/fix.c replaces build_reply()"
  sed -n '/^static size_t build_reply_v2/,$p' examples/greeter-server/fix.c
  show cc -c -O2 -fPIC -I include examples/greeter-server/fix.c -o "$WORK/fix.o"
  show "$SUTURE" pack --target "$SERVER" "$WORK/fix.o" -o "$WORK/fix.sut"
  show "$SUTURE" inspect "$WORK/fix.sut"
fi

# The load runs until stopped (SIGTERM), so the steps below take as long as
# they need on a busy machine; LOAD_SECONDS is only a ceiling.
step "Putting it under load: $CONNECTIONS connections, back to back"
"$CLIENT" --port "$PORT" --connections "$CONNECTIONS" --duration "$LOAD_SECONDS" >"$WORK/load.log" 2>&1 &
LOAD_PID=$!
sleep 2.5
ask world "hello, world (v1)"

if [[ $PATCH -eq 1 ]]; then
  step "Applying the patch to the running server (pid $SERVER_PID), under load"
  show "$SUTURE" apply "$SERVER_PID" "$WORK/fix.sut"
  ask world "HELLO, WORLD (v2, patched live)"
  sleep 2.5
  show "$SUTURE" status "$SERVER_PID"

  step "Taking it back"
  show "$SUTURE" revert "$SERVER_PID"
  ask world "hello, world (v1)"
  show "$SUTURE" status "$SERVER_PID"
fi
sleep 2.5

step "The load client's view"
kill -TERM "$LOAD_PID" 2>/dev/null || die "the load client ended early: $(cat "$WORK/load.log")"
set +e
wait "$LOAD_PID"
load_rc=$?
set -e
LOAD_PID=''
cat "$WORK/load.log"
[[ $load_rc -eq 0 ]] || die "the load client saw failures (exit $load_rc)"
if [[ $PATCH -eq 1 ]]; then
  grep -qE 'v1 replies: [1-9][0-9]*, v2 replies: [1-9]' "$WORK/load.log" ||
    die "the load client did not see both versions"
fi

step "Stopping the server"
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || die "the server did not stop cleanly"
SERVER_PID=''
tail -n 1 "$WORK/server.log"
summary=$(grep '^requests:' "$WORK/load.log")
printf '\n%sdemo: OK: %s%s\n' "$BOLD" "$summary" "$OFF"
