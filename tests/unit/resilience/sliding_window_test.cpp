#include "tether/resilience/sliding_window.hpp"

#include <gtest/gtest.h>

namespace tether::resilience {
namespace {

using namespace std::chrono_literals;

TEST(count_window, keeps_exactly_the_last_n_calls) {
  count_window w{3};
  EXPECT_EQ(w.record(true, false).calls, 1U);
  w.record(true, true);
  w.record(false, false);
  EXPECT_EQ(w.totals().failed, 2U);
  const auto t = w.record(false, false); // the first failure leaves
  EXPECT_EQ(t.calls, 3U);
  EXPECT_EQ(t.failed, 1U);
  EXPECT_EQ(t.slow, 1U);
  w.record(false, false); // the slow failure leaves
  EXPECT_EQ(w.totals().failed, 0U);
  EXPECT_EQ(w.totals().slow, 0U);
  w.clear();
  EXPECT_EQ(w.totals().calls, 0U);
}

TEST(window_totals, rates_are_percentages) {
  const window_totals t{8, 2, 4};
  EXPECT_FLOAT_EQ(t.failure_rate(), 25.0F);
  EXPECT_FLOAT_EQ(t.slow_call_rate(), 50.0F);
  EXPECT_FLOAT_EQ(window_totals{}.failure_rate(), 0.0F);
}

TEST(time_window, drops_buckets_as_seconds_pass) {
  time_window w{2};
  const clock::time_point t0{1000s};
  w.record(t0, true, false);
  w.record(t0 + 999ms, true, false);
  w.record(t0 + 1s, false, false);
  EXPECT_EQ(w.totals(t0 + 1s).calls, 3U);
  EXPECT_EQ(w.totals(t0 + 2s).calls, 1U);
  EXPECT_EQ(w.totals(t0 + 2s).failed, 0U);
  EXPECT_EQ(w.totals(t0 + 3s).calls, 0U);
  // A jump far beyond the window empties it in one step.
  w.record(t0 + 3s, true, true);
  EXPECT_EQ(w.totals(t0 + 1000000s).calls, 0U);
}

TEST(time_window, a_late_record_counts_in_the_newest_bucket) {
  time_window w{2};
  const clock::time_point t0{1000s};
  w.record(t0 + 1s, false, false);
  w.record(t0, true, false); // a thread that read the clock earlier
  EXPECT_EQ(w.totals(t0 + 1s).calls, 2U);
  EXPECT_EQ(w.totals(t0 + 2s).calls, 2U);
  EXPECT_EQ(w.totals(t0 + 3s).calls, 0U);
}

TEST(sliding_windows, reject_size_zero) {
  EXPECT_THROW(count_window{0}, std::invalid_argument);
  EXPECT_THROW(time_window{0}, std::invalid_argument);
}

} // namespace
} // namespace tether::resilience
