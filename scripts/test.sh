#!/usr/bin/env bash
# Builds Suture and runs its whole test suite: unit tests, fuzz smoke test and
# the live-patching scenarios (small real programs patched while they run).
# Installs its dependencies first. Usage: scripts/test.sh [ctest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
build=${SUTURE_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" -j "$(nproc)" --output-on-failure --timeout 300 "$@"
