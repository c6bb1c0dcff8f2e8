#!/usr/bin/env bash
# Runs one scenario: a tiny real program is built, started, patched while it
# runs, and judged by what it prints afterwards.
#
#   run-scenario.sh SCENARIO_DIR WORK_DIR
#
# Environment: SUTURE (the tool), SUTURE_INCLUDE (the directory holding
# suture/patch.h), CC and CXX (default cc, c++). SCENARIO_WAIT overrides the
# default wait_for timeout (seconds). SCENARIO_CACHE is where suture build keeps
# original builds between runs (default: .suture-cache beside WORK_DIR; the
# projects are copied with their timestamps, so a second run reuses them).
#
# The scenario is SCENARIO_DIR/scenario.sh, sourced here; it is a list of the
# steps below. Sources named in it are relative to SCENARIO_DIR, built files
# live in WORK_DIR ($W), and the target's output goes to $W/target.log.
#
# Steps (all fail the scenario, with the log tail, when what they expect does
# not happen):
#   build OUT SRC... [FLAGS...]     cc -O2 -pthread SRC... FLAGS -o $W/OUT (c++ for .cc)
#   build_lib LIB.so SRC... [FLAGS] the same with -shared -fPIC
#   start BIN [ARGS...]             runs $W/BIN in the background, waits for its first line
#   fix NAME SRC [FLAGS...]         the patch author's compile: cc -c -O2 -fPIC -I include
#   pack NAME TARGET_FILE           suture pack --target $W/TARGET_FILE $W/NAME.o -o $W/NAME.sut
#   pack_fails REGEX NAME TARGET_FILE
#   project DIR [MAKE_ARGS...]      the program as its developers build it: the
#                                   project folder DIR (a Makefile and sources) copied
#                                   to $W/$(basename DIR), timestamps kept, with
#                                   lib/scenario.h beside its sources, and built there
#                                   with `make MAKE_ARGS` (CC and CXX from the
#                                   environment); binaries are then PROJECT/FILE
#   build_from_diff NAME DIFF...    the fix as a developer writes it: suture build
#                                   --source $W/PROJECT --build "make MAKE_ARGS"
#                                   --output $W/NAME DIFF... (the last project; the
#                                   original build cached in $SCENARIO_CACHE). NAME
#                                   then stands for all the patches it wrote,
#                                   NAME/BINARY for one (BINARY: the file name of
#                                   what it patches, e.g. NAME/libfoo.so)
#   expect_replaced FUNCTION...     the last build replaces exactly these (C++ demangled)
#   patch_object NAME[/BINARY] OUT  the ELF object inside that (one) patch -> $W/OUT
#   apply [--timeout S] [--mode M] [--safe-point F] [--json] NAME|DIR...
#                                   expects success; NAME means $W/NAME.sut
#   apply_fails REGEX [--timeout S] NAME|DIR...
#                                   expects exit != 0, a first stderr line
#                                   "suture: error: ..." matching REGEX, and the
#                                   target untouched: same threads, same mappings,
#                                   same bytes in every executable mapping, still
#                                   running, still printing
#   revert [--timeout S] [--mode M] [--safe-point F] [NAME...]  all patches when no NAME
#   revert_fails REGEX [NAME...]
#   status_has NAME... / status_lacks NAME... / status_empty
#   wait_for REGEX [TIMEOUT]        a new line (since the last step) matching REGEX;
#                                   later steps look only after that line
#   wait_lines COUNT REGEX [TIMEOUT] COUNT lines since the last step match REGEX
#                                   (the step stays where it was: new_lines shows them)
#   expect_no REGEX [SECONDS]       the target prints for SECONDS (default 1) and
#                                   no line of that output matches REGEX (new_lines
#                                   shows that output afterwards)
#   expect_running                  the target still prints
#   new_lines                       the output since the last step (for own checks)
#   mark                            "the last step" is now
#   stop                            the target must still be running, its log free of
#                                   "stray"/"crash" lines and its counters ("tick N",
#                                   "round N") unbroken; then it is killed
#   wait_exit CODE [TIMEOUT]        the target ends by itself with status CODE
# Lower level, for steps of one's own: suture_call ARGS (runs $SUTURE_WRAPPER
# suture ARGS; LAST_RC, LAST_OUT, LAST_ERR, LAST_SECONDS), expect_success,
# expect_refusal WHAT REGEX, expect_one_line_error, expect_quick SECONDS,
# snapshot FILE / expect_unchanged FILE, suture_background ARGS /
# suture_signal SIG / suture_background_wait TIMEOUT, alive, fail MESSAGE.
# Regular expressions are Python's (re.search), case-sensitive for output and
# case-insensitive for error messages.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 SCENARIO_DIR WORK_DIR" >&2
  exit 2
fi
SCENARIO_DIR=$(cd "$1" && pwd)
SCENARIO=$(basename "$SCENARIO_DIR")
SCENARIOS=$(dirname "$SCENARIO_DIR")
W=$2
: "${SUTURE:?SUTURE must name the suture binary}"
: "${SUTURE_INCLUDE:?SUTURE_INCLUDE must name the directory holding suture/patch.h}"
CC=${CC:-cc}
CXX=${CXX:-c++}
SCENARIO_WAIT=${SCENARIO_WAIT:-10}
SUTURE_CALL_TIMEOUT=${SUTURE_CALL_TIMEOUT:-60}
PROBE=("${PYTHON:-python3}" "$SCENARIOS/lib/probe.py")

rm -rf "$W"
mkdir -p "$W"
W=$(cd "$W" && pwd)
SCENARIO_CACHE=${SCENARIO_CACHE:-$(dirname "$W")/.suture-cache}
LOG=$W/target.log
: >"$LOG"

TARGET_PID=
MARK=0            # byte offset in $LOG: later checks look at output after it
CALLS=0           # suture invocations so far (their output is kept in $W)
LAST_OUT='' LAST_ERR='' LAST_RC='' LAST_SECONDS=''
declare -A PATCH_ID=()   # patch NAME -> id, as `suture inspect` tells it
SUTURE_WRAPPER=()        # a command suture_call runs suture under (e.g. setpriv)
BACKGROUND_PIDS=()
CLEANUP_PATHS=()         # removed at exit (things a scenario puts outside $W)

# --- reporting ---------------------------------------------------------------

say() { printf '[%s] %s\n' "$SCENARIO" "$*"; }

log_tail() {
  echo "--- last lines of the target's output ($LOG):"
  tail -n 25 "$LOG" || true
  echo "---"
}

fail() {
  say "FAIL: $*"
  if [[ -n $LAST_ERR && -s $LAST_ERR ]]; then
    echo "--- stderr of the last suture call ($LAST_ERR):"
    head -n 20 "$LAST_ERR"
  fi
  log_tail
  exit 1
}

cleanup() {
  local rc=$?
  set +e
  for pid in "${BACKGROUND_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null
  done
  if [[ -n $TARGET_PID ]] && kill -0 "$TARGET_PID" 2>/dev/null; then
    kill -KILL "$TARGET_PID" 2>/dev/null
    wait "$TARGET_PID" 2>/dev/null
  fi
  for path in "${CLEANUP_PATHS[@]}"; do
    rm -rf "$path"
  done
  if [[ $rc -eq 0 ]]; then
    say "PASS"
  else
    say "FAILED (exit $rc); work files in $W"
  fi
}
trap cleanup EXIT

# Runs a command with SIGINT and SIGQUIT at their defaults: a background job of
# a non-interactive shell would otherwise start with them ignored, which an
# ordinary program (and suture's own interrupt handling) never sees.
exec_ordinary() {
  exec "${PROBE[0]}" -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGQUIT, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])' "$@"
}

# --- building ----------------------------------------------------------------

src_path() {
  case $1 in
    /*) echo "$1" ;;
    *) echo "$SCENARIO_DIR/$1" ;;
  esac
}

# build OUT SRC... [FLAGS...]: a target as its developers would build it: -O2,
# no frame pointers asked for, threads; sources by absolute path, as CMake does.
build() {
  local out=$1
  shift
  local compiler=$CC args=()
  for a in "$@"; do
    case $a in
      -*) args+=("$a") ;;
      *.cc | *.cpp) compiler=$CXX; args+=("$(src_path "$a")") ;;
      *.c) args+=("$(src_path "$a")") ;;
      *) args+=("$a") ;;
    esac
  done
  say "build $out"
  "$compiler" -O2 -pthread -Wall -I"$SCENARIOS/lib" "${args[@]}" -o "$W/$out" ||
    fail "could not build $out"
}

build_lib() {
  local out=$1
  shift
  build "$out" -shared -fPIC "$@"
}

# fix NAME SRC [FLAGS...]: the patch author's compile, as documented.
fix() {
  local name=$1 src=$2
  shift 2
  local compiler=$CC
  case $src in *.cc | *.cpp) compiler=$CXX ;; esac
  say "compile patch $name from $src"
  "$compiler" -c -O2 -fPIC -I"$SUTURE_INCLUDE" "$(src_path "$src")" "$@" -o "$W/$name.o" ||
    fail "could not compile the patch $src"
}

# --- calling suture ------------------------------------------------------------

# suture_call ARGS...: runs suture, keeping its stdout, stderr, status and duration.
suture_call() {
  CALLS=$((CALLS + 1))
  LAST_OUT=$W/call-$CALLS.out
  LAST_ERR=$W/call-$CALLS.err
  echo "+ suture $*" >"$W/call-$CALLS.cmd"
  local t0 t1
  t0=$(date +%s.%N)
  set +e
  timeout -s KILL "$SUTURE_CALL_TIMEOUT" "${SUTURE_WRAPPER[@]}" "$SUTURE" "$@" >"$LAST_OUT" 2>"$LAST_ERR"
  LAST_RC=$?
  set -e
  t1=$(date +%s.%N)
  LAST_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  say "suture $* -> exit $LAST_RC in ${LAST_SECONDS}s"
  sed -n '1,30{s/^/    | /;p}' "$LAST_OUT" "$LAST_ERR"  # no pipe: head would SIGPIPE sed under pipefail
}

# Expects the last call to have succeeded.
expect_success() {
  [[ $LAST_RC -eq 0 ]] || fail "suture $1 failed (exit $LAST_RC): $(head -n 3 "$LAST_ERR")"
  ! grep -q '^suture: error:' "$LAST_ERR" || fail "suture $1 exited 0 but printed an error"
}

# Expects the last call to have been refused the proper way: a non-zero exit that
# is not a crash, and a first stderr line "suture: error: ..." matching REGEX.
expect_refusal() {
  local what=$1 regex=$2
  [[ $LAST_RC -ne 0 ]] || fail "suture $what succeeded but should have been refused ($regex)"
  [[ $LAST_RC -lt 128 ]] || fail "suture $what died by signal $((LAST_RC - 128)) instead of refusing"
  local first
  first=$(head -n 1 "$LAST_ERR")
  [[ $first == "suture: error: "* ]] ||
    fail "suture $what: stderr does not start with 'suture: error: ' (got: '$first')"
  "${PROBE[0]}" -c 'import re, sys; sys.exit(0 if re.search(sys.argv[1], sys.argv[2], re.I) else 1)' \
    "$regex" "$first" || fail "suture $what: error '$first' does not match /$regex/"
}

# The stderr of the last call is one line (bad input gets a one-line error).
expect_one_line_error() {
  local n
  n=$(grep -c '' "$LAST_ERR" || true)
  [[ $n -eq 1 ]] || fail "expected a one-line error, got $n lines on stderr"
}

# The last call took less than SECONDS.
expect_quick() {
  awk -v t="$LAST_SECONDS" -v max="$1" 'BEGIN { exit !(t < max) }' ||
    fail "suture took ${LAST_SECONDS}s; expected under $1 s"
}

# Resolves patch arguments: NAME -> $W/NAME.sut; directories and paths as given.
patch_args() {
  local a
  for a in "$@"; do
    if [[ -e $W/$a.sut ]]; then
      echo "$W/$a.sut"
    elif [[ -d $W/$a ]]; then
      echo "$W/$a"
    else
      echo "$a"
    fi
  done
}

# Splits "[--timeout S] [--json] REST..." into OPTS and REST.
split_options() {
  OPTS=()
  REST=()
  while [[ $# -gt 0 ]]; do
    case $1 in
      --timeout | --mode | --safe-point) OPTS+=("$1" "$2"); shift 2 ;;
      --*) OPTS+=("$1"); shift ;;
      *) REST=("$@"); return ;;
    esac
  done
}

# register_patch NAME SUT TARGET_FILE: learns the id of patch file SUT (as
# `suture inspect` tells it) and checks that it is keyed to TARGET_FILE; NAME
# then stands for it.
register_patch() {
  local name=$1 sut=$2 target=$3
  suture_call inspect "$sut"
  expect_success inspect
  local id
  id=$(grep -oE '\b[0-9a-f]{16}\b' "$LAST_OUT" | head -n 1 || true)
  [[ -n $id ]] || fail "suture inspect $sut shows no 16-hex-digit patch id"
  local build_id
  build_id=$(readelf -n "$target" | sed -n 's/.*Build ID: *//p')
  [[ -n $build_id ]] || fail "$target has no build-id"
  grep -qF -e "$build_id" -e "$(basename "$target")" "$LAST_OUT" ||
    fail "suture inspect $sut names neither the target's build-id nor its file"
  PATCH_ID[$name]=$id
  say "patch $name has id $id"
}

# pack NAME TARGET_FILE: $W/NAME.o against $W/TARGET_FILE -> $W/NAME.sut.
pack() {
  local name=$1 target=$2
  [[ $target == /* ]] || target=$W/$target
  rm -f "$W/$name.sut"
  suture_call pack --target "$target" "$W/$name.o" -o "$W/$name.sut"
  expect_success pack
  [[ -s $W/$name.sut ]] || fail "suture pack did not write $W/$name.sut"
  register_patch "$name" "$W/$name.sut" "$target"
}

# pack_fails REGEX NAME TARGET_FILE: pack refuses, writes nothing.
pack_fails() {
  local regex=$1 name=$2 target=$3
  [[ $target == /* ]] || target=$W/$target
  rm -f "$W/$name.sut"
  suture_call pack --target "$target" "$W/$name.o" -o "$W/$name.sut"
  expect_refusal pack "$regex"
  [[ ! -e $W/$name.sut ]] || fail "suture pack refused but left $W/$name.sut behind"
}

# --- building from a diff ------------------------------------------------------

PROJECT=            # $W/NAME of the last project built
PROJECT_MAKE=()     # its make arguments

# project DIR [MAKE_ARGS...]: copies the project (timestamps kept, so suture
# build finds the same tree on every run and reuses its cached original build)
# and builds it the project's own way.
project() {
  local dir
  dir=$(src_path "$1")
  shift
  [[ -f $dir/Makefile ]] || fail "$dir is not a project (no Makefile)"
  PROJECT=$W/$(basename "$dir")
  PROJECT_MAKE=("$@")
  say "build project $(basename "$dir") ${PROJECT_MAKE[*]}"
  rm -rf "$PROJECT"
  cp -a "$dir" "$PROJECT"
  cp -p "$SCENARIOS/lib/scenario.h" "$PROJECT/"
  make -s -C "$PROJECT" "${PROJECT_MAKE[@]}" >"$W/project-build.log" 2>&1 ||
    fail "the project does not build: $(tail -n 5 "$W/project-build.log")"
}

# build_from_diff NAME DIFF...: suture build of the last project; every patch
# it writes is named NAME, and NAME/BINARY.
build_from_diff() {
  local name=$1
  shift
  [[ -n $PROJECT ]] || fail "build_from_diff needs a project first"
  local diffs=() d command="make -s"
  for d in "$@"; do diffs+=("$(src_path "$d")"); done
  [[ ${#PROJECT_MAKE[@]} -eq 0 ]] || command+=$(printf ' %q' "${PROJECT_MAKE[@]}")
  rm -rf "${W:?}/$name"
  suture_call build --source "$PROJECT" --build "$command" --output "$W/$name" --cache "$SCENARIO_CACHE" "${diffs[@]}"
  expect_success build
  LAST_BUILD_OUT=$LAST_OUT
  unset "PATCH_ID[$name]"
  local sut binary one n=0
  for sut in "$W/$name"/*.sut; do
    [[ -e $sut ]] || break
    binary=$(sed -n "s|^wrote $sut for ||p" "$LAST_BUILD_OUT")
    [[ -n $binary ]] || fail "suture build wrote $sut but does not say for which binary"
    [[ $binary == "$PROJECT"/* ]] || fail "$sut is for $binary, not a binary of the project"
    one=$name/$(basename "$sut" .sut)
    register_patch "$one" "$sut" "$binary"
    PATCH_ID[$name]=${PATCH_ID[$name]:+${PATCH_ID[$name]} }${PATCH_ID[$one]}
    n=$((n + 1))
  done
  [[ $n -gt 0 ]] || fail "suture build wrote no patch into $W/$name"
}

# expect_replaced FUNCTION...: the last build replaces exactly these (C++
# names as c++filt spells them).
expect_replaced() {
  local got want
  got=$(sed -n 's/^  replaces //p' "$LAST_BUILD_OUT" | c++filt | sort -u)
  want=$(printf '%s\n' "$@" | sort -u)
  [[ $got == "$want" ]] || fail "suture build replaces [$(echo $got)], expected [$(echo $want)]"
}

# patch_object NAME[/BINARY] OUT: the relocatable object inside the patch file
# (after the header: magic, version, metadata and object sizes, checksum).
patch_object() {
  local sut suts
  sut=$(patch_args "$1")
  if [[ -d $sut ]]; then
    suts=("$sut"/*.sut)
    [[ ${#suts[@]} -eq 1 && -f ${suts[0]} ]] || fail "$1 is not one patch: $(ls "$sut")"
    sut=${suts[0]}
  fi
  [[ -f $sut ]] || fail "$1 is not a patch file ($sut)"
  "${PROBE[@]}" patch-object "$sut" "$W/$2" || fail "cannot read the object of $sut"
}

# --- the target ----------------------------------------------------------------

# Fails unless the target runs: not exited, no thread stopped or left traced.
alive() {
  [[ -n $TARGET_PID ]] || fail "no target was started"
  local why
  why=$("${PROBE[@]}" threads-ok "$TARGET_PID") || fail "target is not running normally: $why"
}

start() {
  local bin=$1
  shift
  [[ $bin == /* ]] || bin=$W/$bin
  : >"$LOG"
  (exec_ordinary "$bin" "$@") >"$LOG" 2>&1 </dev/null &
  TARGET_PID=$!
  MARK=0
  say "started $(basename "$bin") as pid $TARGET_PID"
  local out
  out=$("${PROBE[@]}" wait "$LOG" 0 '.' 5 "$TARGET_PID") || fail "the target printed nothing"
  MARK=0
}

mark() {
  MARK=$("${PROBE[@]}" end "$LOG")
}

new_lines() {
  "${PROBE[@]}" lines "$LOG" "$MARK"
}

wait_for() {
  local regex=$1 timeout=${2:-$SCENARIO_WAIT} out rc=0
  out=$("${PROBE[@]}" wait "$LOG" "$MARK" "$regex" "$timeout" "$TARGET_PID") || rc=$?
  case $rc in
    0) MARK=$(head -n 1 <<<"$out"); say "saw: $(tail -n 1 <<<"$out")" ;;
    3) fail "target stopped running while waiting for /$regex/: $out" ;;
    *) fail "no line matching /$regex/ within ${timeout}s" ;;
  esac
}

# Waits until COUNT lines since the last step match REGEX; the mark stays, so
# new_lines then shows them all.
wait_lines() {
  local count=$1 regex=$2 timeout=${3:-$SCENARIO_WAIT} out rc=0
  out=$("${PROBE[@]}" wait "$LOG" "$MARK" "$regex" "$timeout" "$TARGET_PID" "$count") || rc=$?
  case $rc in
    0) ;;
    3) fail "target stopped running while waiting for $count lines matching /$regex/: $out" ;;
    *) fail "fewer than $count lines matching /$regex/ within ${timeout}s" ;;
  esac
}

expect_no() {
  local regex=$1 seconds=${2:-1}
  mark
  local from=$MARK
  sleep "$seconds"
  alive
  mark
  local lines
  lines=$("${PROBE[@]}" lines "$LOG" "$from")
  [[ -n $lines ]] || fail "the target printed nothing in ${seconds}s"
  local hit
  if hit=$("${PROBE[@]}" match "$regex" <<<"$lines"); then
    fail "unexpected line matching /$regex/: $hit"
  fi
  MARK=$from # new_lines shows what was looked at
}

expect_running() {
  mark
  wait_for '.'
  wait_for '.'
  alive
}

snapshot() {
  "${PROBE[@]}" snapshot "$TARGET_PID" >"$1" || fail "could not read the target's memory"
}

expect_unchanged() {
  local before=$1 after=$W/snapshot-after-$CALLS
  alive
  snapshot "$after"
  diff -u "$before" "$after" >"$after.diff" ||
    fail "the target changed: $(head -n 12 "$after.diff")"
  expect_running
}

# --- verbs on the live target --------------------------------------------------

# ids_of NAME...: IDS = the ids of the patches these names stand for.
ids_of() {
  IDS=()
  local name more
  for name in "$@"; do
    [[ -n ${PATCH_ID[$name]:-} ]] || fail "no patch named $name was packed or built"
    read -ra more <<<"${PATCH_ID[$name]}"
    IDS+=("${more[@]}")
  done
}

# shows_ids WHAT FILE NAME...: every id of these names is in FILE.
shows_ids() {
  local what=$1 file=$2 name id
  shift 2
  for name in "$@"; do
    ids_of "$name"
    for id in "${IDS[@]}"; do
      grep -qF "$id" "$file" || fail "$what does not list patch $name ($id)"
    done
  done
}

# hides_ids WHAT FILE NAME...: no id of these names is in FILE.
hides_ids() {
  local what=$1 file=$2 name id
  shift 2
  for name in "$@"; do
    ids_of "$name"
    for id in "${IDS[@]}"; do
      ! grep -qF "$id" "$file" || fail "$what still lists patch $name ($id)"
    done
  done
}

apply() {
  split_options "$@"
  local patches
  mapfile -t patches < <(patch_args "${REST[@]}")
  mark
  suture_call apply "${OPTS[@]}" "$TARGET_PID" "${patches[@]}"
  expect_success apply
  local name
  for name in "${REST[@]}"; do
    [[ -z ${PATCH_ID[$name]:-} ]] || shows_ids apply "$LAST_OUT" "$name"
  done
  if [[ " ${OPTS[*]} " == *" --json "* ]]; then
    "${PROBE[0]}" -c 'import json, sys; json.load(open(sys.argv[1]))' "$LAST_OUT" ||
      fail "apply --json printed invalid JSON"
  else
    grep -qi 'applied' "$LAST_OUT" || fail "apply does not say what it applied"
    grep -qiE 'pause|longest hold' "$LAST_OUT" || fail "apply does not report the pause"
  fi
  alive
}

apply_fails() {
  local regex=$1
  shift
  split_options "$@"
  local patches
  mapfile -t patches < <(patch_args "${REST[@]}")
  local before=$W/snapshot-before-$((CALLS + 1))
  snapshot "$before"
  suture_call apply "${OPTS[@]}" "$TARGET_PID" "${patches[@]}"
  expect_refusal apply "$regex"
  expect_unchanged "$before"
}

revert() {
  split_options "$@"
  ids_of "${REST[@]}"
  mark
  suture_call revert "${OPTS[@]}" "$TARGET_PID" "${IDS[@]}"
  expect_success revert
  alive
}

revert_fails() {
  local regex=$1
  shift
  split_options "$@"
  ids_of "${REST[@]}"
  local before=$W/snapshot-before-$((CALLS + 1))
  snapshot "$before"
  suture_call revert "${OPTS[@]}" "$TARGET_PID" "${IDS[@]}"
  expect_refusal revert "$regex"
  expect_unchanged "$before"
}

status_call() {
  suture_call status "$@" "$TARGET_PID"
  expect_success status
}

status_has() {
  status_call
  shows_ids status "$LAST_OUT" "$@"
  status_call --json
  "${PROBE[0]}" -c 'import json, sys; json.load(open(sys.argv[1]))' "$LAST_OUT" ||
    fail "status --json printed invalid JSON"
  shows_ids 'status --json' "$LAST_OUT" "$@"
}

status_lacks() {
  status_call
  hides_ids status "$LAST_OUT" "$@"
}

status_empty() {
  status_lacks "${!PATCH_ID[@]}"
  status_call --json
  "${PROBE[0]}" -c 'import json, sys; json.load(open(sys.argv[1]))' "$LAST_OUT" ||
    fail "status --json printed invalid JSON"
  hides_ids 'status --json' "$LAST_OUT" "${!PATCH_ID[@]}"
}

# suture_background ARGS...: starts suture in the background (SIGINT at its
# default, as from a terminal); SUTURE_BG is its pid.
suture_background() {
  CALLS=$((CALLS + 1))
  LAST_OUT=$W/call-$CALLS.out
  LAST_ERR=$W/call-$CALLS.err
  echo "+ suture $* (background)" >"$W/call-$CALLS.cmd"
  (exec_ordinary "$SUTURE" "$@") >"$LAST_OUT" 2>"$LAST_ERR" </dev/null &
  SUTURE_BG=$!
  BACKGROUND_PIDS+=("$SUTURE_BG")
  BG_STARTED=$(date +%s.%N)
  say "started suture $* as pid $SUTURE_BG"
}

# suture_background_wait TIMEOUT: waits for it; LAST_RC, LAST_SECONDS (since
# the signal, if one was sent with suture_signal, else since its start).
suture_background_wait() {
  local timeout=$1 waited=0
  while [[ $(ps -o stat= -p "$SUTURE_BG" || true) == [^Z]* ]]; do
    sleep 0.05
    waited=$((waited + 1))
    [[ $waited -lt $((timeout * 20)) ]] || fail "suture (pid $SUTURE_BG) still runs ${timeout}s later"
  done
  set +e
  wait "$SUTURE_BG"
  LAST_RC=$?
  set -e
  LAST_SECONDS=$(awk -v a="$BG_STARTED" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  say "suture (background) -> exit $LAST_RC after ${LAST_SECONDS}s"
  sed -n '1,30{s/^/    | /;p}' "$LAST_OUT" "$LAST_ERR"  # no pipe: head would SIGPIPE sed under pipefail
}

# suture_signal SIG: sends SIG to the background suture only (not its group).
suture_signal() {
  kill -s "$1" "$SUTURE_BG" || fail "suture (pid $SUTURE_BG) was already gone when sending SIG$1"
  BG_STARTED=$(date +%s.%N)
  say "sent SIG$1 to suture"
}

# wait_exit CODE [TIMEOUT]: the target ends by itself with exit status CODE.
wait_exit() {
  local code=$1 timeout=${2:-10} waited=0 rc
  while [[ $(ps -o stat= -p "$TARGET_PID" || true) == [^Z]* ]]; do
    sleep 0.05
    waited=$((waited + 1))
    [[ $waited -lt $((timeout * 20)) ]] || fail "the target did not exit within ${timeout}s"
  done
  set +e
  wait "$TARGET_PID"
  rc=$?
  set -e
  TARGET_PID=
  [[ $rc -eq $code ]] || fail "the target exited with status $rc, expected $code"
  expect_sane_log
}

# The target's log shows no stray signal, no crash, and its counters never
# skipped or repeated.
expect_sane_log() {
  local bad
  bad=$(grep -E -m 3 '^(stray|crash)' "$LOG" || true)
  [[ -z $bad ]] || fail "the target reported: $bad"
  bad=$("${PROBE[@]}" counting "$LOG") || fail "the target's own counting went wrong: $bad"
}

# stop: the target must have survived everything; then it is killed.
stop() {
  alive
  expect_sane_log
  kill -TERM "$TARGET_PID"
  wait "$TARGET_PID" 2>/dev/null || true
  TARGET_PID=
}

# --- run it --------------------------------------------------------------------

[[ -x $SUTURE ]] || fail "SUTURE=$SUTURE is not an executable"
say "work dir $W"
cd "$W"
# shellcheck source=/dev/null
source "$SCENARIO_DIR/scenario.sh"
[[ -z $TARGET_PID ]] || stop
