// Scenario A, reproduced in one command: a real PostgreSQL (started here on a private directory
// and port), a few requests running pg_sleep(5) and many fast ones, through tether's pg pool
// configured as the seed's service was before (10 connections, 30 s acquire timeout) and after
// (20 connections, 5 s acquire timeout, 1 s per-query timeout).
//
//   cmake --build --preset release --target tether_pool_exhaustion
//   ./build/release/bench/tether_pool_exhaustion            # about 75 s
#include <cstdio>
#include <cstring>

#include "pg_server.hpp"
#include "pool_exhaustion.hpp"

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  tether::testing::pg_server server;

  tether::bench::exhaustion_config before;
  before.name = "before: pool 10, acquire timeout 30 s, no query timeout";
  before.pool_size = 10;
  before.acquire_timeout = 30s;
  tether::bench::exhaustion_config after = before;
  after.name = "after:  pool 20, acquire timeout 5 s, query timeout 1 s";
  after.pool_size = 20;
  after.acquire_timeout = 5s;
  after.query_timeout = 1s;
  if (quick) {
    for (auto* c : {&before, &after}) {
      c->load_for = 5s;
      c->slow_seconds = 2.0;
      c->slow_every = 150ms;
    }
    before.acquire_timeout = 10s;
    after.acquire_timeout = 2s;
    after.query_timeout = 500ms;
  }

  std::printf("scenario A: fast requests (SELECT 1) every %lld ms and slow ones (pg_sleep(%.0f)) "
              "every %lld ms for %lld s, against PostgreSQL on 127.0.0.1:%u\n\n",
              static_cast<long long>(before.fast_every / 1ms), before.slow_seconds,
              static_cast<long long>(before.slow_every / 1ms),
              static_cast<long long>(before.load_for / 1s), server.port());
  const auto b = tether::bench::run_exhaustion(server.conninfo(), before);
  tether::bench::print(b);
  std::printf("\n");
  const auto a = tether::bench::run_exhaustion(server.conninfo(), after);
  tether::bench::print(a);
  std::printf(
      "\nfast p99: %.1f ms before, %.1f ms after; fast answered/s: %.1f before, %.1f after\n",
      b.fast_p99_ms, a.fast_p99_ms, b.fast_per_second(), a.fast_per_second());
  return 0;
}
