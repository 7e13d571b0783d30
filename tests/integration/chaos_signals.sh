#!/usr/bin/env bash
# tether chaos (the real binary): SIGHUP, SIGUSR1 and SIGUSR2 are logged and ignored, the API
# still answers, and SIGTERM stops it with exit 0. Listens on 127.0.0.1; stopped by its pid.
set -euo pipefail
tether=$1
work=$(mktemp -d)
pid=""
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"$tether" chaos --port 0 > "$work/chaos.log" 2>&1 &
pid=$!
for _ in $(seq 1 500); do grep -q "API on" "$work/chaos.log" && break; sleep 0.01; done
api=$(grep -o 'http://[0-9.:]*' "$work/chaos.log")
for sig in HUP USR1 USR2; do
  kill -s "$sig" "$pid"
done
for _ in $(seq 1 200); do grep -q "SIGUSR2 ignored" "$work/chaos.log" && break; sleep 0.01; done
for sig in SIGHUP SIGUSR1 SIGUSR2; do
  grep -q "$sig ignored" "$work/chaos.log" || { echo "no line says $sig was ignored"; cat "$work/chaos.log"; exit 1; }
done
[[ $(curl -s "$api/version") == *version* ]] || { echo "the API does not answer after the signals"; exit 1; }
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""
[[ $status == 0 ]] || { echo "SIGTERM: exit $status"; exit 1; }
echo "tether chaos: SIGHUP, SIGUSR1, SIGUSR2 ignored; SIGTERM -> exit 0"
