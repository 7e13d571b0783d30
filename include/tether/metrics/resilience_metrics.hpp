#pragma once

#include <string>
#include <vector>

#include "tether/metrics/registry.hpp"
#include "tether/resilience/circuit_breaker.hpp"
#include "tether/resilience/outlier_detector.hpp"
#include "tether/resilience/resource_limit.hpp"
#include "tether/resilience/retry_budget.hpp"

namespace tether::metrics {

/// Series that read a resilience object at scrape time. The object must outlive this; drop it
/// (or let it go out of scope) to remove the series. Nothing is added to the object's hot path.
class resilience_series {
public:
  /// tether_breaker_state{state=...} (1 for the current state, 0 for the others),
  /// tether_breaker_failure_rate_percent, tether_breaker_slow_call_rate_percent,
  /// tether_breaker_not_permitted_calls_total.
  void watch(registry& r, const resilience::circuit_breaker& breaker, const labels& l);
  /// tether_limit_remaining{resource=...} and tether_limit_open{resource=...} for the four
  /// thresholds.
  void watch(registry& r, const resilience::cluster_limits& limits, const labels& l);
  /// tether_retry_budget_remaining.
  void watch(registry& r, const resilience::retry_budget& budget, const labels& l);
  /// tether_outlier_hosts_ejected and tether_outlier_hosts.
  void watch(registry& r, const resilience::outlier_detector& detector, const labels& l);

private:
  std::vector<callback_registration> registrations_;
};

} // namespace tether::metrics
