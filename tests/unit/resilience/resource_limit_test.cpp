#include "tether/resilience/resource_limit.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace tether::resilience {
namespace {

TEST(resource_limit, admits_up_to_max_and_reports_remaining) {
  resource_limit l{2};
  EXPECT_EQ(l.remaining(), 2U);
  EXPECT_FALSE(l.open());
  EXPECT_TRUE(l.try_acquire());
  EXPECT_TRUE(l.try_acquire());
  EXPECT_FALSE(l.try_acquire());
  EXPECT_TRUE(l.open());
  EXPECT_EQ(l.remaining(), 0U);
  l.release();
  EXPECT_EQ(l.remaining(), 1U);
  EXPECT_TRUE(l.try_acquire());
}

TEST(resource_limit, lowering_max_keeps_held_units_and_blocks_new_ones) {
  resource_limit l{3};
  ASSERT_TRUE(l.try_acquire());
  ASSERT_TRUE(l.try_acquire());
  l.set_max(1);
  EXPECT_EQ(l.count(), 2U);
  EXPECT_EQ(l.remaining(), 0U);
  EXPECT_FALSE(l.try_acquire());
  l.release();
  l.release();
  EXPECT_TRUE(l.try_acquire());
}

TEST(resource_guard, releases_when_dropped_and_moves) {
  resource_limit l{1};
  {
    resource_guard g{l};
    EXPECT_TRUE(g);
    resource_guard refused{l};
    EXPECT_FALSE(refused);
    resource_guard moved{std::move(g)};
    EXPECT_TRUE(moved);
    EXPECT_EQ(l.count(), 1U);
  }
  EXPECT_EQ(l.count(), 0U);
  resource_guard early{l};
  early.release();
  EXPECT_EQ(l.count(), 0U);
}

TEST(cluster_limits, defaults_are_envoys) {
  const cluster_limits c;
  EXPECT_EQ(c.connections.max(), 1024U);
  EXPECT_EQ(c.pending_requests.max(), 1024U);
  EXPECT_EQ(c.requests.max(), 1024U);
  EXPECT_EQ(c.retries.max(), 3U);
}

TEST(resource_limit, two_threads_never_exceed_max) {
  resource_limit l{5};
  std::atomic<int> held{0};
  std::atomic<int> peak{0};
  auto worker = [&] {
    for (int i = 0; i < 20000; ++i) {
      if (l.try_acquire()) {
        const int now = held.fetch_add(1) + 1;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        held.fetch_sub(1);
        l.release();
      }
    }
  };
  std::thread a{worker};
  std::thread b{worker};
  a.join();
  b.join();
  EXPECT_LE(peak.load(), 5);
  EXPECT_EQ(l.count(), 0U);
}

} // namespace
} // namespace tether::resilience
