#!/usr/bin/env bash
# An upgrade of tether proxy under load that refuses nothing: wrk keeps 16 connections busy
# through tether A (2 workers); B (1 worker) starts with --take-over and takes A's listening
# sockets (and their queued connections) over, A drains and exits 0; then C (3 workers) takes
# over from B the same way. wrk must see no socket error (connect, read, write, timeout) and no
# non-2xx answer, and the last proxy, stopped with SIGTERM, removes its upgrade socket.
# Everything listens on 127.0.0.1 on kernel-chosen ports; every process is stopped by its pid.
set -euo pipefail
tether=$1
source "$(dirname "$0")/process_lib.sh"
start_backend
port=$(free_port)
admin_port=$(free_port)
cat > "$work/proxy.yaml" <<YAML
workers: 2
listeners: [{name: main, address: 127.0.0.1, port: $port}]
admin: {address: 127.0.0.1, port: $admin_port, upgrade_socket: $work/upgrade.sock}
routes: [{path_prefix: /, cluster: backend}]
clusters: [{name: backend, endpoints: ["127.0.0.1:$backend"]}]
YAML

start_proxy() { # $1: name, then tether's own arguments; the pid in $proxy_pid
  local name=$1
  shift
  "$tether" proxy -c "$work/proxy.yaml" "$@" > "$work/$name.log" 2>&1 &
  proxy_pid=$!
  pids+=("$proxy_pid")
  for _ in $(seq 1 500); do grep -q "metrics on" "$work/$name.log" && return 0; sleep 0.01; done
  fail "tether proxy $name did not start"
}
exits_after_drain() { # $1: pid, $2: name; the process ends by itself, with status 0
  for _ in $(seq 1 1000); do kill -0 "$1" 2>/dev/null || break; sleep 0.01; done
  kill -0 "$1" 2>/dev/null && fail "$2 did not end after the take-over"
  local status=0
  wait "$1" || status=$?
  [[ $status == 0 ]] || fail "$2 exited with $status"
  grep -q "handed over to pid $3: draining" "$work/$2.log" || fail "$2 does not say it handed over"
  grep -q "tether proxy: stopped" "$work/$2.log" || fail "$2 did not drain to its end"
}
served() { curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/$1"; }

start_proxy a
a=$proxy_pid
[[ $(served one) == 200 ]] || fail "A does not serve"
[[ $(stat -c %a "$work/upgrade.sock") == 600 ]] || fail "the upgrade socket is not this user's only"

# A second tether on the same socket without --take-over is refused, and A goes on.
if timeout 10 "$tether" proxy -c "$work/proxy.yaml" > "$work/refused.log" 2>&1; then
  fail "a second tether started on A's ports"
fi
grep -q "another process listens there\|another tether answers on the upgrade socket" "$work/refused.log" ||
  fail "the refusal does not say why: $(cat "$work/refused.log")"

wrk -t2 -c16 -d10s "http://127.0.0.1:$port/" > "$work/wrk.out" 2>&1 &
wrk_pid=$!
pids+=("$wrk_pid")
sleep 1.2
start_proxy b --take-over --workers 1
b=$proxy_pid
grep -q "took the listeners over from the tether on $work/upgrade.sock" "$work/b.log" ||
  fail "B does not say it took the listeners over"
exits_after_drain "$a" a "$b"
sleep 1.2
start_proxy c --take-over --workers 3
c=$proxy_pid
kill -0 "$wrk_pid" 2>/dev/null || fail "wrk ended before the second upgrade: nothing was shown under load"
exits_after_drain "$b" b "$c"
wait "$wrk_pid" || fail "wrk failed: $(cat "$work/wrk.out")"
cat "$work/wrk.out"
requests=$(grep -o '[0-9]* requests in' "$work/wrk.out" | grep -o '^[0-9]*')
[[ ${requests:-0} -gt 1000 ]] || fail "wrk sent only ${requests:-0} requests"
if grep -q "Socket errors\|Non-2xx" "$work/wrk.out"; then
  fail "the upgrades failed requests: $(grep "Socket errors\|Non-2xx" "$work/wrk.out")"
fi
[[ $(served after) == 200 ]] || fail "C does not serve"
[[ $(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin_port/ready") == 200 ]] ||
  fail "the admin port was not taken over"
echo "two upgrades under wrk: $requests requests, no socket error, no non-2xx"

kill -TERM "$c"
status=0
wait "$c" || status=$?
[[ $status == 0 ]] || fail "C exited with $status at SIGTERM"
[[ ! -e $work/upgrade.sock ]] || fail "C left its upgrade socket behind"
echo "the last tether removed its upgrade socket at SIGTERM"
