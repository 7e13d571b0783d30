#!/usr/bin/env bash
# Memory a proxy keeps for idle keep-alive clients after what they were served: tether and
# HAProxy in front of a backend answering with a chunked body of 4,000 small chunks (a proxy gets
# thousands of body pieces per read), then in front of nginx answering 23 bytes; per proxy the
# resident memory before and with N idle clients, each after one such response (the clients
# connect one after another), and the difference per client.
#
#   bench/proxy/idle_memory.sh [clients=500]
#
# Everything listens on 127.0.0.1; every process started here is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/../.."
clients=${1:-500}
source bench/proxy/common.sh

chunked_port=$(free_port)
python3 bench/proxy/chunked_backend.py "$chunked_port" &
pids+=($!)
small_port=$(free_port)
start_backend_nginx "$small_port"
wait_port "$chunked_port"

echo "| proxy | response | RSS KiB before | RSS KiB, $clients idle | KiB per idle client |"
echo "|---|---|---:|---:|---:|"
for backend in chunked small; do
  backend_port=$([[ $backend == chunked ]] && echo "$chunked_port" || echo "$small_port")
  for proxy in tether haproxy; do
    port=$(free_port)
    "start_$proxy" "$port" "$backend_port" "$((clients + 100))"
    pid=$!
    pids+=("$pid")
    wait_port "$port"
    before=$(rss_of "$pid")
    # One client at a time: what stays per idle connection, not the high-water mark of a burst
    # (freed memory the allocator keeps shows in RSS too).
    coproc holder { python3 bench/proxy/idle_connections.py 127.0.0.1 "$port" "$clients" / 1; }
    read -r ready count <&"${holder[0]}"
    after=$(rss_of "$pid")
    exec {holder[1]}>&-
    wait "$holder_PID" 2> /dev/null || true
    kill "$pid"
    wait "$pid" 2> /dev/null || true
    what=$([[ $backend == chunked ]] && echo "4,000 chunks of 10 bytes" || echo "23 bytes")
    echo "| $proxy | $what | $before | $after | $(echo "scale=1; ($after - $before) / $count" | bc) |"
  done
done
