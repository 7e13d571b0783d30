// Fuzzes the resilience rules with arbitrary operation sequences: each input byte picks an
// operation (a call that succeeds, fails or is slow; time passing; a manual transition; a budget
// deposit or withdrawal; a limit taken or given back; an outcome at a host) and the target checks
// the invariants that must hold whatever the order:
//   - window totals are consistent (failed, slow <= calls <= window size);
//   - half-open never admits more trial calls than permitted;
//   - a forced-open breaker admits nothing, a disabled one everything;
//   - a budget never spends what it does not have; a limit never passes its max;
//   - outlier detection never ejects more than its cap.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "tether/core/clock.hpp"
#include "tether/resilience/circuit_breaker.hpp"
#include "tether/resilience/outlier_detector.hpp"
#include "tether/resilience/resource_limit.hpp"
#include "tether/resilience/retry_budget.hpp"

namespace {

using namespace std::chrono_literals;
namespace res = tether::resilience;

void fail(const char* what, int line) {
  std::fprintf(stderr, "resilience_fuzz: invariant broken at line %d: %s\n", line, what);
  std::abort();
}

} // namespace

// A macro so the report names the invariant and its line.
#define check(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fail(#cond, __LINE__);                                                                       \
    }                                                                                              \
  } while (false)

namespace {} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) {
    return 0;
  }
  tether::manual_clock clock;
  res::circuit_breaker_options o;
  o.window_kind = (data[0] & 1U) != 0 ? res::sliding_window_kind::time_based
                                      : res::sliding_window_kind::count_based;
  o.window_size = 1U + data[1] % 16U;
  o.minimum_calls = 1U + data[2] % 16U;
  o.permitted_calls_in_half_open = 1U + data[3] % 4U;
  o.wait_in_open = 1s;
  o.wait_multiplier = (data[0] & 2U) != 0 ? 2.0 : 1.0;
  o.max_wait_in_open = 8s;
  o.slow_call_duration = 100ms;
  o.max_wait_in_half_open = (data[0] & 4U) != 0 ? 3s : 0s;
  res::circuit_breaker breaker{"fuzz", o, clock};

  res::windowed_retry_budget budget{{1s, 1, 0.5}, clock};
  res::resource_limit limit{3};
  std::uint64_t held = 0;
  res::outlier_detection_options oo;
  oo.consecutive_5xx = 2;
  oo.max_ejection_percent = 50;
  res::outlier_detector detector{oo, clock};
  std::vector<std::shared_ptr<res::outlier_host>> hosts;
  for (int i = 0; i < 4; ++i) {
    hosts.push_back(detector.add_host(std::to_string(i)));
  }

  std::vector<res::circuit_breaker::permission> outstanding;
  std::uint32_t admitted_in_half_open = 0;
  for (std::size_t i = 4; i < size; ++i) {
    const std::uint8_t op = data[i];
    const auto before = breaker.state();
    switch (op % 16U) {
    case 0:
    case 1:
    case 2: {
      const auto p = breaker.try_acquire();
      if (before == res::breaker_state::forced_open) {
        check(!p);
      }
      if (before == res::breaker_state::disabled || before == res::breaker_state::closed) {
        check(static_cast<bool>(p));
      }
      if (p && breaker.state() == res::breaker_state::half_open) {
        ++admitted_in_half_open;
        check(admitted_in_half_open <= o.permitted_calls_in_half_open);
      }
      if (p) {
        outstanding.push_back(p);
      }
      break;
    }
    case 3:
    case 4:
    case 5:
      if (!outstanding.empty()) {
        const auto p = outstanding.back();
        outstanding.pop_back();
        const auto took = std::chrono::milliseconds{(op >> 4U) * 20};
        if (op % 16U == 3) {
          breaker.on_failure(p, took);
        } else if (op % 16U == 4) {
          breaker.on_success(p, took);
        } else {
          breaker.on_ignored(p);
          if (breaker.state() == res::breaker_state::half_open && admitted_in_half_open > 0) {
            --admitted_in_half_open;
          }
        }
      }
      break;
    case 6:
      clock.advance(std::chrono::milliseconds{(op >> 4U) * 250});
      break;
    case 7:
      switch (op >> 5U) {
      case 0:
        breaker.transition_to_forced_open();
        break;
      case 1:
        breaker.transition_to_disabled();
        break;
      case 2:
        breaker.transition_to_metrics_only();
        break;
      case 3:
        breaker.transition_to_half_open();
        break;
      default:
        breaker.reset();
        break;
      }
      break;
    case 8:
      budget.on_request();
      break;
    case 9: {
      // At one instant, a withdrawal succeeds exactly when a whole retry remains, and costs one.
      const std::int64_t before = budget.remaining();
      const bool spent = budget.try_withdraw();
      const std::int64_t after = budget.remaining();
      check(before >= 0 && after >= 0);
      check(spent ? after == before - 1 : before == 0 && after == 0);
      break;
    }
    case 10:
      if (limit.try_acquire()) {
        ++held;
      }
      check(held <= 3 && limit.count() == held);
      break;
    case 11:
      if (held > 0) {
        limit.release();
        --held;
      }
      break;
    case 12:
    case 13: {
      const auto& host = hosts[(op >> 4U) % hosts.size()];
      detector.report(*host, res::attempt_outcome::from_status(op % 16U == 12 ? 503 : 200));
      check(detector.ejected_count() <= 2);
      break;
    }
    case 14:
      clock.advance(10s);
      detector.on_interval();
      break;
    default:
      break;
    }
    if (breaker.state() != before) {
      admitted_in_half_open = 0;
      outstanding.clear(); // results from the old state would be dropped anyway
    }
    const auto m = breaker.metrics();
    check(m.window.failed <= m.window.calls && m.window.slow <= m.window.calls);
    if (o.window_kind == res::sliding_window_kind::count_based &&
        m.state != res::breaker_state::half_open) {
      check(m.window.calls <= o.window_size);
    }
  }
  return 0;
}
