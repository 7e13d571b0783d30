#!/usr/bin/env bash
# Builds tether and runs it. Until the proxy lands, "running tether" is its help and the built-in
# demonstration of the resilience layer (a simulated retry storm, naive vs tether).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cmake --preset release > /dev/null
cmake --build --preset release --target tether > /dev/null
./build/release/apps/tether/tether --help
echo
./build/release/apps/tether/tether demo "$@"
