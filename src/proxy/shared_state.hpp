#pragma once
// What a proxy's workers share: the config, the counters and metric handles per cluster and
// host (atomics only on the data path), the process and access logs.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>
#include <prometheus/counter.h>
#include <spdlog/async.h>
#include <spdlog/spdlog.h>

#include "tether/core/clock.hpp"
#include "tether/http/connection.hpp"
#include "tether/metrics/histogram.hpp"
#include "tether/metrics/registry.hpp"
#include "tether/metrics/resilience_metrics.hpp"
#include "tether/net/address_cache.hpp"
#include "tether/pool/connection_pool.hpp"
#include "tether/proxy/config.hpp"
#include "tether/resilience/circuit_breaker.hpp"
#include "tether/resilience/outlier_detector.hpp"
#include "tether/resilience/resource_limit.hpp"
#include "tether/resilience/retry_budget.hpp"

namespace tether::proxy::detail {

inline constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
using steady = std::chrono::steady_clock;
using upstream_pool = pool::connection_pool<http::http_connector>;

// Counters shared by the workers (atomics only), read by /clusters and /metrics.

struct endpoint_counters {
  std::string name;                       // host:port
  std::atomic<std::uint64_t> requests{0}; // attempts sent to it
  std::atomic<std::int64_t> active{0};
  std::atomic<std::uint64_t> failures{0}; // connect failures, resets, timeouts, 5xx
  // Resilience state of the host, shared by every worker.
  std::unique_ptr<resilience::circuit_breaker> breaker; // null: breaker off
  resilience::breaker_failures breaker_failures = resilience::breaker_failures::gateway_errors;
  std::shared_ptr<resilience::outlier_host> outlier; // null: outlier detection off
  std::atomic<bool> healthy{true};                   // the active health check's verdict
  std::atomic<bool> checked{true}; // false until a health-checked host's first verdict
  prometheus::Counter* attempts = nullptr;
  prometheus::Counter* checks_passed = nullptr;
  prometheus::Counter* checks_failed = nullptr;
  prometheus::Counter* ejections = nullptr;
  // A host given by name: its addresses, resolved every resolve_interval (null for an IP).
  std::shared_ptr<net::address_cache> addresses;
  prometheus::Counter* resolved = nullptr;
  prometheus::Counter* resolve_failed = nullptr;

  /// May get requests: not taken out by its health check nor ejected (the breaker is asked
  /// separately, since asking it is what moves it from open to half-open).
  [[nodiscard]] bool in_service() const noexcept {
    return healthy.load(std::memory_order_relaxed) && (!outlier || !outlier->ejected());
  }
};

enum class response_class : std::uint8_t { c1xx, c2xx, c3xx, c4xx, c5xx, count_ };
inline constexpr std::array<const char*, 5> class_names = {"1xx", "2xx", "3xx", "4xx", "5xx"};

// Why the proxy answered itself (or gave up on a request).
enum class cause : std::uint8_t {
  no_route,
  bad_request,
  header_timeout,
  connect_failure,
  pool_timeout,
  upstream_reset,
  upstream_timeout,
  bad_response,
  downstream_reset,
  overflow,
  circuit_open,
  count_
};
inline constexpr std::array<const char*, 11> cause_names = {
    "no_route",         "bad_request",    "header_timeout",   "connect_failure",
    "pool_timeout",     "upstream_reset", "upstream_timeout", "bad_response",
    "downstream_reset", "overflow",       "circuit_open"};

// The thresholds of resilience::cluster_limits, as metric labels.
enum class resource : std::uint8_t { connections, pending_requests, requests, retries, count_ };
inline constexpr std::array<const char*, 4> resource_names = {"connections", "pending_requests",
                                                              "requests", "retries"};

// Reasons of tether_proxy_retries_total: the attempt results (resilience::attempt_result).
inline constexpr std::array<const char*, 6> retry_reason_names = {
    "success", "connect_failure", "refused", "reset", "timeout", "http_status"};

struct cluster_counters {
  std::vector<std::unique_ptr<endpoint_counters>> endpoints;
  std::array<prometheus::Counter*, 5> responses{};
  metrics::histogram* duration = nullptr;
  std::unique_ptr<resilience::cluster_limits> limits;
  std::unique_ptr<resilience::windowed_retry_budget> budget; // null: no budget
  std::unique_ptr<resilience::outlier_detector> detector;    // null: no outlier detection
  std::array<prometheus::Counter*, retry_reason_names.size()> retries{};
  prometheus::Counter* budget_exhausted = nullptr;
  prometheus::Counter* stale_resends = nullptr; // requests sent again after a stale connection
  std::array<prometheus::Counter*, resource_names.size()> overflow{};
  metrics::resilience_series series;
};

/// Everything the workers share: the config, counters and metric handles. Read-only after
/// start, but for the atomics inside.
struct shared_state {
  config cfg;
  // Breakers, budgets and ejections count in seconds: the coarse clock (a few ns to read) does.
  const clock* resilience_clock = &coarse_monotonic_clock::instance();
  std::vector<std::size_t> route_cluster;       // per route: its cluster's index
  std::vector<const retry_config*> route_retry; // per route: its retry policy (or the cluster's)
  metrics::registry registry;
  std::vector<cluster_counters> clusters;
  std::array<prometheus::Counter*, static_cast<std::size_t>(cause::count_)> causes{};
  prometheus::Counter* downstream_opened = nullptr;
  std::array<prometheus::Counter*, 3> accept_failures{}; // by net::accept_failure
  std::atomic<std::int64_t> downstream_active{0};
  std::vector<metrics::callback_registration> callbacks;
  std::atomic<bool> draining{false};
  // The process log (stderr) and the access log (a file, written by spdlog's own thread so a
  // worker only formats a line and queues it).
  std::shared_ptr<spdlog::logger> log;
  std::shared_ptr<spdlog::details::thread_pool> access_threads;
  std::shared_ptr<spdlog::logger> access;
  bool json_logs = false;
};

inline std::string json_string(std::string_view s) {
  return nlohmann::json(std::string{s}).dump();
}

/// One line of the process log, as text or as a JSON object's "msg" (log.format).
inline void log_event(shared_state& s, spdlog::level::level_enum level, std::string_view message) {
  if (s.log && s.log->should_log(level)) {
    s.log->log(level, "{}", s.json_logs ? json_string(message) : std::string{message});
  }
}

} // namespace tether::proxy::detail
