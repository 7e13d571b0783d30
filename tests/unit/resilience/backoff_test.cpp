#include "tether/resilience/backoff.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "scripted_random.hpp"

namespace tether::resilience {
namespace {

using testing::scripted_random;

// The exponential ceiling as the AWS formulas define it: min(cap, base * multiplier^n).
clock::duration aws_ceiling(const exponential_backoff_options& o, int n) {
  const double v = static_cast<double>(o.base.count()) * std::pow(o.multiplier, n);
  return v >= static_cast<double>(o.cap.count()) ? o.cap
                                                 : clock::duration{static_cast<long long>(v)};
}

TEST(exponential_backoff, without_jitter_doubles_then_caps) {
  exponential_backoff b{{25ms, 2.0, 250ms, jitter::none}};
  default_random r{1};
  const clock::duration expected[] = {25ms, 50ms, 100ms, 200ms, 250ms, 250ms, 250ms};
  for (const auto e : expected) {
    EXPECT_EQ(b.next(r), e);
  }
  EXPECT_EQ(b.attempts(), 7U);
  b.reset();
  EXPECT_EQ(b.next(r), 25ms);
}

TEST(exponential_backoff, full_jitter_draws_lie_in_zero_to_ceiling) {
  const exponential_backoff_options o{25ms, 2.0, 250ms, jitter::full};
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    exponential_backoff b{o};
    default_random r{seed};
    for (int n = 0; n < 12; ++n) {
      const auto d = b.next(r);
      ASSERT_GE(d, 0ns);
      ASSERT_LT(d, aws_ceiling(o, n)) << "draw " << n;
    }
  }
}

TEST(exponential_backoff, full_jitter_reaches_both_ends) {
  const exponential_backoff_options o{25ms, 2.0, 250ms, jitter::full};
  exponential_backoff low{o};
  exponential_backoff high{o};
  scripted_random lo{{scripted_random::lowest}};
  scripted_random hi{{scripted_random::highest}};
  for (int n = 0; n < 8; ++n) {
    EXPECT_EQ(low.next(lo), 0ns);
    EXPECT_GE(high.next(hi), aws_ceiling(o, n) - 1us);
  }
}

TEST(exponential_backoff, equal_jitter_keeps_at_least_half) {
  const exponential_backoff_options o{100ms, 2.0, 1s, jitter::equal};
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    exponential_backoff b{o};
    default_random r{seed};
    for (int n = 0; n < 10; ++n) {
      const auto d = b.next(r);
      const auto top = aws_ceiling(o, n);
      ASSERT_GE(d, top / 2);
      ASSERT_LT(d, top);
    }
  }
  exponential_backoff low{o};
  scripted_random lo{{scripted_random::lowest}};
  EXPECT_EQ(low.next(lo), 50ms);
}

TEST(exponential_backoff, decorrelated_jitter_stays_between_base_and_three_times_previous) {
  const exponential_backoff_options o{10ms, 2.0, 2s, jitter::decorrelated};
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    exponential_backoff b{o};
    default_random r{seed};
    clock::duration previous = o.base;
    for (int n = 0; n < 30; ++n) {
      const auto d = b.next(r);
      ASSERT_GE(d, o.base);
      ASSERT_LE(d, std::min(o.cap, previous * 3));
      previous = d;
    }
  }
}

TEST(exponential_backoff, decorrelated_jitter_grows_to_the_cap_on_high_draws) {
  exponential_backoff b{{10ms, 2.0, 1s, jitter::decorrelated}};
  scripted_random hi{{scripted_random::highest}};
  clock::duration last{};
  for (int n = 0; n < 10; ++n) {
    last = b.next(hi);
  }
  EXPECT_EQ(last, 1s);
  b.reset();
  EXPECT_LT(b.next(hi), 30ms);
}

TEST(exponential_backoff, huge_attempt_counts_do_not_overflow) {
  exponential_backoff b{{1ms, 10.0, 1h, jitter::none}};
  default_random r{1};
  for (int n = 0; n < 2000; ++n) {
    ASSERT_LE(b.next(r), 1h);
  }
  EXPECT_EQ(b.ceiling(5000), 1h);
}

TEST(exponential_backoff, rejects_bad_options) {
  EXPECT_THROW(exponential_backoff({0ms, 2.0, 1s, jitter::full}), std::invalid_argument);
  EXPECT_THROW(exponential_backoff({10ms, 0.5, 1s, jitter::full}), std::invalid_argument);
  EXPECT_THROW(exponential_backoff({10ms, 2.0, 1ms, jitter::full}), std::invalid_argument);
}

TEST(grpc_backoff, follows_the_connection_backoff_spec) {
  grpc_backoff b;
  default_random r{3};
  EXPECT_EQ(b.next(r), 1s); // the first wait is not jittered
  double unjittered = 1.0;
  for (int n = 1; n < 30; ++n) {
    unjittered = std::min(unjittered * 1.6, 120.0);
    const double d = std::chrono::duration<double>(b.next(r)).count();
    ASSERT_GE(d, unjittered * 0.8 - 1e-9) << "attempt " << n;
    ASSERT_LE(d, unjittered * 1.2 + 1e-9) << "attempt " << n;
  }
  EXPECT_DOUBLE_EQ(unjittered, 120.0); // capped by now
}

TEST(grpc_backoff, jitter_reaches_both_ends_and_connect_timeout_has_a_floor) {
  grpc_backoff low;
  grpc_backoff high;
  scripted_random lo{{scripted_random::lowest}};
  scripted_random hi{{scripted_random::highest}};
  (void)low.next(lo);
  (void)high.next(hi);
  EXPECT_EQ(low.next(lo), 1280ms);        // 1.6 s - 20 %
  EXPECT_GE(high.next(hi), 1920ms - 1us); // 1.6 s + 20 %
  EXPECT_EQ(low.connect_timeout(), 20s);  // MIN_CONNECT_TIMEOUT
  for (int i = 0; i < 20; ++i) {
    (void)low.next(lo);
  }
  EXPECT_EQ(low.connect_timeout(), 120s);
  low.reset();
  EXPECT_EQ(low.next(lo), 1s);
}

TEST(grpc_backoff, rejects_bad_options) {
  grpc_backoff_options o;
  o.jitter = 1.5;
  EXPECT_THROW(grpc_backoff{o}, std::invalid_argument);
  o = {};
  o.max = 10ms;
  EXPECT_THROW(grpc_backoff{o}, std::invalid_argument);
}

} // namespace
} // namespace tether::resilience
