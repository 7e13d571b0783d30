// Property tests: random operation sequences run against tether's resilience rules and against
// small reference models written for clarity, not speed. Any disagreement fails with the seed and
// step so the sequence can be replayed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <random>

#include "tether/resilience/circuit_breaker.hpp"
#include "tether/resilience/outlier_detector.hpp"
#include "tether/resilience/retry_budget.hpp"

namespace tether::resilience {
namespace {

// resilience4j's breaker with naive storage: every call in the window kept in a deque.
struct reference_breaker {
  explicit reference_breaker(const circuit_breaker_options& options) : o{options} {}

  circuit_breaker_options o;
  breaker_state state = breaker_state::closed;
  std::deque<std::tuple<std::int64_t, bool, bool>> calls; // (second, failed, slow)
  clock::time_point open_until{};
  std::uint32_t openings = 0;
  std::uint32_t trials_left = 0;
  std::uint32_t trial_calls = 0, trial_failed = 0, trial_slow = 0;

  [[nodiscard]] bool exceeded(std::uint32_t n, std::uint32_t failed, std::uint32_t slow) const {
    const float fr = static_cast<float>(failed) * 100.0F / static_cast<float>(n);
    const float sr = static_cast<float>(slow) * 100.0F / static_cast<float>(n);
    return fr >= o.failure_rate_threshold || sr >= o.slow_call_rate_threshold;
  }

  void open(clock::time_point now, std::uint32_t opening) {
    openings = opening;
    double wait = static_cast<double>(o.wait_in_open.count()) *
                  std::pow(o.wait_multiplier, static_cast<double>(opening - 1));
    if (o.max_wait_in_open > clock::duration::zero()) {
      wait = std::min(wait, static_cast<double>(o.max_wait_in_open.count()));
    }
    open_until = now + clock::duration{static_cast<clock::duration::rep>(wait)};
    state = breaker_state::open;
  }

  void drop_old(clock::time_point now) {
    if (o.window_kind == sliding_window_kind::count_based) {
      while (calls.size() > o.window_size) {
        calls.pop_front();
      }
    } else {
      const auto second =
          std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
      while (!calls.empty() && std::get<0>(calls.front()) <= second - o.window_size) {
        calls.pop_front();
      }
    }
  }

  bool acquire(clock::time_point now) {
    if (state == breaker_state::open) {
      if (now < open_until) {
        return false;
      }
      state = breaker_state::half_open;
      trials_left = o.permitted_calls_in_half_open;
      trial_calls = trial_failed = trial_slow = 0;
    }
    if (state == breaker_state::half_open) {
      if (trials_left == 0) {
        return false;
      }
      --trials_left;
    }
    return true;
  }

  void record(clock::time_point now, bool failed, bool slow) {
    if (state == breaker_state::closed) {
      const auto second =
          std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
      calls.emplace_back(second, failed, slow);
      drop_old(now);
      const auto n = static_cast<std::uint32_t>(calls.size());
      const std::uint32_t minimum = o.window_kind == sliding_window_kind::count_based
                                        ? std::min(o.minimum_calls, o.window_size)
                                        : o.minimum_calls;
      if (n >= minimum) {
        std::uint32_t f = 0, s = 0;
        for (const auto& [sec, cf, cs] : calls) {
          f += cf ? 1U : 0U;
          s += cs ? 1U : 0U;
        }
        if (exceeded(n, f, s)) {
          open(now, 1);
        }
      }
    } else if (state == breaker_state::half_open) {
      ++trial_calls;
      trial_failed += failed ? 1U : 0U;
      trial_slow += slow ? 1U : 0U;
      if (trial_calls >= o.permitted_calls_in_half_open) {
        if (exceeded(trial_calls, trial_failed, trial_slow)) {
          open(now, openings + 1);
        } else {
          state = breaker_state::closed;
          calls.clear();
          openings = 0;
        }
      }
    }
  }
};

void run_breaker_property(sliding_window_kind kind, std::uint64_t seed) {
  std::mt19937_64 rng{seed};
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>{lo, hi}(rng); };

  circuit_breaker_options o;
  o.window_kind = kind;
  o.window_size = static_cast<std::uint32_t>(pick(1, 12));
  o.minimum_calls = static_cast<std::uint32_t>(pick(1, 15));
  o.failure_rate_threshold = static_cast<float>(pick(1, 100));
  o.slow_call_rate_threshold = static_cast<float>(pick(1, 100));
  o.slow_call_duration = std::chrono::milliseconds{pick(1, 500)};
  o.permitted_calls_in_half_open = static_cast<std::uint32_t>(pick(1, 5));
  o.wait_in_open = std::chrono::milliseconds{pick(100, 3000)};
  o.wait_multiplier = pick(0, 1) == 0 ? 1.0 : 1.5;
  o.max_wait_in_open = pick(0, 1) == 0 ? clock::duration::zero() : o.wait_in_open * 4;

  manual_clock clock;
  circuit_breaker breaker{"p", o, clock};
  reference_breaker model{o};
  int failure_percent = pick(0, 100);

  for (int step = 0; step < 3000; ++step) {
    const int op = pick(0, 99);
    if (op < 15) {
      clock.advance(std::chrono::milliseconds{pick(0, 1500)});
    } else if (op < 17) {
      failure_percent = pick(0, 100); // a new phase: healthy, degraded or down
    } else {
      const auto permission = breaker.try_acquire();
      const bool expected = model.acquire(clock.now());
      ASSERT_EQ(static_cast<bool>(permission), expected) << "seed " << seed << " step " << step;
      if (permission) {
        const bool failed = pick(0, 99) < failure_percent;
        const auto took = std::chrono::milliseconds{pick(0, 600)};
        const bool slow = took >= o.slow_call_duration;
        if (failed) {
          breaker.on_failure(permission, took);
        } else {
          breaker.on_success(permission, took);
        }
        model.record(clock.now(), failed, slow);
      }
    }
    ASSERT_EQ(breaker.state(), model.state) << "seed " << seed << " step " << step;
  }
}

TEST(breaker_property, count_window_agrees_with_the_reference_model) {
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    run_breaker_property(sliding_window_kind::count_based, seed);
    if (HasFatalFailure()) {
      return;
    }
  }
}

TEST(breaker_property, time_window_agrees_with_the_reference_model) {
  for (std::uint64_t seed = 1000; seed < 1200; ++seed) {
    run_breaker_property(sliding_window_kind::time_based, seed);
    if (HasFatalFailure()) {
      return;
    }
  }
}

// Finagle's budget with naive storage: every deposit and withdrawal kept with its slice number.
TEST(budget_property, windowed_budget_agrees_with_the_reference_model) {
  for (std::uint64_t seed = 0; seed < 100; ++seed) {
    std::mt19937_64 rng{seed};
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>{lo, hi}(rng); };
    const windowed_retry_budget_options o{std::chrono::seconds{pick(1, 20)},
                                          static_cast<std::uint32_t>(pick(0, 5)),
                                          pick(0, 3) == 0 ? 0.0 : pick(1, 100) / 100.0};
    manual_clock clock;
    windowed_retry_budget budget{o, clock};
    const clock::duration slice = o.ttl / 10;
    const std::int64_t deposit = o.percent_can_retry == 0.0 ? 0 : 1000;
    const std::int64_t withdrawal =
        o.percent_can_retry == 0.0 ? 1 : static_cast<std::int64_t>(1000.0 / o.percent_can_retry);
    const std::int64_t reserve = static_cast<std::int64_t>(o.min_retries_per_sec) *
                                 std::chrono::duration_cast<std::chrono::seconds>(o.ttl).count() *
                                 withdrawal;
    std::vector<std::pair<std::int64_t, std::int64_t>> entries; // (slice number, units)
    auto balance = [&] {
      const std::int64_t now_slice = clock.now().time_since_epoch() / slice;
      std::int64_t sum = reserve;
      for (const auto& [at, units] : entries) {
        if (at > now_slice - 10) {
          sum += units;
        }
      }
      return sum;
    };
    for (int step = 0; step < 2000; ++step) {
      const int op = pick(0, 9);
      const std::int64_t now_slice = clock.now().time_since_epoch() / slice;
      if (op < 2) {
        clock.advance(std::chrono::milliseconds{pick(0, 3000)});
      } else if (op < 6) {
        budget.on_request();
        entries.emplace_back(now_slice, deposit);
      } else {
        const bool expected = balance() >= withdrawal;
        ASSERT_EQ(budget.try_withdraw(), expected) << "seed " << seed << " step " << step;
        if (expected) {
          entries.emplace_back(now_slice, -withdrawal);
        }
      }
      ASSERT_EQ(budget.remaining(), std::max<std::int64_t>(0, balance() / withdrawal))
          << "seed " << seed << " step " << step;
    }
  }
}

TEST(budget_property, throttling_budget_agrees_with_the_reference_model) {
  for (std::uint64_t seed = 0; seed < 100; ++seed) {
    std::mt19937_64 rng{seed};
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>{lo, hi}(rng); };
    const throttling_retry_budget_options o{static_cast<std::uint32_t>(pick(1, 50)),
                                            pick(1, 1000) / 1000.0};
    throttling_retry_budget budget{o};
    double tokens = o.max_tokens;
    for (int step = 0; step < 2000; ++step) {
      if (pick(0, 1) == 0) {
        budget.on_result(true);
        tokens = std::min<double>(o.max_tokens, tokens + o.token_ratio);
      } else {
        budget.on_result(false);
        tokens = std::max(0.0, tokens - 1.0);
      }
      ASSERT_NEAR(budget.tokens(), tokens, 1e-6) << "seed " << seed << " step " << step;
      ASSERT_EQ(budget.try_withdraw(), tokens > o.max_tokens / 2.0 + 1e-9)
          << "seed " << seed << " step " << step;
    }
  }
}

// Envoy's consecutive-failure ejection with naive per-host streaks.
TEST(outlier_property, detector_agrees_with_the_reference_model) {
  for (std::uint64_t seed = 0; seed < 100; ++seed) {
    std::mt19937_64 rng{seed};
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>{lo, hi}(rng); };
    outlier_detection_options o;
    o.consecutive_5xx = static_cast<std::uint32_t>(pick(0, 6));
    o.consecutive_gateway_failure = static_cast<std::uint32_t>(pick(0, 6));
    o.max_ejection_percent = pick(0, 100);
    o.base_ejection_time = std::chrono::seconds{pick(1, 30)};
    o.max_ejection_time = std::chrono::seconds{pick(0, 120)};
    manual_clock clock;
    outlier_detector detector{o, clock};
    const int n = pick(1, 8);
    struct model_host {
      std::uint32_t s5xx = 0, gateway = 0, multiplier = 0;
      bool ejected = false;
      clock::time_point ejected_at{}, unejected_at{};
    };
    std::vector<std::shared_ptr<outlier_host>> hosts;
    std::vector<model_host> model(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      hosts.push_back(detector.add_host(std::to_string(i)));
    }
    const auto cap = std::max(o.base_ejection_time, o.max_ejection_time);
    for (int step = 0; step < 3000; ++step) {
      const int op = pick(0, 19);
      if (op == 0) {
        clock.advance(std::chrono::seconds{pick(1, 40)});
        detector.on_interval();
        for (auto& m : model) {
          if (m.ejected) {
            if (clock.now() - m.ejected_at >= std::min(cap, o.base_ejection_time * m.multiplier)) {
              m.ejected = false;
              m.unejected_at = clock.now();
            }
          } else if (m.multiplier > 0 && clock.now() - m.unejected_at >= o.interval) {
            --m.multiplier;
            m.unejected_at += o.interval;
          }
        }
        continue;
      }
      const auto i = static_cast<std::size_t>(pick(0, n - 1));
      static const int statuses[] = {200, 404, 500, 502, 503, 504};
      const int kind = pick(0, 8);
      const attempt_outcome outcome =
          kind < 6 ? attempt_outcome::from_status(statuses[kind])
                   : attempt_outcome{kind == 6 ? attempt_result::refused : attempt_result::reset};
      const bool ejected_now = detector.report(*hosts[i], outcome);
      auto& m = model[i];
      bool expect_eject = false;
      if (!m.ejected) {
        m.s5xx = outcome.is_5xx() ? m.s5xx + 1 : 0;
        m.gateway = outcome.is_gateway_error() ? m.gateway + 1 : 0;
        const bool trip =
            (o.consecutive_5xx != 0 && m.s5xx >= o.consecutive_5xx) ||
            (o.consecutive_gateway_failure != 0 && m.gateway >= o.consecutive_gateway_failure);
        if (trip) {
          const auto out =
              std::count_if(model.begin(), model.end(), [](auto& x) { return x.ejected; });
          if (out == 0 || static_cast<double>(out + 1) * 100.0 <= o.max_ejection_percent * n) {
            expect_eject = true;
            m.ejected = true;
            m.s5xx = m.gateway = 0;
            ++m.multiplier;
            m.ejected_at = clock.now();
          }
        }
      }
      ASSERT_EQ(ejected_now, expect_eject) << "seed " << seed << " step " << step;
      for (std::size_t h = 0; h < model.size(); ++h) {
        ASSERT_EQ(hosts[h]->ejected(), model[h].ejected) << "seed " << seed << " step " << step;
        ASSERT_EQ(hosts[h]->ejection_multiplier(), model[h].multiplier)
            << "seed " << seed << " step " << step;
      }
    }
  }
}

} // namespace
} // namespace tether::resilience
