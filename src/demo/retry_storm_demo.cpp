#include "tether/demo/retry_storm_demo.hpp"

#include <cstdio>
#include <memory>
#include <ostream>
#include <queue>

#include "tether/core/clock.hpp"
#include "tether/core/random.hpp"
#include "tether/metrics/registry.hpp"
#include "tether/metrics/resilience_metrics.hpp"
#include "tether/resilience/backoff.hpp"
#include "tether/resilience/circuit_breaker.hpp"
#include "tether/resilience/retry_budget.hpp"
#include "tether/resilience/retry_policy.hpp"

namespace tether::demo {
namespace {

using namespace std::chrono_literals;
using resilience::attempt_outcome;

constexpr clock::duration run_length = 30s;
constexpr clock::duration arrival_gap = 10ms;
constexpr clock::duration fault_start = 10s;
constexpr clock::duration fault_end = 20s;

struct pending_attempt {
  clock::time_point at;
  std::size_t request;
  bool operator>(const pending_attempt& other) const noexcept { return at > other.at; }
};

std::string seconds(clock::duration d) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3fs", std::chrono::duration<double>(d).count());
  return buffer;
}

resilience::retry_policy policy_for(gateway_mode mode) {
  resilience::retry_policy policy;
  policy.max_attempts = 4; // the first try and 3 retries, in both modes
  policy.conditions = resilience::retry_on::gateway_error;
  policy.overall_timeout = 5s;
  if (mode == gateway_mode::naive) {
    // "No backoff": the smallest delay the policy allows, with no randomness.
    policy.backoff = {1ns, 1.0, 1ns, resilience::jitter::none};
  }
  return policy;
}

struct simulation {
  simulation(gateway_mode gateway, std::uint64_t seed)
      : mode{gateway}, random{seed}, policy{policy_for(gateway)}, breaker{"backend",
                                                                          breaker_options(), clock},
        budget{resilience::windowed_retry_budget_options{}, clock} {
    report.mode = gateway;
    if (gateway == gateway_mode::naive) {
      breaker.transition_to_disabled();
    }
    breaker.set_listener([this](const resilience::circuit_breaker&, resilience::breaker_state from,
                                resilience::breaker_state to) {
      report.breaker_changes.push_back(seconds(clock.now() - start) + " " +
                                       std::string{resilience::to_string(from)} + " -> " +
                                       std::string{resilience::to_string(to)});
    });
  }

  static resilience::circuit_breaker_options breaker_options() {
    resilience::circuit_breaker_options o;
    o.window_size = 20;
    o.minimum_calls = 10;
    o.wait_in_open = 2s;
    o.permitted_calls_in_half_open = 3;
    return o;
  }

  [[nodiscard]] bool in_fault(clock::time_point t) const noexcept {
    return t - start >= fault_start && t - start < fault_end;
  }

  void run() {
    std::priority_queue<pending_attempt, std::vector<pending_attempt>, std::greater<>> queue;
    for (clock::duration t{}; t < run_length; t += arrival_gap) {
      queue.push({start + t, requests.size()});
      requests.emplace_back(nullptr);
    }
    while (!queue.empty()) {
      const pending_attempt next = queue.top();
      queue.pop();
      clock.advance(next.at - clock.now());
      auto& state = requests[next.request];
      if (!state) {
        ++report.requests;
        report.fault_requests += in_fault(next.at) ? 1U : 0U;
        state = std::make_unique<resilience::retry_state>(
            policy, resilience::request_traits{"GET"}, clock.now(),
            mode == gateway_mode::tether ? &budget : nullptr);
      }
      const auto permission = breaker.try_acquire();
      if (!permission) {
        ++report.rejected_by_breaker; // failed fast: the backend never saw it
        state.reset();
        continue;
      }
      ++report.backend_attempts;
      report.fault_backend_attempts += in_fault(next.at) ? 1U : 0U;
      const bool failed = in_fault(next.at);
      const attempt_outcome outcome =
          failed ? attempt_outcome::from_status(503) : attempt_outcome{};
      if (failed) {
        breaker.on_failure(permission, 1ms);
      } else {
        breaker.on_success(permission, 1ms);
      }
      const auto decision = state->decide(outcome, clock.now(), random);
      if (!failed) {
        ++report.succeeded;
        state.reset();
      } else if (decision.retry) {
        queue.push({clock.now() + decision.delay, next.request});
      } else {
        report.refused_by_budget +=
            decision.reason == resilience::give_up_reason::budget_exhausted ? 1U : 0U;
        state.reset();
      }
    }
  }

  gateway_mode mode;
  manual_clock clock;
  clock::time_point start = clock.now();
  default_random random;
  resilience::retry_policy policy;
  resilience::circuit_breaker breaker;
  resilience::windowed_retry_budget budget;
  std::vector<std::unique_ptr<resilience::retry_state>> requests;
  storm_report report;
};

const char* name_of(gateway_mode mode) {
  return mode == gateway_mode::naive ? "naive" : "tether";
}

} // namespace

storm_report simulate_retry_storm(gateway_mode mode, std::uint64_t seed) {
  simulation sim{mode, seed};
  sim.run();
  return sim.report;
}

void run_resilience_demo(std::ostream& out, std::uint64_t seed, bool metrics) {
  out << "tether resilience demo (seed " << seed << ")\n"
      << "A client sends a request every 10 ms for 30 s through a gateway to one backend,\n"
      << "which answers 503 to everything from t=10s to t=20s. Time is simulated.\n\n";

  for (const auto mode : {gateway_mode::naive, gateway_mode::tether}) {
    const storm_report r = simulate_retry_storm(mode, seed);
    char line[256];
    std::snprintf(line, sizeof line,
                  "%-7s requests %llu, succeeded %llu, backend attempts %llu\n"
                  "        during the fault: %.2f backend attempts per request, breaker "
                  "refused %llu, budget refused %llu\n",
                  name_of(mode), static_cast<unsigned long long>(r.requests),
                  static_cast<unsigned long long>(r.succeeded),
                  static_cast<unsigned long long>(r.backend_attempts), r.fault_amplification(),
                  static_cast<unsigned long long>(r.rejected_by_breaker),
                  static_cast<unsigned long long>(r.refused_by_budget));
    out << line;
    for (const auto& change : r.breaker_changes) {
      out << "        breaker " << change << '\n';
    }
  }

  out << "\nBackoff draws (Envoy defaults: base 25ms, cap 250ms) and gRPC connection backoff:\n";
  default_random random{seed};
  for (const auto mode : {resilience::jitter::none, resilience::jitter::full,
                          resilience::jitter::equal, resilience::jitter::decorrelated}) {
    resilience::exponential_backoff backoff{{25ms, 2.0, 250ms, mode}};
    static constexpr const char* names[] = {"none", "full", "equal", "decorrelated"};
    out << "  " << names[static_cast<int>(mode)] << ":";
    for (int i = 0; i < 6; ++i) {
      out << ' ' << seconds(backoff.next(random));
    }
    out << '\n';
  }
  resilience::grpc_backoff grpc;
  out << "  grpc:";
  for (int i = 0; i < 6; ++i) {
    out << ' ' << seconds(grpc.next(random));
  }
  out << '\n';

  if (metrics) {
    simulation sim{gateway_mode::tether, seed};
    sim.run();
    metrics::registry registry;
    metrics::resilience_series series;
    series.watch(registry, sim.breaker, {{"cluster", "backend"}});
    series.watch(registry, sim.budget, {{"cluster", "backend"}});
    auto& requests = registry.counter("tether_demo_requests_total", "Client requests simulated");
    requests.Add({{"result", "succeeded"}}).Increment(static_cast<double>(sim.report.succeeded));
    requests.Add({{"result", "failed"}})
        .Increment(static_cast<double>(sim.report.requests - sim.report.succeeded));
    out << "\n" << registry.expose();
  }
}

} // namespace tether::demo
