#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind (no timing noise): tether (TETHER=path)
# and, with TETHER_OLD=path, an older build, each in front of the same nginx backend, after the
# same warm-up, under the same load (wrk, 4 connections, for a fixed time; the count is divided
# by the requests wrk made). The proxy's start-up and warm-up are left out: the counters are
# zeroed after the warm-up and dumped after the load (callgrind_control -z, -d).
#
#   bench/proxy/instructions.sh [seconds=10]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
source bench/proxy/common.sh

backend_port=$(free_port)
start_backend_nginx "$backend_port"

count() { # BINARY NAME
  local port pid out requests instructions
  port=$(free_port)
  tether_config "$port" "$backend_port"
  out=$work/callgrind.$2
  valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$1" proxy -c "$work/tether.yaml" > "$work/$2.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 3000); do
    (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
    sleep 0.01
  done
  wrk -t1 -c4 -d2s "http://127.0.0.1:$port/hello" > /dev/null
  callgrind_control -z "$pid" > /dev/null 2>&1
  requests=$(wrk -t1 -c4 -d"${seconds}s" "http://127.0.0.1:$port/hello" | awk '/requests in/ { print $1 }')
  callgrind_control -d "$pid" > /dev/null 2>&1
  kill "$pid"
  wait "$pid" 2> /dev/null || true
  [[ -n ${KEEP:-} ]] && cp "$out".* "$KEEP"/
  instructions=$(cat "$out".* | awk '/^totals:/ { n += $2 } END { print n }')
  echo "$2: $requests requests, $((instructions / requests)) instructions per request"
}

count "$tether" tether
if [[ -n ${TETHER_OLD:-} ]]; then
  count "$TETHER_OLD" tether_old
fi
