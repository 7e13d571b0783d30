#!/usr/bin/env bash
# tether proxy as a process (the real binary, in front of a Python http.server backend):
#  1. SIGHUP, SIGUSR1 and SIGUSR2 during a request in flight: the request is answered, the
#     process lives on, SIGHUP reloads the config and the others are logged and ignored; a
#     SIGHUP after the file changed moves a route, and one after it broke changes nothing and
#     prints the error with its line;
#  2. the access log has the request's line while the proxy still runs (flushed within a
#     second), and a request the parser rejects is logged with its 400;
#  3. a second tether on the same port is refused, naming the address;
#  4. SIGTERM drains: exit 0, nothing half-written in the access log;
#  5. out of file descriptors (ulimit -n), accepting pauses with a backoff instead of spinning:
#     few failed accepts are counted, one line says so, and accepting resumes.
# Everything listens on 127.0.0.1 on kernel-chosen ports; every process is stopped by its pid.
set -euo pipefail
tether=$1
source "$(dirname "$0")/process_lib.sh"
start_backend
port=$(free_port)
write_config() { # $1: file, $2: listener port, $3: the route's path prefix (/), $4: its cluster
  cat > "$1" <<YAML
workers: 1
listeners: [{name: main, address: 127.0.0.1, port: $2}]
admin: {address: 127.0.0.1, port: 0}
routes: [{path_prefix: ${3:-/}, cluster: ${4:-backend}}]
clusters: [{name: backend, endpoints: ["127.0.0.1:$backend"]}]
log: {access_log: $work/access.log}
YAML
}
write_config "$work/proxy.yaml" "$port"

start_proxy() { # $1: config, $2: log; the pid in $proxy_pid
  "$tether" proxy -c "$1" > "$2" 2>&1 &
  proxy_pid=$!
  pids+=("$proxy_pid")
  for _ in $(seq 1 500); do grep -q "metrics on" "$2" && return 0; sleep 0.01; done
  fail "tether proxy did not start"
}
start_proxy "$work/proxy.yaml" "$work/proxy.log"
admin=$(grep -o 'metrics on http://[0-9.:]*' "$work/proxy.log" | sed 's|metrics on ||')

# 1. Signals while a request is in flight.
curl -sS --max-time 10 -o "$work/slow.body" -w '%{http_code}' "http://127.0.0.1:$port/slow?ms=1500" \
  > "$work/slow.code" &
curl_pid=$!
for _ in $(seq 1 100); do
  [[ $(curl -s "$admin/metrics" | grep -c '^tether_proxy_downstream_connections_active 1') == 1 ]] && break
  sleep 0.02
done
for sig in HUP USR1 USR2; do
  kill -s "$sig" "$proxy_pid"
done
wait "$curl_pid" || true
[[ $(cat "$work/slow.code") == 200 && $(cat "$work/slow.body") == ok ]] ||
  fail "the request in flight during SIGHUP/SIGUSR1/SIGUSR2 got '$(cat "$work/slow.code")'"
kill -0 "$proxy_pid" 2>/dev/null || fail "tether proxy died of a signal"
for sig in SIGUSR1 SIGUSR2; do
  grep -q "$sig ignored" "$work/proxy.log" || fail "no log line says $sig was ignored"
done
grep -q "SIGHUP: configuration reloaded" "$work/proxy.log" || fail "no log line says SIGHUP reloaded"
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/after") == 200 ]] ||
  fail "no answer after the signals"
echo "signals: a request in flight answered 200; SIGHUP reloaded, SIGUSR1 and SIGUSR2 ignored"

# SIGHUP after an edit: only /only/ is routed now.
reloaded() { # waits for the $1-th "reloaded" line
  for _ in $(seq 1 200); do
    (( $(grep -c "SIGHUP: configuration reloaded" "$work/proxy.log") >= $1 )) && return 0
    sleep 0.01
  done
  fail "SIGHUP number $1 did not reload"
}
write_config "$work/proxy.yaml" "$port" /only/
kill -HUP "$proxy_pid"
reloaded 2
codes=$(curl -s -o /dev/null -o /dev/null -w '%{http_code} ' "http://127.0.0.1:$port/moved" \
  "http://127.0.0.1:$port/only/x")
[[ $codes == "404 200 " ]] || fail "after the edit and SIGHUP: '$codes', expected '404 200 '"
# SIGHUP after a bad edit: refused with where, and the running config stays.
write_config "$work/proxy.yaml" "$port" /only/ nowhere
kill -HUP "$proxy_pid"
for _ in $(seq 1 200); do grep -q "reload refused" "$work/proxy.log" && break; sleep 0.01; done
grep -q "proxy.yaml:4:.*nowhere" "$work/proxy.log" || fail "the refused reload does not say where"
codes=$(curl -s -o /dev/null -o /dev/null -w '%{http_code} ' "http://127.0.0.1:$port/moved" \
  "http://127.0.0.1:$port/only/y")
[[ $codes == "404 200 " ]] || fail "a refused reload changed the running config: '$codes'"
write_config "$work/proxy.yaml" "$port"
kill -HUP "$proxy_pid"
reloaded 3
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/after") == 200 ]] ||
  fail "no answer at / after restoring the config"
echo "SIGHUP: an edit moved a route; a broken edit was refused with its line, nothing changed"

# 2. The access log, while the proxy runs: the lines arrive within a second or so.
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /bare-lf HTTP/1.1\nHost: x\n\n' >&3
answer=$(timeout 5 cat <&3 || true)
exec 3<&-
[[ $answer == "HTTP/1.1 400 "* ]] || fail "a bare LF got '$answer'"
for _ in $(seq 1 60); do
  grep -q '"GET /after" 200' "$work/access.log" 2>/dev/null &&
    grep -q '"- -" 400' "$work/access.log" && break
  sleep 0.05
done
grep -q '"GET /slow?ms=1500" 200' "$work/access.log" || fail "the slow request is not in the access log"
grep -q '"GET /after" 200' "$work/access.log" || fail "the access log was not flushed while running"
grep -q '"- -" 400' "$work/access.log" || fail "the rejected request is not in the access log"
echo "access log: written while running, the rejected request logged with its 400"

# 3. A second tether on the same port is refused, and says where.
status=0
timeout 5 "$tether" proxy -c "$work/proxy.yaml" > "$work/second.log" 2>&1 || status=$?
[[ $status != 124 ]] || fail "a second tether started on port $port, which the first listens on"
[[ $status == 1 ]] || fail "a second tether on port $port exited $status"
grep -q "cannot listen on 127.0.0.1:$port (listener 'main'): Address already in use; another process listens there" \
  "$work/second.log" || fail "the second tether's message does not say which address"
echo "second tether on the same port: $(cat "$work/second.log")"

# 4. SIGTERM drains and exits 0; every line in the access log is whole.
kill -TERM "$proxy_pid"
status=0
wait "$proxy_pid" || status=$?
[[ $status == 0 ]] || fail "SIGTERM: exit $status"
grep -q "stopped" "$work/proxy.log" || fail "no 'stopped' line"
[[ -z $(tail -c 1 "$work/access.log") ]] || fail "the access log ends in a partial line"
echo "SIGTERM: drained, exit 0, access log whole ($(wc -l < "$work/access.log") lines)"

# 5. Out of descriptors: 64 for the whole process, then 80 clients hold connections open.
rm -f "$work/access.log"
(ulimit -n 64 && exec "$tether" proxy -c "$work/proxy.yaml") > "$work/limited.log" 2>&1 &
proxy_pid=$!
pids+=("$proxy_pid")
for _ in $(seq 1 500); do grep -q "metrics on" "$work/limited.log" && break; sleep 0.01; done
admin=$(grep -o 'metrics on http://[0-9.:]*' "$work/limited.log" | sed 's|metrics on ||')
python3 - "$port" > "$work/holders.log" 2>&1 <<'PY' &
import socket, sys, time
held = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(80)]
print("holding", len(held), flush=True)
time.sleep(2.5)
PY
holders=$!
pids+=("$holders")
cpu() { awk '{print $14 + $15}' "/proc/$proxy_pid/stat"; }
for _ in $(seq 1 100); do grep -q "holding" "$work/holders.log" && break; sleep 0.02; done
before=$(cpu)
wait "$holders" || true
after=$(cpu)
# The clients are gone: descriptors free up and accepting resumes.
for _ in $(seq 1 300); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/" || true)
  [[ $code == 200 ]] && break
  sleep 0.02
done
[[ $code == 200 ]] || fail "no answer once descriptors were free again"
failures=$(curl -s "$admin/metrics" | awk '/^tether_proxy_accept_failures_total\{cause="descriptors"\}/ {print $2}')
paused=$(grep -c "accepting paused" "$work/limited.log" || true)
echo "out of descriptors: $failures failed accepts counted, $paused log line(s), CPU $((after - before)) ticks (of $(getconf CLK_TCK)/s) in the 2.5 s the clients held on"
[[ -n $failures ]] && awk -v f="$failures" 'BEGIN { exit !(f >= 1 && f <= 40) }' ||
  fail "expected 1 to 40 failed accepts while paused with a backoff, counted $failures"
[[ $paused == 1 ]] || fail "expected one log line for the run of failures, got $paused"
# A spinning accept loop takes the whole core (250 ticks in these 2.5 s); paused, next to none.
(( after - before < 100 )) || fail "the proxy used $((after - before)) ticks of CPU while out of descriptors"
grep -q "accepting connections on 127.0.0.1:$port again" "$work/limited.log" ||
  fail "no line says accepting resumed"
