# What the process tests of tether proxy share (sourced, after `set -euo pipefail`): a work
# directory removed at the end, the processes they start (in `pids`, each stopped by its pid at
# the end), a failure that shows the logs, the Python backend, and a free loopback port.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$work"/*.log; do echo "--- $f"; tail -20 "$f"; done; exit 1; }

# Starts backend.py; its port in $backend.
start_backend() {
  python3 "$here/backend.py" > "$work/backend.port" &
  pids+=($!)
  for _ in $(seq 1 200); do [[ -s $work/backend.port ]] && break; sleep 0.05; done
  backend=$(head -1 "$work/backend.port")
  [[ -n $backend ]] || fail "the backend did not start"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
