#!/usr/bin/env bash
# TLS termination: tether proxy, HAProxy and nginx, one worker each, the same ECDSA P-256
# certificate (support/make_test_ca.sh), in front of the same plain backend (nginx answering
# GET /hello over kept-alive pooled connections), driven by wrk over TLS in one run. The client
# offers TLS 1.3 with the P-256 group only (an OpenSSL config for wrk), so every proxy does the
# same key exchange. Two loads per proxy:
#   keep-alive      wrk -t1 -cN: requests/s, p50, p99, the proxy's CPU per request
#   new connection  wrk with "Connection: close": a TLS handshake per request; handshakes/s and
#                   the proxy's CPU per handshake (what the proxies resumed is reported: wrk
#                   keeps its SSL object between connections, and may resume)
# Rounds interleave the proxies (each round starts with the next); each proxy's median round.
#
#   bench/proxy/tls.sh [seconds=8] [connections=50] [rounds=3] [outdir=build/bench-proxy-tls]
#   TETHER=path (the build measured)
#
# Everything listens on 127.0.0.1; every process started here is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-8}
connections=${2:-50}
rounds=${3:-3}
out=${4:-build/bench-proxy-tls}
mkdir -p "$out"
source bench/proxy/common.sh

# CPU seconds of a process and its children, user and system together.
cpu_total() {
  local user sys
  read -r user sys < <(cpu_of "$1")
  echo "$user + $sys" | bc
}

sh support/make_test_ca.sh "$work/ca" > /dev/null
cert=$work/ca/server.pem
key=$work/ca/server.key
cat "$cert" "$key" > "$work/ca/haproxy.pem"
cat > "$work/wrk-openssl.cnf" << CONF
openssl_conf = tether_bench
[tether_bench]
ssl_conf = ssl_section
[ssl_section]
system_default = client_defaults
[client_defaults]
MinProtocol = TLSv1.3
Groups = P-256
CONF

backend_port=$(free_port)
start_backend_nginx "$backend_port"

start_tls_tether() {
  tether_config "$1" "$2" "$3" "{cert_file: $cert, key_file: $key}"
  "$tether" proxy -c "$work/tether.yaml" > "$work/tether.log" 2>&1 &
}
start_tls_haproxy() { start_haproxy "$1" "$2" 4000 "ssl crt $work/ca/haproxy.pem"; }
start_tls_nginx() {
  mkdir -p "$work/nginx-tls"
  cat > "$work/nginx-tls/nginx.conf" << CONF
daemon off; worker_processes 1; worker_rlimit_nofile 65536; pid $work/nginx-tls/nginx.pid;
error_log $work/nginx-tls/error.log;
events { worker_connections 8000; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  client_body_temp_path $work/nginx-tls/b; proxy_temp_path $work/nginx-tls/p;
  fastcgi_temp_path $work/nginx-tls/f; uwsgi_temp_path $work/nginx-tls/u; scgi_temp_path $work/nginx-tls/s;
  upstream backend { server 127.0.0.1:$2; keepalive 128; }
  server {
    listen 127.0.0.1:$1 ssl;
    ssl_certificate $cert; ssl_certificate_key $key;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
  nginx -p "$work/nginx-tls" -c "$work/nginx-tls/nginx.conf" -e "$work/nginx-tls/error.log" &
}

versions="tether $($tether --version | awk '{print $2}'), $(haproxy -v | head -1 | awk '{print "HAProxy " $3}'), $(nginx -v 2>&1 | sed 's|nginx version: nginx/|nginx |'), $(openssl version | awk '{print "OpenSSL " $2}')"
echo "$versions; backend nginx on 127.0.0.1:$backend_port; wrk -t1 -c$connections -d${seconds}s over TLS 1.3, P-256"

# measure PROXY: "rps p50 p99 cpu_us_per_request handshakes_per_s cpu_us_per_handshake resumed"
measure() {
  local proxy=$1 port admin pid url body result requests rps p50 p99 c0 c1 resumed=-
  local hs_result handshakes hs_rate c2 c3
  port=$(free_port)
  admin=$(free_port)
  "start_tls_$proxy" "$port" "$backend_port" "$admin"
  pid=$!
  pids+=("$pid")
  wait_port "$port"
  url="https://127.0.0.1:$port/hello"
  body=$(curl -sk "$url")
  [[ $body == "hello from the backend" ]] || { echo "$proxy does not proxy over TLS: '$body'"; exit 1; }
  OPENSSL_CONF=$work/wrk-openssl.cnf wrk -t1 -c"$connections" -d2s "$url" > /dev/null
  c0=$(cpu_total "$pid")
  result=$(OPENSSL_CONF=$work/wrk-openssl.cnf wrk -t1 -c"$connections" -d"${seconds}s" --latency "$url")
  c1=$(cpu_total "$pid")
  requests=$(echo "$result" | awk '/requests in/ { print $1 }')
  rps=$(echo "$result" | awk '/Requests\/sec/ { print $2 }')
  p50=$(echo "$result" | awk '$1 == "50%" { print $2 }')
  p99=$(echo "$result" | awk '$1 == "99%" { print $2 }')
  # A handshake per request: the proxies close after each response.
  hs_result=$(OPENSSL_CONF=$work/wrk-openssl.cnf wrk -t1 -c"$connections" -d"${seconds}s" -H "Connection: close" "$url")
  c2=$(cpu_total "$pid")
  handshakes=$(echo "$hs_result" | awk '/requests in/ { print $1 }')
  hs_rate=$(echo "$hs_result" | awk '/Requests\/sec/ { print $2 }')
  if [[ $proxy == tether ]]; then
    resumed=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '/tether_proxy_downstream_tls_handshakes_total.*resumed/ { print $2 }')
  fi
  kill "$pid"
  wait "$pid" 2> /dev/null || true
  line="$rps $p50 $p99 $(echo "scale=2; ($c1 - $c0) * 1000000 / $requests" | bc) $hs_rate $(echo "scale=1; ($c2 - $c1) * 1000000 / $handshakes" | bc) $resumed"
}

proxies=(tether haproxy nginx)
declare -A runs
for round in $(seq 1 "$rounds"); do
  for i in $(seq 0 $((${#proxies[@]} - 1))); do
    proxy=${proxies[$(((round - 1 + i) % ${#proxies[@]}))]}
    measure "$proxy"
    runs[$proxy,$round]=$line
    read -r rps p50 p99 cpu hs hs_cpu resumed <<< "$line"
    echo "round $round $proxy: keep-alive $rps req/s, p50 $p50, p99 $p99, $cpu us CPU/request; new connections $hs handshakes/s, $hs_cpu us CPU/handshake (tether resumed: $resumed)"
  done
done

md_rows=()
for proxy in "${proxies[@]}"; do
  # The median round by CPU per request, and separately by CPU per handshake.
  by_request=$(for round in $(seq 1 "$rounds"); do
    read -r rps p50 p99 cpu rest <<< "${runs[$proxy,$round]}"
    echo "$cpu $round"
  done | sort -n | awk -v m=$(((rounds + 1) / 2)) 'NR == m { print $2 }')
  by_handshake=$(for round in $(seq 1 "$rounds"); do
    read -r rps p50 p99 cpu hs hs_cpu rest <<< "${runs[$proxy,$round]}"
    echo "$hs_cpu $round"
  done | sort -n | awk -v m=$(((rounds + 1) / 2)) 'NR == m { print $2 }')
  read -r rps p50 p99 cpu rest <<< "${runs[$proxy,$by_request]}"
  read -r _ _ _ _ hs hs_cpu _ <<< "${runs[$proxy,$by_handshake]}"
  md_rows+=("| $proxy | $rps | $p50 | $p99 | $cpu | $hs | $hs_cpu |")
done
{
  echo "Versions: $versions. One worker each; backend: nginx, 1 worker; wrk -t1 -c$connections -d${seconds}s, TLS 1.3, P-256 (ECDSA certificate); $rounds rounds, each proxy's median round."
  echo
  echo "| proxy | keep-alive requests/s | p50 | p99 | CPU us/request | new-connection handshakes/s | CPU us/handshake |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${md_rows[@]}"
} > "$out/results.md"
echo
cat "$out/results.md"
