#!/usr/bin/env bash
# Installs every Debian package tether needs to build, test and benchmark.
# Idempotent: packages already present are skipped, and apt is not touched when nothing is missing.
set -euo pipefail

packages=(
  # toolchain
  build-essential g++ cmake ninja-build pkg-config git
  clang-14 lld-14 libclang-rt-14-dev clang-format clang-tidy
  # libraries (design.md, "Dependencies")
  libasio-dev libhttp-parser-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libspdlog-dev libfmt-dev prometheus-cpp-dev libssl-dev libpq-dev liburiparser-dev
  zlib1g-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # peers used by tests and benchmarks: promtool checks our metric exposition; PostgreSQL
  # (server, pgbench) and PgBouncer for the pg pool's tests and its side-by-side benchmark
  prometheus curl postgresql postgresql-client pgbouncer
  # HTTP peers: nginx serves the HTTP client's integration tests; wrk, curl and haproxy are the
  # side-by-side load generators and proxies of the benchmarks
  nginx wrk haproxy
  # a forward proxy for the HTTP client's proxy tests (the binary alone, no system service)
  tinyproxy-bin
  # TLS peers: the openssl CLI makes the tests' CA and runs s_server/s_client; sslscan audits a
  # tether listener's protocols and ciphers
  openssl sslscan
  # Node.js runs the published Toxiproxy client against tether chaos (tests/chaos/node)
  nodejs
  # gnuplot draws the retry storm's report (bench/retry-storm)
  gnuplot-nox
  # a real WebSocket client and server for the proxy's Upgrade tunnels
  python3-websockets
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# Debian packages npm apart from nodejs; a nodejs from elsewhere (NodeSource) brings its own.
if ! command -v npm > /dev/null 2>&1; then
  missing+=(npm)
fi

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
# Packaged servers (nginx, haproxy, postgresql) start a system-wide service on install, nginx on
# port 80 of every address. tether's tests start their own on loopback, so a policy-rc.d that
# refuses service starts is in place for the install (Debian's documented switch, invoke-rc.d
# reads it), unless the machine already has one.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
  "${sudo_cmd[@]}" chmod 755 "$policy"
  own_policy=1
fi
# --no-install-recommends keeps the prometheus package from pulling a web UI stack we never use.
status=0
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" || status=$?
if ((own_policy)); then
  "${sudo_cmd[@]}" rm -f "$policy"
fi
if ((status != 0)); then
  echo "setup: apt-get install failed (exit $status)" >&2
  exit "$status"
fi
echo "setup: done"
