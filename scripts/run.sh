#!/usr/bin/env bash
# Builds tether and runs its main job: the proxy, on its built-in configuration (a listener on
# 127.0.0.1:8080, the admin listener on 127.0.0.1:9901, and two demo upstreams it starts itself
# on 127.0.0.1:8081 and :8082). Ctrl-C drains and stops it. Arguments go to `tether proxy`
# (`./scripts/run.sh -c examples/proxy.yaml` runs a config of your own).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cmake --preset release > /dev/null
cmake --build --preset release --target tether > /dev/null
exec ./build/release/apps/tether/tether proxy "$@"
