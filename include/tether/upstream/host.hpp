#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/counter.h>

#include "tether/core/clock.hpp"
#include "tether/net/address_cache.hpp"
#include "tether/pool/connection_pool.hpp"
#include "tether/resilience/circuit_breaker.hpp"
#include "tether/resilience/outcome.hpp"
#include "tether/resilience/outlier_detector.hpp"

namespace tether::upstream {

/// The counters a host's user keeps for it (each null: not counted).
struct host_series {
  prometheus::Counter* attempts = nullptr;  ///< attempts sent on a connection to it
  prometheus::Counter* ejections = nullptr; ///< times outlier detection ejected it
  prometheus::Counter* checks_passed = nullptr;
  prometheus::Counter* checks_failed = nullptr;
  prometheus::Counter* resolved = nullptr; ///< lookups of its name, for a host given by name
  prometheus::Counter* resolve_failed = nullptr;
};

/// One endpoint of a cluster, with everything tether keeps for it: its connection pools (one per
/// thread that sends to it), its breaker, its outlier state, its health, the addresses of a host
/// given by name, and its counters. Built by cluster::add_host; shared by every thread: what
/// several threads touch is atomic or thread-safe (breaker, outlier state), and each thread uses
/// its own pool.
template <typename Connector>
class host {
public:
  using pool_type = pool::connection_pool<Connector>;

  explicit host(std::string address, std::uint16_t port)
      : address_{std::move(address)}, port_{port}, name_{address_ + ":" + std::to_string(port)} {}
  host(const host&) = delete;
  host& operator=(const host&) = delete;

  /// "address:port", in logs and metric labels.
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const std::string& address() const noexcept { return address_; }
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

  /// May get requests: not taken out by its health check nor ejected (the breaker is asked
  /// separately, since asking it is what moves it from open to half-open).
  [[nodiscard]] bool in_service() const noexcept {
    return healthy.load(std::memory_order_relaxed) && (!outlier || !outlier->ejected());
  }

  /// Asks the breaker for an attempt; a host without one always permits.
  resilience::circuit_breaker::permission permit() {
    return breaker ? breaker->try_acquire() : resilience::circuit_breaker::permission{0, true};
  }

  /// An attempt that was permitted and then not made, or ended for a reason not the host's.
  void ignore(resilience::circuit_breaker::permission p) {
    if (breaker) {
      breaker->on_ignored(p);
    }
  }

  /// How an attempt ended, for its breaker, outlier detection (`detector`, null: off) and
  /// counters. `took`: from the attempt's start. True when this ejected the host.
  bool report(resilience::circuit_breaker::permission p, const resilience::attempt_outcome& outcome,
              clock::duration took, resilience::outlier_detector* detector) {
    if (outcome.is_5xx()) {
      failures.fetch_add(1, std::memory_order_relaxed);
    }
    if (breaker) {
      took = std::max(clock::duration::zero(), took);
      resilience::is_breaker_failure(outcome, breaker_failures) ? breaker->on_failure(p, took)
                                                                : breaker->on_success(p, took);
    }
    if (outlier && detector != nullptr && detector->report(*outlier, outcome)) {
      if (series.ejections != nullptr) {
        series.ejections->Increment();
      }
      return true;
    }
    return false;
  }

  /// The pool of thread `thread` (the client has one thread, a proxy one per worker).
  [[nodiscard]] pool_type& pool(std::size_t thread) noexcept { return *pools[thread]; }

  std::vector<std::shared_ptr<pool_type>> pools;
  std::unique_ptr<resilience::circuit_breaker> breaker; ///< null: breaker off
  resilience::breaker_failures breaker_failures = resilience::breaker_failures::gateway_errors;
  std::shared_ptr<resilience::outlier_host> outlier; ///< null: outlier detection off
  std::atomic<bool> healthy{true};                   ///< the active health check's verdict
  std::atomic<bool> checked{true}; ///< false until a health-checked host's first verdict
  /// A host given by name: its addresses, looked up again from time to time (null for an IP).
  std::shared_ptr<net::address_cache> addresses;
  std::atomic<std::uint64_t> requests{0}; ///< attempts sent on a connection to it
  std::atomic<std::int64_t> active{0};    ///< requests in flight, every thread
  std::atomic<std::uint64_t> failures{0}; ///< 5xx and gateway failures
  host_series series;

private:
  std::string address_;
  std::uint16_t port_;
  std::string name_;
};

} // namespace tether::upstream
