// Calling a flaky dependency with tether's resilience layer, from plain synchronous code:
// a retry policy with jittered backoff, a retry budget, and a circuit breaker shared by callers.
//
// The "dependency" fails its first two calls out of every five. Run it and watch each request
// retry past the failures while the budget and breaker stand guard.
#include <cstdio>
#include <thread>

#include "tether/core/clock.hpp"
#include "tether/core/random.hpp"
#include "tether/resilience/circuit_breaker.hpp"
#include "tether/resilience/retry_budget.hpp"
#include "tether/resilience/retry_policy.hpp"

using namespace std::chrono_literals;
namespace res = tether::resilience;

namespace {

int calls = 0;

// Stands in for an HTTP call: 503 for the first two of every five calls.
int call_dependency() {
  return (calls++ % 5) < 2 ? 503 : 200;
}

} // namespace

int main() {
  auto& clock = tether::monotonic_clock::instance();
  tether::default_random random{tether::default_random::entropy_seed()};

  res::retry_policy policy;
  policy.max_attempts = 4;
  policy.conditions = res::retry_on::gateway_error;
  policy.backoff = {1ms, 2.0, 10ms, res::jitter::full};

  res::windowed_retry_budget budget{{}, clock};
  res::circuit_breaker_options breaker_options;
  breaker_options.minimum_calls = 20;
  res::circuit_breaker breaker{"dependency", breaker_options, clock};

  int succeeded = 0;
  for (int request = 0; request < 10; ++request) {
    res::retry_state state{policy, {"GET"}, clock.now(), &budget};
    for (;;) {
      const auto permission = breaker.try_acquire();
      if (!permission) {
        std::printf("request %d: failed fast, breaker %s\n", request,
                    res::to_string(breaker.state()).data());
        break;
      }
      const auto started = clock.now();
      const int status = call_dependency();
      const auto took = clock.now() - started;
      status < 500 ? breaker.on_success(permission, took) : breaker.on_failure(permission, took);

      const auto decision =
          state.decide(res::attempt_outcome::from_status(status), clock.now(), random);
      if (decision.retry) {
        std::this_thread::sleep_for(
            decision.delay); // a synchronous caller may block; a worker may not
        continue;
      }
      if (status < 500) {
        ++succeeded;
      }
      std::printf("request %d: %d after %u attempt(s) (%s)\n", request, status, state.attempts(),
                  res::to_string(decision.reason).data());
      break;
    }
  }
  std::printf("%d of 10 requests succeeded; breaker %s; budget has %lld retries left\n", succeeded,
              res::to_string(breaker.state()).data(), static_cast<long long>(budget.remaining()));
  return succeeded == 10 ? 0 : 1;
}
