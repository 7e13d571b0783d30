#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tether/core/clock.hpp"
#include "tether/resilience/outcome.hpp"

namespace tether::resilience {

using namespace std::chrono_literals;

/// Settings of an outlier_detector. Defaults are Envoy's, with gateway failures enforced.
struct outlier_detection_options {
  std::uint32_t consecutive_5xx = 5;             ///< 0: do not eject for 5xx
  std::uint32_t consecutive_gateway_failure = 5; ///< 0: do not eject for gateway failures
  clock::duration interval = 10s;                ///< how often on_interval() should run
  clock::duration base_ejection_time = 30s;      ///< times the number of ejections
  clock::duration max_ejection_time = 300s;
  double max_ejection_percent = 10.0; ///< at least one host may always be ejected

  /// Throws std::invalid_argument naming the field when a value is out of range.
  void validate() const;
};

/// One upstream host as the detector sees it. Callers keep the handle add_host() gave and read
/// `ejected()` on their hot path (one atomic load).
class outlier_host {
public:
  explicit outlier_host(std::string address) : address_{std::move(address)} {}

  [[nodiscard]] bool ejected() const noexcept { return ejected_.load(std::memory_order_acquire); }
  [[nodiscard]] const std::string& address() const noexcept { return address_; }
  /// The ejection-time multiplier: ejections not yet forgiven by healthy intervals.
  [[nodiscard]] std::uint32_t ejection_multiplier() const noexcept {
    return multiplier_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t times_ejected() const noexcept {
    return times_ejected_.load(std::memory_order_relaxed);
  }

private:
  friend class outlier_detector;

  std::string address_;
  std::atomic<bool> ejected_{false};
  std::atomic<std::uint32_t> consecutive_5xx_{0};
  std::atomic<std::uint32_t> consecutive_gateway_{0};
  std::atomic<std::uint32_t> multiplier_{0};
  std::atomic<std::uint64_t> times_ejected_{0};
  // Guarded by the detector's mutex.
  clock::time_point ejected_at_{};
  clock::time_point unejected_at_{};
  bool removed_ = false;
};

/// Envoy's outlier detection over a cluster's hosts: a host is ejected after N consecutive 5xx
/// or gateway failures, for base_ejection_time times its multiplier (capped at
/// max_ejection_time); on_interval() brings back hosts whose time is up and lowers the multiplier
/// of hosts that stayed healthy. Never more than max_ejection_percent of hosts are out at once,
/// except that one host may always be ejected.
///
/// Thread-safe: workers report concurrently; the counting is lock-free and only an ejection
/// takes the detector's lock.
class outlier_detector {
public:
  /// Called on ejection (`ejected` true) and return (`false`), outside the detector's lock.
  using listener = std::function<void(const outlier_host&, bool ejected)>;

  outlier_detector(const outlier_detection_options& options, const clock& clock);

  /// Starts watching a host.
  std::shared_ptr<outlier_host> add_host(std::string address);
  /// Stops watching a host (it left the cluster).
  void remove_host(const std::shared_ptr<outlier_host>& host);

  /// Records an attempt's outcome at `host`. Returns true if this report ejected it.
  bool report(outlier_host& host, const attempt_outcome& outcome);

  /// The periodic sweep, every `interval`. Returns the hosts brought back.
  std::vector<std::shared_ptr<outlier_host>> on_interval();

  /// An active health check of `host` passed: an ejected host comes back now rather than at the
  /// end of its ejection time (Envoy's successful_active_health_check_uneject_host). Its
  /// multiplier stays, so a host that fails again is ejected for longer. Returns whether it was
  /// ejected.
  bool on_health_check_passed(outlier_host& host);

  /// Sets the listener. Set it before the detector is shared between threads.
  void set_listener(listener l) { listener_ = std::move(l); }

  [[nodiscard]] std::size_t host_count() const;
  [[nodiscard]] std::size_t ejected_count() const;
  [[nodiscard]] const outlier_detection_options& options() const noexcept { return options_; }

  /// How long an ejection lasts for a host whose multiplier is `multiplier`.
  [[nodiscard]] clock::duration ejection_time(std::uint32_t multiplier) const noexcept;

private:
  bool try_eject(outlier_host& host);

  outlier_detection_options options_;
  const clock& clock_;
  listener listener_;

  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<outlier_host>> hosts_;
  std::size_t ejected_ = 0;
};

} // namespace tether::resilience
