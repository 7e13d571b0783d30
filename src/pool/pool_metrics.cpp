#include "tether/pool/pool_metrics.hpp"

#include <algorithm>

#include <asio/error.hpp>

#include "tether/core/error.hpp"

namespace tether::pool {
namespace {

constexpr std::array<std::string_view, pool_metrics::cause_count> causes{
    "refused", "timeout", "unreachable", "reset", "name_resolution", "tls", "limit", "other"};

} // namespace

std::string_view pool_metrics::cause_of(std::error_code ec) noexcept {
  if (ec == std::errc::connection_refused) {
    return causes[0];
  }
  if (ec == std::errc::timed_out) {
    return causes[1];
  }
  if (ec == std::errc::host_unreachable || ec == std::errc::network_unreachable) {
    return causes[2];
  }
  if (ec == std::errc::connection_reset || ec == std::errc::connection_aborted) {
    return causes[3];
  }
  if (ec.category() == asio::error::get_netdb_category() ||
      ec.category() == asio::error::get_addrinfo_category()) {
    return causes[4];
  }
  if (is_tls_error(ec)) {
    return causes[5];
  }
  if (ec == errc::overloaded) {
    return causes[6]; // the connector's own limit (a proxy cluster's max_connections): no dial
  }
  return causes[7];
}

pool_metrics::pool_metrics(metrics::registry& registry, const metrics::labels& labels,
                           std::function<pool_stats()> stats, bool gauges_now)
    : registry_{registry}, labels_{labels}, stats_{std::move(stats)},
      acquire_wait_{registry.histogram_series("tether_pool_acquire_wait_seconds",
                                              "Time from asking for a connection to getting one",
                                              labels)},
      usage_{registry.histogram_series("tether_pool_connection_usage_seconds",
                                       "How long a lease held its connection", labels)},
      create_{registry.histogram_series("tether_pool_connection_create_seconds",
                                        "Time to open a connection", labels)},
      timeouts_{registry
                    .counter("tether_pool_acquire_timeouts_total",
                             "Acquires that gave up after the acquire timeout")
                    .Add(labels)},
      leaks_{
          registry.counter("tether_pool_leaks_total", "Leases held longer than the leak threshold")
              .Add(labels)} {
  auto& failures = registry.counter("tether_pool_connect_failures_total",
                                    "Connections that could not be opened, by cause");
  auto& fast = registry.counter(
      "tether_pool_fast_failures_total",
      "Acquires answered at once with the last connect failure while the pool backs off, by "
      "cause");
  for (std::size_t i = 0; i < causes.size(); ++i) {
    failures_[i] = &failures.Add(metrics::with_label(labels, "cause", causes[i]));
    fast_failures_[i] = &fast.Add(metrics::with_label(labels, "cause", causes[i]));
  }
  auto& closed = registry.counter("tether_pool_connections_closed_total",
                                  "Connections the pool closed, by reason");
  for (std::size_t i = 0; i < closed_.size(); ++i) {
    closed_[i] =
        &closed.Add(metrics::with_label(labels, "reason", to_string(static_cast<close_reason>(i))));
  }
  if (gauges_now) {
    watch_gauges();
  }
}

void pool_metrics::watch_gauges() {
  auto& registry = registry_;
  const auto& labels = labels_;
  auto read = [stats = stats_](auto field) {
    return [stats, field] { return static_cast<double>(field(stats())); };
  };
  gauges_.push_back(registry.callback("tether_pool_connections", "Open connections by state",
                                      metrics::metric_kind::gauge,
                                      metrics::with_label(labels, "state", "idle"),
                                      read([](const pool_stats& s) { return s.idle; })));
  gauges_.push_back(registry.callback("tether_pool_connections", "Open connections by state",
                                      metrics::metric_kind::gauge,
                                      metrics::with_label(labels, "state", "active"),
                                      read([](const pool_stats& s) { return s.active; })));
  gauges_.push_back(registry.callback("tether_pool_connections_max", "The pool's max_size",
                                      metrics::metric_kind::gauge, labels,
                                      read([](const pool_stats& s) { return s.max; })));
  gauges_.push_back(registry.callback("tether_pool_connections_min_idle", "The pool's min_idle",
                                      metrics::metric_kind::gauge, labels,
                                      read([](const pool_stats& s) { return s.min_idle; })));
  gauges_.push_back(registry.callback(
      "tether_pool_pending_acquires", "Acquirers waiting for a connection",
      metrics::metric_kind::gauge, labels, read([](const pool_stats& s) { return s.pending; })));
  gauges_.push_back(registry.callback("tether_pool_connecting", "Connections being opened",
                                      metrics::metric_kind::gauge, labels,
                                      read([](const pool_stats& s) { return s.connecting; })));
}

namespace {

std::size_t cause_index(std::error_code ec) noexcept {
  const auto name = pool_metrics::cause_of(ec);
  return static_cast<std::size_t>(std::find(causes.begin(), causes.end(), name) - causes.begin());
}

} // namespace

void pool_metrics::on_connect_failed(std::error_code cause) {
  failures_[cause_index(cause)]->Increment();
}

void pool_metrics::on_acquire_failed_fast(std::error_code cause) {
  fast_failures_[cause_index(cause)]->Increment();
}

} // namespace tether::pool
