#include "tether/core/clock.hpp"

namespace tether {

monotonic_clock& monotonic_clock::instance() noexcept {
  static monotonic_clock clock;
  return clock;
}

} // namespace tether
