#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, builds the release preset and
# runs every test (unit, integration, example, fuzz corpus), then runs the unit suites (and the suites labelled `sanitize`) again under
# AddressSanitizer + UndefinedBehaviorSanitizer and under ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

run() {
  echo "+ $*"
  "$@"
}

for preset in release asan tsan; do
  echo "=== ${preset} ==="
  run cmake --preset "$preset" > /dev/null
  run cmake --build --preset "$preset"
  run ctest --preset "$preset" --output-on-failure
done
