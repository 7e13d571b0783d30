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
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

tether=${TETHER:-build/release/apps/tether/tether} # TETHER=path: another build
if [[ ! -x $tether ]]; then
  cmake --preset release > /dev/null
  cmake --build --preset release --target tether > /dev/null
fi
ulimit -n 65536 2> /dev/null || ulimit -n "$(ulimit -Hn)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 500); do
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0
    sleep 0.01
  done
  echo "nothing listens on $1" >&2
  return 1
}
rss_of() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

chunked_port=$(free_port)
python3 bench/proxy/chunked_backend.py "$chunked_port" &
pids+=($!)
small_port=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" << CONF
daemon off; worker_processes 1; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  client_body_temp_path $work/nginx/b; proxy_temp_path $work/nginx/p;
  fastcgi_temp_path $work/nginx/f; uwsgi_temp_path $work/nginx/u; scgi_temp_path $work/nginx/s;
  server { listen 127.0.0.1:$small_port; location / { return 200 "hello from the backend\n"; } }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
pids+=($!)
wait_port "$chunked_port"
wait_port "$small_port"

start_tether() { # port backend
  cat > "$work/tether.yaml" << CONF
workers: 1
listeners: [{name: bench, address: 127.0.0.1, port: $1}]
admin: {address: 127.0.0.1, port: $(free_port)}
downstream: {idle_timeout: 300s, max_requests_per_connection: 0}
routes: [{path_prefix: /, cluster: backend}]
clusters:
  - name: backend
    endpoints: ["127.0.0.1:$2"]
    pool: {max_size: 128, idle_timeout: 60s}
CONF
  "$tether" proxy -c "$work/tether.yaml" > "$work/tether.log" 2>&1 &
}
start_haproxy() { # port backend
  cat > "$work/haproxy.cfg" << CONF
global
  nbthread 1
  maxconn $((clients + 100))
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend bench
  bind 127.0.0.1:$1
  default_backend backend
backend backend
  server b 127.0.0.1:$2 maxconn 128
CONF
  haproxy -db -q -f "$work/haproxy.cfg" &
}

echo "| proxy | response | RSS KiB before | RSS KiB, $clients idle | KiB per idle client |"
echo "|---|---|---:|---:|---:|"
for backend in chunked small; do
  backend_port=$([[ $backend == chunked ]] && echo "$chunked_port" || echo "$small_port")
  for proxy in tether haproxy; do
    port=$(free_port)
    "start_$proxy" "$port" "$backend_port"
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
