#include "tether/core/clock.hpp"

#include <time.h>

namespace tether {

monotonic_clock& monotonic_clock::instance() noexcept {
  static monotonic_clock clock;
  return clock;
}

clock::time_point coarse_monotonic_clock::now() const noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return time_point{std::chrono::seconds{ts.tv_sec} + std::chrono::nanoseconds{ts.tv_nsec}};
}

coarse_monotonic_clock& coarse_monotonic_clock::instance() noexcept {
  static coarse_monotonic_clock clock;
  return clock;
}

} // namespace tether
