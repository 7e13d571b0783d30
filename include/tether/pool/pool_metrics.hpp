#pragma once

#include <array>
#include <functional>
#include <system_error>

#include "tether/metrics/registry.hpp"
#include "tether/pool/pool_options.hpp"

namespace tether::pool {

/// A pool_observer that turns what a pool reports into Prometheus series, and reads its counts at
/// scrape time. Give it to connection_pool::create and keep it alive as long as the pool.
///
/// Series (all with the labels given, e.g. pool="orders-db"):
///   tether_pool_connections{state="idle"|"active"}   gauge
///   tether_pool_connections_max, tether_pool_connections_min_idle, tether_pool_pending_acquires,
///   tether_pool_connecting                            gauges
///   tether_pool_acquire_wait_seconds, tether_pool_connection_create_seconds,
///   tether_pool_connection_usage_seconds              histograms
///   tether_pool_acquire_timeouts_total, tether_pool_leaks_total             counters
///   tether_pool_connect_failures_total{cause=...}   connects that failed
///   tether_pool_fast_failures_total{cause=...}      acquires answered at once with the last
///                                                   connect failure, while the pool backs off
///   tether_pool_connections_closed_total{reason=...}
class pool_metrics final : public pool_observer {
public:
  /// How many causes cause_of tells apart (each a series of the failure counters).
  static constexpr std::size_t cause_count = 8;

  /// `gauges_now` false: the gauges wait for watch_gauges() (a proxy cluster built by a reload
  /// while its predecessor still shows the same series).
  pool_metrics(metrics::registry& registry, const metrics::labels& labels,
               std::function<pool_stats()> stats, bool gauges_now = true);

  void on_acquired(clock::duration waited) override { acquire_wait_.observe(waited); }
  void on_acquire_timeout() override { timeouts_.Increment(); }
  void on_released(clock::duration held) override { usage_.observe(held); }
  void on_connected(clock::duration took) override { create_.observe(took); }
  void on_connect_failed(std::error_code cause) override;
  void on_acquire_failed_fast(std::error_code cause) override;
  void on_closed(close_reason reason) override {
    closed_[static_cast<std::size_t>(reason)]->Increment();
  }
  void on_leak(const std::source_location& /*at*/, clock::duration /*held*/) override {
    leaks_.Increment();
  }

  /// The cause label a connect error is counted under: refused, timeout, unreachable, reset,
  /// name_resolution, tls (a handshake that failed) or other.
  [[nodiscard]] static std::string_view cause_of(std::error_code ec) noexcept;

  /// Takes the pool's gauges out of the registry now, while the pool lives on (a pool being
  /// retired, whose successor registers the same series). Counters and histograms stay: they
  /// are the same series for the successor.
  void forget_gauges() noexcept { gauges_.clear(); }
  /// Registers the gauges (idle, active, max, min idle, pending, connecting), once.
  void watch_gauges();

private:
  metrics::registry& registry_;
  metrics::labels labels_;
  std::function<pool_stats()> stats_;
  metrics::histogram& acquire_wait_;
  metrics::histogram& usage_;
  metrics::histogram& create_;
  prometheus::Counter& timeouts_;
  prometheus::Counter& leaks_;
  std::array<prometheus::Counter*, cause_count> failures_{};
  std::array<prometheus::Counter*, cause_count> fast_failures_{};
  std::array<prometheus::Counter*, close_reason_count> closed_{};
  std::vector<metrics::callback_registration> gauges_;
};

} // namespace tether::pool
