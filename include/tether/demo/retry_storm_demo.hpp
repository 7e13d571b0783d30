#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace tether::demo {

/// How a simulated gateway handles a failing backend.
enum class gateway_mode {
  naive, ///< the seed's gateway: 3 immediate retries, no backoff, no budget, no breaker
  tether ///< tether's resilience layer: backoff with jitter, a retry budget, a circuit breaker
};

/// Totals of one simulated run.
struct storm_report {
  gateway_mode mode = gateway_mode::naive;
  std::uint64_t requests = 0;               ///< client requests sent
  std::uint64_t succeeded = 0;              ///< client requests answered 200
  std::uint64_t backend_attempts = 0;       ///< attempts that reached the backend
  std::uint64_t fault_requests = 0;         ///< client requests that started during the fault
  std::uint64_t fault_backend_attempts = 0; ///< backend attempts during the fault
  std::uint64_t rejected_by_breaker = 0;    ///< attempts the breaker refused
  std::uint64_t refused_by_budget = 0;      ///< retries the budget refused
  std::vector<std::string> breaker_changes; ///< "12.340s closed -> open", ...

  /// Backend attempts per client request while the backend was failing.
  [[nodiscard]] double fault_amplification() const noexcept {
    return fault_requests == 0
               ? 0.0
               : static_cast<double>(fault_backend_attempts) / static_cast<double>(fault_requests);
  }
};

/// Simulates 30 s of a client sending a request every 10 ms through a gateway to a backend that
/// answers 503 to everything from t=10 s to t=20 s. Time is a manual clock and randomness is
/// seeded, so a run takes milliseconds and the same seed gives the same report.
[[nodiscard]] storm_report simulate_retry_storm(gateway_mode mode, std::uint64_t seed);

/// Runs both modes and writes a side-by-side report; with `metrics`, appends the tether run's
/// Prometheus exposition.
void run_resilience_demo(std::ostream& out, std::uint64_t seed, bool metrics);

} // namespace tether::demo
