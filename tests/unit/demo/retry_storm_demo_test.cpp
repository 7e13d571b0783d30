#include "tether/demo/retry_storm_demo.hpp"

#include <gtest/gtest.h>

#include <sstream>

namespace tether::demo {
namespace {

TEST(retry_storm_demo, naive_gateway_quadruples_load_during_the_fault) {
  const auto r = simulate_retry_storm(gateway_mode::naive, 1);
  EXPECT_EQ(r.requests, 3000U);
  EXPECT_DOUBLE_EQ(r.fault_amplification(), 4.0);
  EXPECT_EQ(r.rejected_by_breaker, 0U);
  EXPECT_EQ(r.succeeded, 2000U); // every request outside the fault
}

TEST(retry_storm_demo, tether_sheds_the_failing_backend_and_recovers) {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    const auto r = simulate_retry_storm(gateway_mode::tether, seed);
    EXPECT_LT(r.fault_amplification(), 0.2) << "seed " << seed;
    EXPECT_GT(r.rejected_by_breaker, 900U) << "seed " << seed;
    // The breaker closes again within a few seconds of the backend's recovery at t=20 s.
    EXPECT_GT(r.succeeded, 1900U) << "seed " << seed;
    ASSERT_FALSE(r.breaker_changes.empty());
    EXPECT_NE(r.breaker_changes.front().find("closed -> open"), std::string::npos);
    EXPECT_NE(r.breaker_changes.back().find("half_open -> closed"), std::string::npos);
  }
}

TEST(retry_storm_demo, same_seed_same_report) {
  const auto a = simulate_retry_storm(gateway_mode::tether, 9);
  const auto b = simulate_retry_storm(gateway_mode::tether, 9);
  EXPECT_EQ(a.backend_attempts, b.backend_attempts);
  EXPECT_EQ(a.breaker_changes, b.breaker_changes);
}

TEST(retry_storm_demo, report_names_both_modes_and_the_metrics) {
  std::ostringstream out;
  run_resilience_demo(out, 1, true);
  const std::string text = out.str();
  EXPECT_NE(text.find("naive"), std::string::npos);
  EXPECT_NE(text.find("tether "), std::string::npos);
  EXPECT_NE(text.find("tether_breaker_state"), std::string::npos);
  EXPECT_NE(text.find("grpc:"), std::string::npos);
}

} // namespace
} // namespace tether::demo
