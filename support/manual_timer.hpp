#pragma once

#include <chrono>

#include <asio/basic_waitable_timer.hpp>
#include <asio/io_context.hpp>

#include "tether/core/clock.hpp"

namespace tether::testing {

/// An Asio clock that reads a tether::manual_clock, so Asio timers in tests expire when the test
/// advances time rather than when real time passes. Set `source` before use (one per test).
struct manual_asio_clock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<manual_asio_clock>;
  static constexpr bool is_steady = true;

  static time_point now() noexcept { return time_point{source->now().time_since_epoch()}; }

  static inline manual_clock* source = nullptr;
};

/// Wait traits for manual_asio_clock: a pending timer makes the reactor look again every
/// millisecond of real time, so a timer is noticed promptly after the test advances the clock.
struct manual_wait_traits {
  static manual_asio_clock::duration to_wait_duration(const manual_asio_clock::duration& d) {
    return d > manual_asio_clock::duration::zero() ? std::chrono::milliseconds{1}
                                                   : manual_asio_clock::duration::zero();
  }
  static manual_asio_clock::duration to_wait_duration(const manual_asio_clock::time_point& t) {
    return to_wait_duration(t - manual_asio_clock::now());
  }
};

template <class Executor = asio::io_context::executor_type>
using manual_timer = asio::basic_waitable_timer<manual_asio_clock, manual_wait_traits, Executor>;

/// Runs `io` until `done()` holds, for at most `bound` of real time. True if it held.
template <class Predicate>
bool run_until(asio::io_context& io, Predicate done,
               std::chrono::milliseconds bound = std::chrono::milliseconds{5000}) {
  const auto give_up = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= give_up) {
      return false;
    }
    io.restart();
    io.run_for(std::chrono::milliseconds{1});
  }
  return true;
}

} // namespace tether::testing
