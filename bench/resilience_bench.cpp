// Cost of the resilience layer's hot-path decisions, single-threaded and with two threads
// sharing one object (as two workers share a cluster's breaker, budget and limits).
//
//   cmake --build --preset release --target tether_resilience_bench
//   ./build/release/bench/tether_resilience_bench
#include <benchmark/benchmark.h>

#include "tether/core/clock.hpp"
#include "tether/core/random.hpp"
#include "tether/metrics/histogram.hpp"
#include "tether/resilience/backoff.hpp"
#include "tether/resilience/circuit_breaker.hpp"
#include "tether/resilience/outlier_detector.hpp"
#include "tether/resilience/resource_limit.hpp"
#include "tether/resilience/retry_budget.hpp"

namespace {

using namespace std::chrono_literals;
namespace res = tether::resilience;

res::circuit_breaker_options breaker_options(res::sliding_window_kind kind) {
  res::circuit_breaker_options o;
  o.window_kind = kind;
  o.window_size = kind == res::sliding_window_kind::count_based ? 100 : 10;
  return o;
}

// One breaker decision: ask for permission, then record the outcome (1 % failures, so the
// breaker stays closed).
template <res::sliding_window_kind Kind>
void breaker_decision(benchmark::State& state) {
  static res::circuit_breaker* breaker = nullptr;
  if (state.thread_index() == 0) {
    breaker = new res::circuit_breaker{"bench", breaker_options(Kind),
                                       tether::monotonic_clock::instance()};
  }
  std::uint64_t i = 0;
  for (auto _ : state) {
    const auto p = breaker->try_acquire();
    if (++i % 100 == 0) {
      breaker->on_failure(p, 1ms);
    } else {
      breaker->on_success(p, 1ms);
    }
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    state.counters["state_closed"] = breaker->state() == res::breaker_state::closed ? 1 : 0;
    delete breaker;
  }
}
BENCHMARK(breaker_decision<res::sliding_window_kind::count_based>)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(breaker_decision<res::sliding_window_kind::time_based>)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

// An open breaker refusing a call: the fast path that protects a failing backend.
void breaker_reject_open(benchmark::State& state) {
  res::circuit_breaker breaker{"bench", breaker_options(res::sliding_window_kind::count_based),
                               tether::monotonic_clock::instance()};
  breaker.transition_to_open();
  for (auto _ : state) {
    benchmark::DoNotOptimize(breaker.try_acquire());
  }
}
BENCHMARK(breaker_reject_open);

// One request's deposit and one retry's withdrawal from a Finagle budget.
void budget_deposit_withdraw(benchmark::State& state) {
  static res::windowed_retry_budget* budget = nullptr;
  if (state.thread_index() == 0) {
    budget = new res::windowed_retry_budget{{}, tether::monotonic_clock::instance()};
  }
  for (auto _ : state) {
    budget->on_request();
    benchmark::DoNotOptimize(budget->try_withdraw());
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    delete budget;
  }
}
BENCHMARK(budget_deposit_withdraw)->Threads(1)->Threads(2)->UseRealTime();

// gRPC retry throttling: record a result and ask for a retry.
void throttle_result_withdraw(benchmark::State& state) {
  static res::throttling_retry_budget budget{{100, 0.1}};
  std::uint64_t i = 0;
  for (auto _ : state) {
    budget.on_result(++i % 8 != 0);
    benchmark::DoNotOptimize(budget.try_withdraw());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(throttle_result_withdraw)->Threads(1)->Threads(2)->UseRealTime();

template <res::jitter Mode>
void backoff_draw(benchmark::State& state) {
  tether::default_random random{1};
  res::exponential_backoff backoff{{25ms, 2.0, 250ms, Mode}};
  for (auto _ : state) {
    if (backoff.attempts() == 8) {
      backoff.reset();
    }
    benchmark::DoNotOptimize(backoff.next(random));
  }
}
BENCHMARK(backoff_draw<res::jitter::none>);
BENCHMARK(backoff_draw<res::jitter::full>);
BENCHMARK(backoff_draw<res::jitter::equal>);
BENCHMARK(backoff_draw<res::jitter::decorrelated>);

void grpc_backoff_draw(benchmark::State& state) {
  tether::default_random random{1};
  res::grpc_backoff backoff;
  for (auto _ : state) {
    if (backoff.attempts() == 12) {
      backoff.reset();
    }
    benchmark::DoNotOptimize(backoff.next(random));
  }
}
BENCHMARK(grpc_backoff_draw);

// Taking and giving back one unit of a concurrency limit.
void limit_acquire_release(benchmark::State& state) {
  static res::resource_limit limit{1024};
  for (auto _ : state) {
    if (limit.try_acquire()) {
      limit.release();
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(limit_acquire_release)->Threads(1)->Threads(2)->UseRealTime();

// A successful response reported to outlier detection (the common case: no streak to break).
void outlier_report_success(benchmark::State& state) {
  static res::outlier_detector detector{{}, tether::monotonic_clock::instance()};
  static auto host = detector.add_host("bench");
  const auto ok = res::attempt_outcome::from_status(200);
  for (auto _ : state) {
    benchmark::DoNotOptimize(detector.report(*host, ok));
  }
}
BENCHMARK(outlier_report_success)->Threads(1)->Threads(2)->UseRealTime();

// One latency observation into tether's lock-free histogram.
void histogram_observe(benchmark::State& state) {
  static tether::metrics::histogram h{tether::metrics::latency_buckets()};
  double v = 0.0001;
  for (auto _ : state) {
    h.observe(v);
    v = v > 10 ? 0.0001 : v * 1.7;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(histogram_observe)->Threads(1)->Threads(2)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
