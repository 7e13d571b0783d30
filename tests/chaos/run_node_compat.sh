#!/usr/bin/env bash
# Starts `tether chaos` (API on 127.0.0.1, a port the kernel picks), installs the published
# toxiproxy-node-client from the lock file if it is not there yet, and runs the Node test
# against it. Stops the server it started, by its pid.
set -euo pipefail
tether=$1
dir=$(cd "$(dirname "$0")/node" && pwd)
if [[ ! -f $dir/node_modules/toxiproxy-node-client/package.json ]]; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
log=$(mktemp)
"$tether" chaos --host 127.0.0.1 --port 0 --seed 7 > "$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 500); do
  grep -q "API on" "$log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.01
done
url=$(grep -o 'http://[0-9.]*:[0-9]*' "$log" | head -1)
[[ -n $url ]] || { echo "tether chaos did not start:"; cat "$log"; exit 1; }
TOXIPROXY_URL=$url node --test "$dir/compat.test.js"
