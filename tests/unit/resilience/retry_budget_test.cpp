#include "tether/resilience/retry_budget.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace tether::resilience {
namespace {

TEST(windowed_retry_budget, uses_finagles_units) {
  manual_clock clock;
  windowed_retry_budget b{{}, clock};
  EXPECT_EQ(b.deposit_units(), 1000);
  EXPECT_EQ(b.withdrawal_units(), 5000);
  // Reserve: 10 retries/s over a 10 s ttl.
  EXPECT_EQ(b.remaining(), 100);
}

TEST(windowed_retry_budget, allows_percent_can_retry_of_requests) {
  manual_clock clock;
  windowed_retry_budget b{{10s, 0, 0.2}, clock};
  EXPECT_FALSE(b.try_withdraw()); // no reserve, no deposits
  for (int i = 0; i < 100; ++i) {
    b.on_request();
  }
  int retries = 0;
  while (b.try_withdraw()) {
    ++retries;
  }
  EXPECT_EQ(retries, 20);
  EXPECT_EQ(b.remaining(), 0);
}

TEST(windowed_retry_budget, at_its_floor_still_allows_min_retries_per_second) {
  manual_clock clock;
  windowed_retry_budget b{{10s, 5, 0.1}, clock};
  int retries = 0;
  while (b.try_withdraw()) {
    ++retries;
  }
  EXPECT_EQ(retries, 50); // 5/s over the 10 s ttl
  // The withdrawals age out with the window, and the floor is back.
  clock.advance(10s);
  EXPECT_EQ(b.remaining(), 50);
  EXPECT_TRUE(b.try_withdraw());
}

TEST(windowed_retry_budget, deposits_expire_after_ttl_a_slice_at_a_time) {
  manual_clock clock;
  windowed_retry_budget b{{10s, 0, 1.0}, clock};
  for (int i = 0; i < 10; ++i) {
    b.on_request();
    clock.advance(1s);
  }
  // The oldest deposit's slice has just rolled out: 9 remain.
  EXPECT_EQ(b.remaining(), 9);
  clock.advance(5s);
  EXPECT_EQ(b.remaining(), 4);
  clock.advance(1h); // a long quiet spell empties it without looping over every slice
  EXPECT_EQ(b.remaining(), 0);
}

TEST(windowed_retry_budget, zero_percent_means_only_the_reserve) {
  manual_clock clock;
  windowed_retry_budget b{{1s, 1, 0.0}, clock};
  for (int i = 0; i < 1000; ++i) {
    b.on_request();
  }
  EXPECT_TRUE(b.try_withdraw()); // the reserve's one retry
  EXPECT_FALSE(b.try_withdraw());
}

TEST(windowed_retry_budget, rejects_bad_options) {
  manual_clock clock;
  EXPECT_THROW(windowed_retry_budget({500ms, 10, 0.2}, clock), std::invalid_argument);
  EXPECT_THROW(windowed_retry_budget({10s, 10, -0.1}, clock), std::invalid_argument);
  EXPECT_THROW(windowed_retry_budget({10s, 10, 11.0}, clock), std::invalid_argument);
}

TEST(windowed_retry_budget, two_threads_never_overdraw) {
  manual_clock clock;
  windowed_retry_budget b{{10s, 0, 0.5}, clock};
  for (int i = 0; i < 2000; ++i) {
    b.on_request();
  }
  std::atomic<int> granted{0};
  auto spend = [&] {
    for (int i = 0; i < 1000; ++i) {
      if (b.try_withdraw()) {
        granted.fetch_add(1);
      }
    }
  };
  std::thread t1{spend};
  std::thread t2{spend};
  t1.join();
  t2.join();
  EXPECT_EQ(granted.load(), 1000);
}

TEST(throttling_retry_budget, follows_grpc_retry_throttling) {
  throttling_retry_budget b{{10, 0.5}};
  EXPECT_DOUBLE_EQ(b.tokens(), 10.0);
  EXPECT_TRUE(b.try_withdraw());
  EXPECT_EQ(b.remaining(), 4); // failures at 9, 8, 7, 6 tokens are retried; at 5 not
  for (int i = 0; i < 4; ++i) {
    b.on_result(false);
  }
  EXPECT_TRUE(b.try_withdraw()); // 6 > 5
  b.on_result(false);
  EXPECT_FALSE(b.try_withdraw()); // 5 is not > 5
  EXPECT_EQ(b.remaining(), 0);
  b.on_result(true);
  EXPECT_DOUBLE_EQ(b.tokens(), 5.5);
  EXPECT_TRUE(b.try_withdraw());
  EXPECT_EQ(b.remaining(), 0); // the next failure leaves 4.5: not retried
  for (int i = 0; i < 6; ++i) {
    b.on_result(true);
  }
  EXPECT_DOUBLE_EQ(b.tokens(), 8.5);
  EXPECT_EQ(b.remaining(), 3); // 7.5, 6.5, 5.5
}

TEST(throttling_retry_budget, stays_between_zero_and_max) {
  throttling_retry_budget b{{3, 1.0}};
  for (int i = 0; i < 10; ++i) {
    b.on_result(false);
  }
  EXPECT_DOUBLE_EQ(b.tokens(), 0.0);
  for (int i = 0; i < 10; ++i) {
    b.on_result(true);
  }
  EXPECT_DOUBLE_EQ(b.tokens(), 3.0);
  b.on_request(); // no effect in this strategy
  EXPECT_DOUBLE_EQ(b.tokens(), 3.0);
}

TEST(throttling_retry_budget, keeps_three_decimals_of_the_ratio) {
  throttling_retry_budget b{{10, 0.0014}};
  b.on_result(false);
  b.on_result(true);
  EXPECT_DOUBLE_EQ(b.tokens(), 9.001);
}

TEST(throttling_retry_budget, rejects_bad_options) {
  EXPECT_THROW(throttling_retry_budget({0, 0.1}), std::invalid_argument);
  EXPECT_THROW(throttling_retry_budget({1001, 0.1}), std::invalid_argument);
  EXPECT_THROW(throttling_retry_budget({10, 0.0}), std::invalid_argument);
}

} // namespace
} // namespace tether::resilience
