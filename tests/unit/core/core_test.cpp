#include "tether/core/clock.hpp"
#include "tether/core/error.hpp"
#include "tether/core/random.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "scripted_random.hpp"

namespace tether {
namespace {

using namespace std::chrono_literals;

TEST(manual_clock, moves_only_when_advanced) {
  manual_clock c;
  const auto t0 = c.now();
  EXPECT_EQ(c.now(), t0);
  c.advance(1500ms);
  EXPECT_EQ(c.now() - t0, 1500ms);
}

TEST(manual_clock, advances_from_two_threads_add_up) {
  manual_clock c;
  const auto t0 = c.now();
  std::thread a{[&] {
    for (int i = 0; i < 1000; ++i) {
      c.advance(1ms);
    }
  }};
  std::thread b{[&] {
    for (int i = 0; i < 1000; ++i) {
      c.advance(1ms);
    }
  }};
  a.join();
  b.join();
  EXPECT_EQ(c.now() - t0, 2000ms);
}

TEST(monotonic_clock, never_goes_backwards) {
  auto& c = monotonic_clock::instance();
  auto previous = c.now();
  for (int i = 0; i < 1000; ++i) {
    const auto now = c.now();
    ASSERT_GE(now, previous);
    previous = now;
  }
}

TEST(uniform_duration, covers_its_range_and_stays_inside) {
  testing::scripted_random low{{testing::scripted_random::lowest}};
  testing::scripted_random high{{testing::scripted_random::highest}};
  EXPECT_EQ(uniform_duration(low, 10ms, 20ms), 10ms);
  const auto top = uniform_duration(high, 10ms, 20ms);
  EXPECT_LT(top, 20ms);
  EXPECT_GT(top, 19999us);
  EXPECT_EQ(uniform_duration(high, 10ms, 10ms), 10ms);
  EXPECT_EQ(uniform_duration(high, 10ms, 5ms), 10ms);
}

TEST(uniform_unit, is_in_zero_one) {
  default_random r{42};
  for (int i = 0; i < 10000; ++i) {
    const double u = uniform_unit(r);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

TEST(default_random, same_seed_same_sequence) {
  default_random a{7};
  default_random b{7};
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(a.next(), b.next());
  }
}

TEST(errc, has_its_own_category_and_messages) {
  const std::error_code ec = errc::circuit_open;
  EXPECT_STREQ(ec.category().name(), "tether");
  EXPECT_EQ(ec.message(), "circuit breaker is open");
  EXPECT_EQ(std::error_code{errc::pool_timeout}.message(),
            "timed out waiting for a pooled connection");
  EXPECT_NE(ec, std::error_code{errc::budget_exhausted});
  EXPECT_TRUE(ec);
  EXPECT_NE(std::error_code(999, error_category()).message().find("999"), std::string::npos);
}

} // namespace
} // namespace tether
