#!/usr/bin/env bash
# How long `suture build` takes to make the live patch of each Redis CVE fix
# the end-to-end tests use, with its original build warm in the cache, next to
# one plain rebuild of the same tree (`make clean`, then `make MALLOC=libc
# redis-server`): what a user would otherwise wait for before a restart.
#
#   bench/build-time.sh SUTURE WORK_DIR [REPEAT]
#
# Per CVE, in one run: the tree before the fix is prepared as the e2e test
# does (tests/e2e/redis-cve/prepare-tree.sh; kept in WORK_DIR, and so is the
# suture cache, shared with the e2e test when WORK_DIR is its work directory);
# a first `suture build` fills the cache if it is cold (its time is then
# reported as the cold time); then REPEAT (default 3) warm `suture build`s;
# then one plain rebuild of a copy of the tree. Prints a Markdown table;
# WORK_DIR/build-time.json has every time.
set -euo pipefail
SUTURE=$(realpath "$1") W=$2 REPEAT=${3:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
E2E=$HERE/../tests/e2e/redis-cve
mkdir -p "$W"
W=$(cd "$W" && pwd)
# Redis's build stamps `git diff | wc -l` of the repository it sits in into
# release.h; a work directory inside a checkout (this one's build directory)
# must not make the trees look like part of it.
export GIT_CEILING_DIRECTORIES=$W
source "$E2E/cves.sh"
JOBS=$(nproc)
BUILD="make -j$JOBS MALLOC=libc redis-server"

seconds() {  # seconds COMMAND...: runs it, prints its wall time (s), fails with it
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >>"$LOG" 2>&1 || { echo "build-time: '$*' failed (see $LOG)" >&2; exit 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

json="[" rows=()
# BENCH_CVES: a subset, e.g. BENCH_CVES="CVE-2025-32023 CVE-2024-46981".
read -r -a chosen <<<"${BENCH_CVES:-${CVES[*]}}"
for cve in "${chosen[@]}"; do
  cve_facts "$cve" || { echo "build-time: unknown $cve (known: ${CVES[*]})" >&2; exit 2; }
  C=$W/$cve
  LOG=$C/build-time.log
  mkdir -p "$C"
  : >"$LOG"
  CVE_DIR=$C "$E2E/prepare-tree.sh" "$W" "$FIX" "$MARK"
  rm -rf "$C/bench-out"
  build_patch() { "$SUTURE" build --source "$C/tree" --build "$BUILD" --clean "make distclean" --output "$C/bench-out" --cache "$C/cache" "$C/fix.diff"; }
  first=$(seconds build_patch)
  cold='"-"'
  grep -q 'original build: built' "$LOG" && cold=$first
  warm=()
  for _ in $(seq "$REPEAT"); do warm+=("$(seconds build_patch)"); done
  grep -q 'original build: reused from the cache' "$LOG" || { echo "build-time: the cache was not reused (see $LOG)" >&2; exit 1; }
  rm -rf "$C/plain"
  cp -a "$C/tree" "$C/plain"
  (cd "$C/plain" && make clean >>"$LOG" 2>&1)
  plain=$(cd "$C/plain" && seconds $BUILD)
  rm -rf "$C/plain"
  m=$(median "${warm[@]}")
  ratio=$(awk -v p="$plain" -v m="$m" 'BEGIN { printf "%.1f", p / m }')
  rows+=("| $cve | $m (${warm[*]}) | ${cold//\"/} | $plain | ${ratio}× |")
  json+="$([[ $json == "[" ]] || echo ,){\"cve\":\"$cve\",\"warm_s\":[$(IFS=,; echo "${warm[*]}")],\"cold_s\":$cold,\"plain_rebuild_s\":$plain}"
done
echo "$json]" >"$W/build-time.json"

echo "| fix | suture build, warm cache: median (runs) s | suture build, cold cache s | plain rebuild s | plain / warm |"
echo "|---|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
