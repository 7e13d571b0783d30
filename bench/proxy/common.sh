# Shared by the bench/proxy scripts (sourced, from the repository's root): a work directory and
# the processes started, stopped by their pids on exit; a built tether; free ports; the nginx
# backend; tether and HAProxy configured alike (one worker thread, client keep-alive, pooled
# kept-alive upstream connections). Everything listens on 127.0.0.1.

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
# CPU seconds, user and system, of a process and its children still running (nginx's worker).
cpu_of() {
  local user=0 sys=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    read -r user sys < <(awk -v u="$user" -v s="$sys" '{ print u + $14, s + $15 }' "/proc/$p/stat")
  done
  echo "$(echo "scale=4; $user / $(getconf CLK_TCK)" | bc) $(echo "scale=4; $sys / $(getconf CLK_TCK)" | bc)"
}
# Resident memory in KiB of a process and its children (nginx's worker).
rss_of() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    total=$((total + $(awk '/VmRSS/ { print $2 }' "/proc/$p/status")))
  done
  echo "$total"
}

# nginx, one worker, answering 23 bytes on PORT; returns once it listens.
start_backend_nginx() {
  local dir=$work/backend-$1
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" << CONF
daemon off; worker_processes 1; pid $dir/nginx.pid; error_log $dir/error.log;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  client_body_temp_path $dir/b; proxy_temp_path $dir/p;
  fastcgi_temp_path $dir/f; uwsgi_temp_path $dir/u; scgi_temp_path $dir/s;
  server { listen 127.0.0.1:$1; location / { return 200 "hello from the backend\n"; } }
}
CONF
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
  pids+=($!)
  wait_port "$1"
}

# tether_config PORT BACKEND_PORT [ADMIN_PORT] [LISTENER_TLS]: the benchmarks' tether config, in
# $work/tether.yaml (LISTENER_TLS: the listener's tls: mapping).
tether_config() {
  cat > "$work/tether.yaml" << CONF
workers: 1
listeners: [{name: bench, address: 127.0.0.1, port: $1${4:+, tls: $4}}]
admin: {address: 127.0.0.1, port: ${3:-$(free_port)}}
downstream: {idle_timeout: 300s, max_requests_per_connection: 0}
routes: [{path_prefix: /, cluster: backend}]
clusters:
  - name: backend
    endpoints: ["127.0.0.1:$2"]
    pool: {max_size: 128, idle_timeout: 60s}
CONF
}
# start_tether PORT BACKEND_PORT and start_haproxy PORT BACKEND_PORT [MAXCONN] [BIND_OPTIONS]
# (such as "ssl crt FILE"): in the background, $! their pid.
start_tether() {
  tether_config "$1" "$2"
  "${4:-$tether}" proxy -c "$work/tether.yaml" > "$work/tether.log" 2>&1 &
}
# TETHER_OLD=path: an older build measured beside the current one, as the proxy "tether_old".
tether_old=${TETHER_OLD:-}
start_tether_old() { start_tether "$1" "$2" "${3:-}" "$tether_old"; }
# HAProxy sizes its descriptor table for two per connection (client and server side) and, by
# default, refuses to start when maxconn * 2 is over the open-file limit (20,000, hard, on this
# machine). Idle clients hold one descriptor each, so it runs with `no strict-limits` (it warns
# and starts).
start_haproxy() {
  cat > "$work/haproxy.cfg" << CONF
global
  nbthread 1
  maxconn ${3:-2000}
  no strict-limits
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend bench
  bind 127.0.0.1:$1 ${4:-}
  default_backend backend
backend backend
  server b 127.0.0.1:$2 maxconn 128
CONF
  haproxy -db -q -f "$work/haproxy.cfg" &
}
