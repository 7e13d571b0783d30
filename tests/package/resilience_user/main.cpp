// A circuit breaker from the installed package, opened by failures on a manual clock.
#include <chrono>
#include <cstdio>

#include "tether/resilience/circuit_breaker.hpp"

int main() {
  using namespace std::chrono_literals;
  tether::manual_clock clock;
  tether::resilience::circuit_breaker_options options;
  options.window_size = 4;
  options.minimum_calls = 4;
  tether::resilience::circuit_breaker breaker{"installed", options, clock};
  for (int i = 0; i < 4; ++i) {
    const auto permission = breaker.try_acquire();
    breaker.on_failure(permission, 1ms);
  }
  const auto state = tether::resilience::to_string(breaker.state());
  std::printf("breaker %.*s\n", static_cast<int>(state.size()), state.data());
  return state == "open" ? 0 : 1;
}
