#!/usr/bin/env bash
# A suture that patches nothing, to check the scenarios themselves: each must
# fail when its patch does not take effect. apply and revert answer as the
# real ones do on success (exit 0, "applied ID", the pause, valid JSON with
# --json) without touching the target; every other verb (build, pack,
# inspect, status) is the real suture, named by SUTURE_REAL. See
# check-stand-in.sh, which runs the scenarios with it.
set -euo pipefail
real=${SUTURE_REAL:?SUTURE_REAL must name the real suture}
verb=${1:-}
case $verb in
  apply | revert) shift ;;
  *) exec "$real" "$@" ;;
esac

json=0 ids=() files=() pid=
while [[ $# -gt 0 ]]; do
  case $1 in
    --timeout) shift 2 ;;
    --json) json=1; shift ;;
    -*) shift ;;
    *)
      if [[ -z $pid ]]; then pid=$1
      elif [[ $verb == revert ]]; then ids+=("$1")
      elif [[ -d $1 ]]; then files+=("$1"/*.sut)
      else files+=("$1")
      fi
      shift ;;
  esac
done
kill -0 "$pid" 2>/dev/null || { echo "suture: error: no process $pid" >&2; exit 1; }
targets=()
for f in "${files[@]}"; do
  info=$("$real" inspect "$f") || { echo "suture: error: $f: not a patch" >&2; exit 1; }
  ids+=("$(grep -oE '\b[0-9a-f]{16}\b' <<<"$info" | head -n 1)")
  targets+=("$(sed -n 's/^target: \([^ ]*\).*/\1/p' <<<"$info")")
done
if [[ $json -eq 1 ]]; then
  printf '{"stand_in": true, "ids": [%s], "pause_us": 0}\n' "$(printf '"%s",' "${ids[@]}" | sed 's/,$//')"
else
  done_word=applied
  [[ $verb == apply ]] || done_word=reverted
  for i in "${!ids[@]}"; do echo "$done_word ${ids[$i]} ${targets[$i]:-} (stand-in: nothing changed)"; done
  echo "pause 0 us"
fi
