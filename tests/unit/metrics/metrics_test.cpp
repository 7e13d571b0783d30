#include "tether/metrics/registry.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>

#include "tether/metrics/histogram.hpp"
#include "tether/metrics/resilience_metrics.hpp"

namespace tether::metrics {
namespace {

using namespace std::chrono_literals;

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

TEST(check_name, enforces_tethers_conventions) {
  EXPECT_NO_THROW(check_name("tether_pool_acquire_wait_seconds", metric_kind::histogram));
  EXPECT_NO_THROW(check_name("tether_retry_attempts_total", metric_kind::counter));
  EXPECT_NO_THROW(check_name("tether_pool_connections_idle", metric_kind::gauge));
  EXPECT_THROW(check_name("pool_requests_total", metric_kind::counter), std::invalid_argument);
  EXPECT_THROW(check_name("tether_retry_attempts", metric_kind::counter), std::invalid_argument);
  EXPECT_THROW(check_name("tether_pool_idle_total", metric_kind::gauge), std::invalid_argument);
  EXPECT_THROW(check_name("tether_pool_wait_ms", metric_kind::histogram), std::invalid_argument);
  EXPECT_THROW(check_name("tether_Pool_idle", metric_kind::gauge), std::invalid_argument);
  EXPECT_THROW(check_name("tether_idle", metric_kind::gauge), std::invalid_argument);
  EXPECT_THROW(check_name("tether__total", metric_kind::counter), std::invalid_argument);
  EXPECT_THROW(check_name("tether_pool_idle_", metric_kind::gauge), std::invalid_argument);
  try {
    check_name("tether_retry_attempts", metric_kind::counter);
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(contains(e.what(), "tether_retry_attempts"));
    EXPECT_TRUE(contains(e.what(), "_total"));
  }
}

TEST(histogram, buckets_are_less_or_equal_and_cumulate_at_exposition) {
  registry r;
  auto& h = r.histogram_series("tether_test_latency_seconds", "Test latency", {{"host", "a"}},
                               {0.1, 0.5, 1.0});
  h.observe(0.1); // le=0.1
  h.observe(0.2); // le=0.5
  h.observe(2.0); // +Inf
  h.observe(300ms);
  EXPECT_EQ(h.count(), 4U);
  EXPECT_EQ(h.bucket_counts(), (std::vector<std::uint64_t>{1, 2, 0, 1}));
  EXPECT_NEAR(h.sum(), 2.6, 1e-9);
  const std::string text = r.expose();
  EXPECT_TRUE(contains(text, "# TYPE tether_test_latency_seconds histogram"));
  EXPECT_TRUE(contains(text, "tether_test_latency_seconds_bucket{host=\"a\",le=\"0.1\"} 1"));
  EXPECT_TRUE(contains(text, "tether_test_latency_seconds_bucket{host=\"a\",le=\"0.5\"} 3"));
  EXPECT_TRUE(contains(text, "tether_test_latency_seconds_bucket{host=\"a\",le=\"1\"} 3"));
  EXPECT_TRUE(contains(text, "tether_test_latency_seconds_bucket{host=\"a\",le=\"+Inf\"} 4"));
  EXPECT_TRUE(contains(text, "tether_test_latency_seconds_count{host=\"a\"} 4"));
}

TEST(histogram, the_same_series_is_returned_twice_and_bounds_must_agree) {
  registry r;
  auto& a = r.histogram_series("tether_test_wait_seconds", "h", {{"x", "1"}});
  auto& b = r.histogram_series("tether_test_wait_seconds", "h", {{"x", "1"}});
  EXPECT_EQ(&a, &b);
  EXPECT_THROW(r.histogram_series("tether_test_wait_seconds", "h", {{"x", "2"}}, {1.0}),
               std::invalid_argument);
  EXPECT_THROW(histogram({1.0, 1.0}), std::invalid_argument);
  EXPECT_THROW(histogram({2.0, 1.0}), std::invalid_argument);
  EXPECT_THROW(histogram({1.0, std::numeric_limits<double>::infinity()}), std::invalid_argument);
  histogram h{{1.0}};
  h.observe(std::nan(""));
  EXPECT_EQ(h.count(), 0U);
}

TEST(histogram, two_threads_lose_no_observation) {
  histogram h{latency_buckets()};
  auto worker = [&] {
    for (int i = 0; i < 50000; ++i) {
      h.observe(0.001);
    }
  };
  std::thread a{worker};
  std::thread b{worker};
  a.join();
  b.join();
  EXPECT_EQ(h.count(), 100000U);
  EXPECT_NEAR(h.sum(), 100.0, 1e-6);
}

TEST(registry, counters_and_gauges_come_out_in_text_format) {
  registry r;
  auto& requests = r.counter("tether_test_requests_total", "Requests");
  requests.Add({{"code", "2xx"}}).Increment(3);
  r.gauge("tether_test_connections_active", "Active").Add({}).Set(7);
  const std::string text = r.expose();
  EXPECT_TRUE(contains(text, "# TYPE tether_test_requests_total counter"));
  EXPECT_TRUE(contains(text, "tether_test_requests_total{code=\"2xx\"} 3"));
  EXPECT_TRUE(contains(text, "tether_test_connections_active 7"));
}

TEST(registry, refuses_a_name_used_by_another_kind) {
  registry r;
  r.gauge("tether_test_thing_count", "x");
  EXPECT_THROW(r.histogram_series("tether_test_thing_count", "x", {}), std::invalid_argument);
  EXPECT_THROW(
      r.callback("tether_test_thing_count", "x", metric_kind::counter, {}, [] { return 0.0; }),
      std::invalid_argument);
}

TEST(registry, one_name_is_one_family) {
  registry r;
  r.gauge("tether_test_level_ratio", "x");
  EXPECT_THROW(
      r.callback("tether_test_level_ratio", "x", metric_kind::gauge, {}, [] { return 1.0; }),
      std::invalid_argument);
  EXPECT_NO_THROW(r.gauge("tether_test_level_ratio", "x")); // the same family again
}

TEST(registry, refuses_bad_label_names) {
  registry r;
  EXPECT_THROW(r.histogram_series("tether_test_wait_seconds", "h", {{"bad-name", "1"}}),
               std::invalid_argument);
  EXPECT_THROW(r.callback("tether_test_x_ratio", "h", metric_kind::gauge, {{"__reserved", "1"}},
                          [] { return 1.0; }),
               std::invalid_argument);
  EXPECT_THROW(r.histogram_series("tether_test_wait_seconds", "h", {{"le", "1"}}),
               std::invalid_argument);
  auto ok =
      r.callback("tether_test_x_ratio", "h", metric_kind::gauge, {{"le", "1"}}, [] { return 1.0; });
  EXPECT_THROW(
      r.callback("tether_test_x_ratio", "h", metric_kind::gauge, {{"le", "1"}}, [] { return 2.0; }),
      std::invalid_argument)
      << "two series with the same labels would make the scrape invalid";
}

TEST(registry, callbacks_are_read_at_scrape_and_removed_with_their_registration) {
  registry r;
  double value = 1;
  {
    auto reg = r.callback("tether_test_level_ratio", "Level", metric_kind::gauge, {{"pool", "db"}},
                          [&value] { return value; });
    value = 42;
    EXPECT_TRUE(contains(r.expose(), "tether_test_level_ratio{pool=\"db\"} 42"));
  }
  EXPECT_FALSE(contains(r.expose(), "tether_test_level_ratio"));
}

TEST(registry, a_registration_may_outlive_its_registry) {
  callback_registration reg;
  {
    registry r;
    reg = r.callback("tether_test_orphan_ratio", "x", metric_kind::gauge, {}, [] { return 1.0; });
  }
  SUCCEED(); // dropping `reg` now must not touch the dead registry (ASan checks this)
}

TEST(resilience_series, expose_breaker_limits_budget_and_outliers) {
  manual_clock clock;
  resilience::circuit_breaker_options bo;
  bo.window_size = 2;
  bo.minimum_calls = 2;
  resilience::circuit_breaker breaker{"b", bo, clock};
  resilience::cluster_limits limits;
  resilience::windowed_retry_budget budget{{}, clock};
  resilience::outlier_detector detector{{}, clock};
  auto host = detector.add_host("h1");

  registry r;
  resilience_series series;
  series.watch(r, breaker, {{"cluster", "api"}});
  series.watch(r, limits, {{"cluster", "api"}});
  series.watch(r, budget, {{"cluster", "api"}});
  series.watch(r, detector, {{"cluster", "api"}});

  ASSERT_TRUE(limits.retries.try_acquire());
  for (int i = 0; i < 2; ++i) {
    breaker.on_failure(breaker.try_acquire(), 1ms);
  }
  (void)breaker.try_acquire();

  const std::string text = r.expose();
  EXPECT_TRUE(contains(text, "tether_breaker_state{cluster=\"api\",state=\"open\"} 1"));
  EXPECT_TRUE(contains(text, "tether_breaker_state{cluster=\"api\",state=\"closed\"} 0"));
  EXPECT_TRUE(contains(text, "tether_breaker_not_permitted_calls_total{cluster=\"api\"} 1"));
  EXPECT_TRUE(contains(text, "tether_breaker_failure_rate_percent{cluster=\"api\"} 100"));
  EXPECT_TRUE(contains(text, "tether_limit_remaining{cluster=\"api\",resource=\"retries\"} 2"));
  EXPECT_TRUE(contains(text, "tether_limit_open{cluster=\"api\",resource=\"retries\"} 0"));
  EXPECT_TRUE(contains(text, "tether_retry_budget_remaining{cluster=\"api\"} 100"));
  EXPECT_TRUE(contains(text, "tether_outlier_hosts{cluster=\"api\"} 1"));
  EXPECT_TRUE(contains(text, "tether_outlier_hosts_ejected{cluster=\"api\"} 0"));
  limits.retries.release();
}

} // namespace
} // namespace tether::metrics
