// Scenario A in ctest (the short version of bench/pool_exhaustion): with the seed's "before"
// pool the fast requests queue behind slow ones; with its "after" pool they stay fast and the
// slow ones fail fast with a clear error.
#include <gtest/gtest.h>

#include "pg_server.hpp"
#include "pool_exhaustion.hpp"

namespace tether::bench {
namespace {

TEST(pool_exhaustion, the_seeds_fix_keeps_fast_requests_fast_and_fails_slow_ones_fast) {
  if (!testing::pg_server::find_binaries()) {
    GTEST_SKIP() << "PostgreSQL is not installed (scripts/setup.sh installs it)";
  }
  testing::pg_server server;
  exhaustion_config before;
  before.name = "before";
  before.pool_size = 10;
  before.acquire_timeout = 10s;
  before.load_for = 4s;
  before.slow_seconds = 2.0;
  before.slow_every = 150ms; // ~13 slow queries at once: more than the pool holds
  exhaustion_config after = before;
  after.name = "after";
  after.pool_size = 20;
  after.acquire_timeout = 2s;
  after.query_timeout = 500ms;

  const auto b = run_exhaustion(server.conninfo(), before);
  const auto a = run_exhaustion(server.conninfo(), after);
  print(b);
  print(a);

  // Before: every slow query runs to the end, and fast requests wait behind them.
  EXPECT_EQ(b.slow_ok, b.slow_sent);
  EXPECT_GT(b.fast_p99_ms, 500.0);
  // After: the slow ones are cut at 500 ms with a clear error, the fast ones never wait long.
  EXPECT_EQ(a.slow_failed_fast, a.slow_sent);
  EXPECT_NE(a.slow_error.find("timed out after 500 ms"), std::string::npos) << a.slow_error;
  EXPECT_EQ(a.fast_ok, a.fast_sent);
  EXPECT_LT(a.fast_p99_ms, 250.0);
  EXPECT_LT(a.fast_p99_ms * 4, b.fast_p99_ms);
}

} // namespace
} // namespace tether::bench
