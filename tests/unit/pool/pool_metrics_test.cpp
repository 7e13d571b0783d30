#include "tether/pool/pool_metrics.hpp"

#include <gtest/gtest.h>

#include <asio/error.hpp>

#include "tether/core/error.hpp"

namespace tether::pool {
namespace {

using namespace std::chrono_literals;

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

TEST(pool_metrics, names_connect_failure_causes) {
  EXPECT_EQ(pool_metrics::cause_of(make_error_code(std::errc::connection_refused)), "refused");
  EXPECT_EQ(pool_metrics::cause_of(std::error_code{ECONNREFUSED, std::system_category()}),
            "refused");
  EXPECT_EQ(pool_metrics::cause_of(make_error_code(std::errc::timed_out)), "timeout");
  EXPECT_EQ(pool_metrics::cause_of(make_error_code(std::errc::host_unreachable)), "unreachable");
  EXPECT_EQ(pool_metrics::cause_of(make_error_code(std::errc::network_unreachable)), "unreachable");
  EXPECT_EQ(pool_metrics::cause_of(make_error_code(std::errc::connection_reset)), "reset");
  EXPECT_EQ(pool_metrics::cause_of(asio::error::host_not_found), "name_resolution");
  EXPECT_EQ(pool_metrics::cause_of(make_error_code(errc::overloaded)), "limit");
  EXPECT_EQ(pool_metrics::cause_of(make_error_code(errc::tls_unknown_ca)), "tls");
  EXPECT_EQ(pool_metrics::cause_of(make_error_code(std::errc::permission_denied)), "other");
}

TEST(pool_metrics, turns_the_pools_reports_into_series) {
  metrics::registry registry;
  pool_stats stats;
  stats.idle = 3;
  stats.active = 2;
  stats.pending = 4;
  stats.max = 10;
  stats.min_idle = 5;
  pool_metrics m{registry, {{"pool", "db"}}, [&stats] { return stats; }};
  m.on_acquired(2ms);
  m.on_acquire_timeout();
  m.on_released(40ms);
  m.on_connected(1ms);
  m.on_connect_failed(make_error_code(std::errc::connection_refused));
  m.on_acquire_failed_fast(make_error_code(std::errc::connection_refused));
  m.on_acquire_failed_fast(make_error_code(std::errc::connection_refused));
  m.on_closed(close_reason::idle_timeout);
  m.on_closed(close_reason::not_reusable);
  m.on_leak(std::source_location::current(), 30s);
  const std::string text = registry.expose();
  EXPECT_TRUE(contains(text, "tether_pool_connections{pool=\"db\",state=\"idle\"} 3"));
  EXPECT_TRUE(contains(text, "tether_pool_connections{pool=\"db\",state=\"active\"} 2"));
  EXPECT_TRUE(contains(text, "tether_pool_pending_acquires{pool=\"db\"} 4"));
  EXPECT_TRUE(contains(text, "tether_pool_connections_max{pool=\"db\"} 10"));
  EXPECT_TRUE(contains(text, "tether_pool_connections_min_idle{pool=\"db\"} 5"));
  EXPECT_TRUE(contains(text, "tether_pool_acquire_timeouts_total{pool=\"db\"} 1"));
  EXPECT_TRUE(contains(text, "tether_pool_leaks_total{pool=\"db\"} 1"));
  EXPECT_TRUE(
      contains(text, "tether_pool_connect_failures_total{cause=\"refused\",pool=\"db\"} 1"));
  EXPECT_TRUE(contains(text, "tether_pool_fast_failures_total{cause=\"refused\",pool=\"db\"} 2"));
  EXPECT_TRUE(contains(
      text, "tether_pool_connections_closed_total{pool=\"db\",reason=\"idle_timeout\"} 1"));
  EXPECT_TRUE(contains(
      text, "tether_pool_connections_closed_total{pool=\"db\",reason=\"not_reusable\"} 1"));
  EXPECT_TRUE(contains(text, "tether_pool_acquire_wait_seconds_count{pool=\"db\"} 1"));
  EXPECT_TRUE(
      contains(text, "tether_pool_connection_usage_seconds_bucket{pool=\"db\",le=\"0.05\"} 1"));
  stats.idle = 7;
  EXPECT_TRUE(contains(registry.expose(), "tether_pool_connections{pool=\"db\",state=\"idle\"} 7"))
      << "gauges are read at scrape time";
}

} // namespace
} // namespace tether::pool
