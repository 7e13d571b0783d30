#!/usr/bin/env bash
# tether proxy, HAProxy and nginx, configured alike (one worker thread each, client keep-alive,
# kept-alive pooled upstream connections), in front of the same backend (nginx answering
# GET /hello), driven by wrk in turn on this machine, in one run. Per proxy: requests/s, p50 and
# p99 latency, CPU time per request (utime + stime from /proc), and resident memory with 10,000
# idle keep-alive client connections open. Writes results.md and results.json to the output
# directory (default build/bench-proxy) and prints the table.
#
#   bench/proxy/run.sh [seconds=10] [connections=50] [idle=10000] [outdir] [rounds=3]
#   TETHER=path (the build measured), TETHER_OLD=path (an older build beside it, "tether_old")
#
# The proxies are measured in turn, `rounds` times over, each round starting with the next one,
# and the table gives each one's median round: on two shared cores one run varies by 5-10 %,
# more than the differences being measured, and a slow spell of the machine then falls on
# every proxy alike instead of on one. Memory is measured in the first round.
#
# HAProxy runs with maxconn just above the idle count and `no strict-limits` (see common.sh).
#
# Everything listens on 127.0.0.1; every process started here is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
connections=${2:-50}
idle=${3:-10000}
out=${4:-build/bench-proxy}
rounds=${5:-3}
mkdir -p "$out"
source bench/proxy/common.sh

# The backend: nginx, one worker, answering /hello.
backend_port=$(free_port)
start_backend_nginx "$backend_port"

start_nginx() {
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" << EOF
daemon off; worker_processes 1; worker_rlimit_nofile 65536; pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 30000; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  client_body_temp_path $work/nginx/b; proxy_temp_path $work/nginx/p;
  fastcgi_temp_path $work/nginx/f; uwsgi_temp_path $work/nginx/u; scgi_temp_path $work/nginx/s;
  upstream backend { server 127.0.0.1:$backend_port; keepalive 128; }
  server {
    listen 127.0.0.1:$1;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
}

versions="tether $($tether --version | awk '{print $2}'), $(haproxy -v | head -1 | awk '{print "HAProxy " $3}'), $(nginx -v 2>&1 | sed 's|nginx version: nginx/|nginx |')"
echo "backend: nginx on 127.0.0.1:$backend_port; wrk -t1 -c$connections -d${seconds}s; $idle idle connections"
echo "$versions"
# One measurement of one proxy, into $line: "rps p50 p99 user_us sys_us rss rss_idle idle errors".
# (Not run in a subshell, so the proxy's pid reaches the cleanup list.)
measure() {
  local proxy=$1 with_idle=$2 port pid url body result requests rps p50 p99 errors
  local u0 s0 u1 s1 rss_before rss_idle=0 count=0 ready
  port=$(free_port)
  "start_$proxy" "$port" "$backend_port" "$((idle + 100))"
  pid=$!
  pids+=("$pid")
  wait_port "$port"
  url="http://127.0.0.1:$port/hello"
  body=$(curl -s "$url")
  [[ $body == "hello from the backend" ]] || { echo "$proxy does not proxy: '$body'"; exit 1; }
  wrk -t1 -c"$connections" -d2s "$url" > /dev/null # warm up: connections made, pools filled
  read -r u0 s0 < <(cpu_of "$pid")
  result=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency "$url")
  read -r u1 s1 < <(cpu_of "$pid")
  requests=$(echo "$result" | awk '/requests in/ { print $1 }')
  rps=$(echo "$result" | awk '/Requests\/sec/ { print $2 }')
  p50=$(echo "$result" | awk '$1 == "50%" { print $2 }')
  p99=$(echo "$result" | awk '$1 == "99%" { print $2 }')
  errors=$(echo "$result" | awk '/Non-2xx|Socket errors/ { printf "%s;", $0 }' | tr ' ' '_')
  rss_before=$(rss_of "$pid")
  if [[ $with_idle == 1 ]]; then
    # 10,000 idle keep-alive clients, each after one request.
    coproc holder { python3 bench/proxy/idle_connections.py 127.0.0.1 "$port" "$idle" /hello; }
    read -r ready count <&"${holder[0]}"
    rss_idle=$(rss_of "$pid")
    exec {holder[1]}>&-
    wait "$holder_PID" 2> /dev/null || true
  fi
  kill "$pid"
  wait "$pid" 2> /dev/null || true
  line="$rps $p50 $p99 $(echo "scale=2; ($u1 - $u0) * 1000000 / $requests" | bc) $(echo "scale=2; ($s1 - $s0) * 1000000 / $requests" | bc) $rss_before $rss_idle $count ${errors:--}"
}

proxies=(tether haproxy nginx)
if [[ -n $tether_old ]]; then
  proxies=(tether tether_old haproxy nginx)
fi
declare -A runs
for round in $(seq 1 "$rounds"); do
  # Each round starts with the next proxy, so that none is always measured first (right after
  # the previous round's last) or last.
  for i in $(seq 0 $((${#proxies[@]} - 1))); do
    proxy=${proxies[$(((round - 1 + i) % ${#proxies[@]}))]}
    measure "$proxy" "$([[ $round == 1 ]] && echo 1 || echo 0)"
    runs[$proxy,$round]=$line
    read -r rps p50 p99 user sys rss rss_idle count errors <<< "$line"
    echo "round $round $proxy: $rps req/s, p50 $p50, p99 $p99, $(echo "$user + $sys" | bc) us CPU/request (user $user, system $sys)${errors/#-/}"
    if [[ $round == 1 ]]; then
      runs[$proxy,rss]=$rss
      runs[$proxy,rss_idle]=$rss_idle
      runs[$proxy,idle]=$count
      echo "  RSS $rss KiB -> $rss_idle KiB with $count idle connections"
    fi
  done
done

# Each proxy's median round by CPU per request (its other figures from the same round).
json_rows=()
md_rows=()
for proxy in "${proxies[@]}"; do
  median=$(for round in $(seq 1 "$rounds"); do
    read -r rps p50 p99 user sys rest <<< "${runs[$proxy,$round]}"
    echo "$(echo "$user + $sys" | bc) $round"
  done | sort -n | awk -v m=$(((rounds + 1) / 2)) 'NR == m { print $2 }')
  read -r rps p50 p99 user sys rest <<< "${runs[$proxy,$median]}"
  cpu=$(echo "$user + $sys" | bc)
  all=$(for round in $(seq 1 "$rounds"); do
    read -r r_rps r_p50 r_p99 r_user r_sys rest <<< "${runs[$proxy,$round]}"
    echo "$r_user + $r_sys" | bc
  done | paste -sd, -)
  rss=${runs[$proxy,rss]}
  rss_idle=${runs[$proxy,rss_idle]}
  md_rows+=("| $proxy | $rps | $p50 | $p99 | $cpu ($user + $sys) | $all | $((rss / 1024)) | $((rss_idle / 1024)) |")
  json_rows+=("{\"proxy\":\"$proxy\",\"requests_per_second\":$rps,\"p50\":\"$p50\",\"p99\":\"$p99\",\"cpu_us_per_request\":$cpu,\"user_us_per_request\":$user,\"system_us_per_request\":$sys,\"cpu_us_per_request_rounds\":[$all],\"rss_kib\":$rss,\"rss_kib_with_idle\":$rss_idle,\"idle_connections\":${runs[$proxy,idle]}}")
done

{
  echo "Versions: $versions. Backend: nginx, 1 worker. Load: wrk -t1 -c$connections -d${seconds}s, $rounds rounds; each proxy's median round."
  echo
  echo "| proxy | requests/s | p50 | p99 | CPU us/request (user + system) | CPU us/request, every round | RSS MiB | RSS MiB, $idle idle conns |"
  echo "|---|---:|---:|---:|---:|---|---:|---:|"
  printf '%s\n' "${md_rows[@]}"
} > "$out/results.md"
(IFS=,; echo "{\"seconds\":$seconds,\"connections\":$connections,\"idle\":$idle,\"rounds\":$rounds,\"results\":[${json_rows[*]}]}") > "$out/results.json"
echo
cat "$out/results.md"
echo
echo "written: $out/results.md, $out/results.json"
