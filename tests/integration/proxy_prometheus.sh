#!/usr/bin/env bash
# tether proxy (the real binary) scraped by Debian's Prometheus server: starts the proxy on
# kernel-chosen ports with a cluster that refuses connections, sends it requests, lets
# Prometheus scrape /metrics every second, and checks through Prometheus' HTTP API that the
# series arrived with their values. Then SIGTERM must drain the proxy and exit 0.
# Everything listens on 127.0.0.1; both processes are stopped by their pids.
set -euo pipefail
tether=$1
work=$(mktemp -d)
proxy_pid=""
prom_pid=""
cleanup() {
  [[ -n $prom_pid ]] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null || true
  [[ -n $proxy_pid ]] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
closed=$(free_port)
cat > "$work/proxy.yaml" <<YAML
workers: 1
listeners: [{name: main, address: 127.0.0.1, port: 0}]
admin: {address: 127.0.0.1, port: 0}
routes: [{path_prefix: /, cluster: down}]
clusters:
  - name: down
    endpoints: ["127.0.0.1:$closed"]
YAML
"$tether" proxy -c "$work/proxy.yaml" > "$work/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 1 500); do grep -q "metrics on" "$work/proxy.log" && break; sleep 0.01; done
proxy_url=$(grep -o 'send requests to http://[0-9.:]*' "$work/proxy.log" | grep -o 'http://.*')
metrics_target=$(grep -o 'metrics on http://[0-9.:]*' "$work/proxy.log" | sed 's|metrics on http://||')
[[ -n $proxy_url && -n $metrics_target ]] || { cat "$work/proxy.log"; exit 1; }

for _ in 1 2 3; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$proxy_url/x")
  [[ $code == 502 ]] || { echo "expected 502 from a refused upstream, got $code"; exit 1; }
done

prom_port=$(free_port)
cat > "$work/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: tether
    static_configs: [{targets: ["$metrics_target"]}]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" > "$work/prometheus.log" 2>&1 &
prom_pid=$!

query() {
  curl -s --max-time 2 "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1"
}
# Up to 30 s for Prometheus to start and scrape.
for _ in $(seq 1 300); do
  if query 'tether_proxy_errors_total{cause="connect_failure"}' | grep -q '"value":\[[0-9.]*,"3"\]'; then
    break
  fi
  sleep 0.1
done
for q in 'tether_proxy_errors_total{cause="connect_failure"}' \
         'tether_proxy_responses_total{cluster="down",class="5xx"}' \
         'tether_proxy_downstream_connections_opened_total'; do
  answer=$(query "$q")
  if ! echo "$answer" | grep -q '"value":\[[0-9.]*,"3"\]'; then
    echo "Prometheus does not show $q = 3: $answer"
    tail -5 "$work/prometheus.log"
    exit 1
  fi
  echo "prometheus: $q = 3"
done
# The pool tried once and then backed off (gRPC connection backoff): one refused connect.
answer=$(query 'tether_pool_connect_failures_total{cluster="down",cause="refused"}')
echo "$answer" | grep -q '"value":\[[0-9.]*,"1"\]' || { echo "pool failures: $answer"; exit 1; }
answer=$(query 'up{job="tether"}')
echo "$answer" | grep -q '"value":\[[0-9.]*,"1"\]' || { echo "target not up: $answer"; exit 1; }

# SIGTERM: the proxy drains and exits 0.
kill -TERM "$proxy_pid"
status=0
wait "$proxy_pid" || status=$?
proxy_pid=""
[[ $status -eq 0 ]] || { echo "tether proxy exited $status after SIGTERM"; cat "$work/proxy.log"; exit 1; }
grep -q "stopped" "$work/proxy.log"
echo "tether proxy: SIGTERM -> drained, exit 0"
