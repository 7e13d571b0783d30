#include "tether/metrics/resilience_metrics.hpp"

#include <utility>

namespace tether::metrics {

void resilience_series::watch(registry& r, const resilience::circuit_breaker& breaker,
                              const labels& l) {
  for (const auto state : resilience::all_breaker_states) {
    registrations_.push_back(r.callback(
        "tether_breaker_state", "1 for the circuit breaker's current state, 0 for the others",
        metric_kind::gauge, with_label(l, "state", std::string{resilience::to_string(state)}),
        [&breaker, state] { return breaker.state() == state ? 1.0 : 0.0; }));
  }
  registrations_.push_back(r.callback(
      "tether_breaker_failure_rate_percent", "Failed calls in the breaker's window, in percent",
      metric_kind::gauge, l,
      [&breaker] { return static_cast<double>(breaker.metrics().window.failure_rate()); }));
  registrations_.push_back(r.callback(
      "tether_breaker_slow_call_rate_percent", "Slow calls in the breaker's window, in percent",
      metric_kind::gauge, l,
      [&breaker] { return static_cast<double>(breaker.metrics().window.slow_call_rate()); }));
  registrations_.push_back(r.callback(
      "tether_breaker_not_permitted_calls_total", "Calls the breaker refused", metric_kind::counter,
      l, [&breaker] { return static_cast<double>(breaker.metrics().not_permitted); }));
}

void resilience_series::watch(registry& r, const resilience::cluster_limits& limits,
                              const labels& l) {
  const std::pair<const char*, const resilience::resource_limit*> resources[] = {
      {"connections", &limits.connections},
      {"pending_requests", &limits.pending_requests},
      {"requests", &limits.requests},
      {"retries", &limits.retries}};
  for (const auto& [name, limit] : resources) {
    registrations_.push_back(
        r.callback("tether_limit_remaining", "Units of a concurrency limit still free",
                   metric_kind::gauge, with_label(l, "resource", name),
                   [limit = limit] { return static_cast<double>(limit->remaining()); }));
    registrations_.push_back(r.callback(
        "tether_limit_open", "1 when a concurrency limit is reached", metric_kind::gauge,
        with_label(l, "resource", name), [limit = limit] { return limit->open() ? 1.0 : 0.0; }));
  }
}

void resilience_series::watch(registry& r, const resilience::retry_budget& budget,
                              const labels& l) {
  registrations_.push_back(r.callback(
      "tether_retry_budget_remaining", "Retries the budget would allow now", metric_kind::gauge, l,
      [&budget] { return static_cast<double>(budget.remaining()); }));
}

void resilience_series::watch(registry& r, const resilience::outlier_detector& detector,
                              const labels& l) {
  registrations_.push_back(
      r.callback("tether_outlier_hosts_ejected", "Hosts currently ejected by outlier detection",
                 metric_kind::gauge, l,
                 [&detector] { return static_cast<double>(detector.ejected_count()); }));
  registrations_.push_back(
      r.callback("tether_outlier_hosts", "Hosts watched by outlier detection", metric_kind::gauge,
                 l, [&detector] { return static_cast<double>(detector.host_count()); }));
}

} // namespace tether::metrics
