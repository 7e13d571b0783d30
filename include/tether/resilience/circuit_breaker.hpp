#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include "tether/core/clock.hpp"
#include "tether/resilience/outcome.hpp"
#include "tether/resilience/sliding_window.hpp"

namespace tether::resilience {

using namespace std::chrono_literals;

/// The states of a circuit breaker (resilience4j's).
enum class breaker_state : std::uint8_t {
  closed,      ///< calls flow; outcomes are recorded and may open the breaker
  open,        ///< calls are refused until the wait in open ends
  half_open,   ///< a few trial calls decide between closed and open
  disabled,    ///< calls flow; nothing is recorded (set by hand)
  forced_open, ///< every call is refused (set by hand)
  metrics_only ///< calls flow and are recorded, but the breaker never opens (set by hand)
};

/// A short lower-case name of the state ("half_open", ...).
[[nodiscard]] std::string_view to_string(breaker_state state) noexcept;

/// Every breaker state, for code that keeps one gauge per state.
inline constexpr breaker_state all_breaker_states[] = {
    breaker_state::closed,   breaker_state::open,        breaker_state::half_open,
    breaker_state::disabled, breaker_state::forced_open, breaker_state::metrics_only};

/// Which calls the failure and slow-call rates are computed over.
enum class sliding_window_kind : std::uint8_t {
  count_based, ///< the last window_size calls
  time_based   ///< the calls of the last window_size seconds
};

/// Settings of a circuit_breaker. Defaults are resilience4j's.
struct circuit_breaker_options {
  float failure_rate_threshold = 50.0F;    ///< percent; at or above it, the breaker opens
  float slow_call_rate_threshold = 100.0F; ///< percent of calls at least slow_call_duration long
  clock::duration slow_call_duration = 60s;
  sliding_window_kind window_kind = sliding_window_kind::count_based;
  std::uint32_t window_size = 100;       ///< calls, or seconds for a time-based window
  std::uint32_t minimum_calls = 100;     ///< calls needed before rates are judged
  clock::duration wait_in_open = 60s;    ///< first wait in open
  double wait_multiplier = 1.0;          ///< > 1: each reopening waits this much longer
  clock::duration max_wait_in_open = 0s; ///< cap on the growing wait; 0: no cap
  std::uint32_t permitted_calls_in_half_open = 10;
  clock::duration max_wait_in_half_open = 0s; ///< > 0: reopen if trials take longer; 0: wait
  /// What the breaker's callers record as a failure (see is_breaker_failure).
  breaker_failures failures = breaker_failures::gateway_errors;

  /// Throws std::invalid_argument naming the field when a value is out of range.
  void validate() const;
};

/// Rates and counts of a breaker, for metrics and /clusters.
struct breaker_metrics {
  breaker_state state = breaker_state::closed;
  window_totals window{};          ///< the current window (the trial calls, in half-open)
  std::uint64_t not_permitted = 0; ///< calls refused since construction or reset()
};

/// A circuit breaker with resilience4j's semantics. Thread-safe: several workers may share one.
///
/// A call asks `try_acquire()`; if permitted, it reports exactly one of `on_success`,
/// `on_failure` or `on_ignored` with the permission it got. A permission carries the breaker's
/// generation: results of calls that began before a state change are not counted by the new
/// state (so a call begun while closed cannot take a trial slot in half-open).
class circuit_breaker {
public:
  /// What try_acquire answers.
  struct permission {
    std::uint32_t generation = 0;
    bool permitted = false;
    explicit operator bool() const noexcept { return permitted; }
  };

  /// Called after each state change, outside the breaker's lock, on whichever thread caused it.
  using listener =
      std::function<void(const circuit_breaker&, breaker_state from, breaker_state to)>;

  circuit_breaker(std::string name, const circuit_breaker_options& options, const clock& clock);
  circuit_breaker(const circuit_breaker&) = delete;
  circuit_breaker& operator=(const circuit_breaker&) = delete;
  ~circuit_breaker() = default;

  /// Asks to make a call. In closed, disabled and metrics_only this is one atomic load.
  [[nodiscard]] permission try_acquire() noexcept;

  /// The call succeeded after `elapsed`.
  void on_success(permission p, clock::duration elapsed) noexcept { record(p, false, elapsed); }
  /// The call failed after `elapsed`.
  void on_failure(permission p, clock::duration elapsed) noexcept { record(p, true, elapsed); }
  /// The call was not made, or its outcome must not count; a half-open trial slot is returned.
  void on_ignored(permission p) noexcept;

  /// Sets the state-change listener. Set it before the breaker is shared between threads.
  void set_listener(listener l) { listener_ = std::move(l); }

  [[nodiscard]] breaker_state state() const noexcept;
  [[nodiscard]] breaker_metrics metrics() const;
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const circuit_breaker_options& options() const noexcept { return options_; }

  /// Manual transitions, as resilience4j's transitionTo*State(). Asking for the current state
  /// changes nothing.
  void transition_to_closed();
  void transition_to_open();
  void transition_to_half_open();
  void transition_to_disabled();
  void transition_to_forced_open();
  void transition_to_metrics_only();
  /// Back to closed with empty windows and no memory of past openings.
  void reset();

private:
  struct pending_change {
    breaker_state from;
    breaker_state to;
    bool happened = false;
  };

  void record(permission p, bool failed, clock::duration elapsed) noexcept;
  // Moves to `to`; needs mutex_. Returns what to tell the listener once the lock is released.
  pending_change transition_locked(breaker_state to, clock::time_point now) noexcept;
  void notify(const pending_change& change) const;
  void manual_transition(breaker_state to);
  [[nodiscard]] bool thresholds_exceeded(const window_totals& totals) const noexcept;
  [[nodiscard]] clock::duration wait_for_opening(std::uint32_t opening) const noexcept;

  static std::uint64_t pack(std::uint32_t generation, breaker_state state) noexcept {
    return (std::uint64_t{generation} << 8U) | static_cast<std::uint8_t>(state);
  }
  static breaker_state state_of(std::uint64_t word) noexcept {
    return static_cast<breaker_state>(word & 0xFFU);
  }
  static std::uint32_t generation_of(std::uint64_t word) noexcept {
    return static_cast<std::uint32_t>(word >> 8U);
  }

  std::string name_;
  circuit_breaker_options options_;
  const clock& clock_;
  listener listener_;

  // Read without the lock on every try_acquire; written under mutex_.
  std::atomic<std::uint64_t> state_word_;
  std::atomic<clock::duration::rep> open_until_{0}; // open: when trials may start
  std::atomic<clock::duration::rep> half_open_since_{0};
  // half_open: (generation << 32) | trial calls left to hand out in that generation.
  std::atomic<std::uint64_t> trial_permits_{0};
  std::atomic<std::uint64_t> not_permitted_{0};

  mutable std::mutex mutex_;
  count_window count_window_;
  mutable time_window time_window_; // reading it drops expired buckets: no logical change
  window_totals trials_{};          // half_open: outcomes of the trial calls
  std::uint32_t openings_ = 0;      // consecutive openings, for the growing wait
};

} // namespace tether::resilience
