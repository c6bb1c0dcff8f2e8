#!/usr/bin/env bash
# Checks the scenarios themselves: runs each with lib/stand-in-suture.sh, a
# suture whose apply and revert succeed without changing the target, and
# reports every scenario that still passes (it would not notice a patch that
# does nothing). Exit 1 if any passes.
#
#   check-stand-in.sh BUILD_DIR [SCENARIO...]     (default: every scenario)
#
# Scenarios fail at their first wait for patched output, so SCENARIO_WAIT is
# short here (default 3 s).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: $0 BUILD_DIR [SCENARIO...]}" && pwd)
shift
scenarios=("$@")
if [[ ${#scenarios[@]} -eq 0 ]]; then
  mapfile -t scenarios < <(sed -n '/^set(SUTURE_SCENARIOS/,/^)/{/^  /s/^  //p}' "$here/CMakeLists.txt")
fi
export SUTURE_REAL=$build/src/cli/suture SUTURE=$here/lib/stand-in-suture.sh
export SUTURE_INCLUDE=$here/../../include SCENARIO_WAIT=${SCENARIO_WAIT:-3}
passed=()
for s in "${scenarios[@]}"; do
  if bash "$here/run-scenario.sh" "$here/$s" "$build/tests/scenarios/stand-in/$s" >"$build/tests/scenarios/stand-in-$s.log" 2>&1; then
    echo "PASSES WITH THE STAND-IN: $s (see $build/tests/scenarios/stand-in-$s.log)"
    passed+=("$s")
  else
    echo "fails as it should: $s: $(grep -m 1 'FAIL:' "$build/tests/scenarios/stand-in-$s.log")"
  fi
done
[[ ${#passed[@]} -eq 0 ]]
