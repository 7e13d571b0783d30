#include "tether/resilience/circuit_breaker.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace tether::resilience {
namespace {

struct transition {
  breaker_state from;
  breaker_state to;
  bool operator==(const transition&) const = default;
};

circuit_breaker_options small_count_window() {
  circuit_breaker_options o;
  o.window_size = 10;
  o.minimum_calls = 5;
  o.failure_rate_threshold = 50;
  o.wait_in_open = 5s;
  o.permitted_calls_in_half_open = 3;
  return o;
}

struct breaker_test : ::testing::Test {
  manual_clock clock;
  std::vector<transition> transitions;

  std::unique_ptr<circuit_breaker> make(const circuit_breaker_options& o) {
    auto b = std::make_unique<circuit_breaker>("backend", o, clock);
    b->set_listener([this](const circuit_breaker&, breaker_state from, breaker_state to) {
      transitions.push_back({from, to});
    });
    return b;
  }

  static void call(circuit_breaker& b, bool fail, clock::duration took = 1ms) {
    const auto p = b.try_acquire();
    ASSERT_TRUE(p) << "call refused in state " << to_string(b.state());
    if (fail) {
      b.on_failure(p, took);
    } else {
      b.on_success(p, took);
    }
  }
};

TEST_F(breaker_test, stays_closed_below_minimum_calls_whatever_the_rate) {
  auto b = make(small_count_window());
  for (int i = 0; i < 4; ++i) {
    call(*b, true);
  }
  EXPECT_EQ(b->state(), breaker_state::closed);
  EXPECT_TRUE(transitions.empty());
}

TEST_F(breaker_test, opens_when_failure_rate_reaches_the_threshold) {
  auto b = make(small_count_window());
  call(*b, false);
  call(*b, false);
  call(*b, true);
  call(*b, false);
  EXPECT_EQ(b->state(), breaker_state::closed);
  call(*b, true); // 2 of 5: 40 %
  EXPECT_EQ(b->state(), breaker_state::closed);
  call(*b, true); // 3 of 6: 50 %
  EXPECT_EQ(b->state(), breaker_state::open);
  EXPECT_EQ(transitions, (std::vector<transition>{{breaker_state::closed, breaker_state::open}}));
}

TEST_F(breaker_test, open_refuses_until_the_wait_ends_then_goes_half_open) {
  auto b = make(small_count_window());
  for (int i = 0; i < 5; ++i) {
    call(*b, true);
  }
  ASSERT_EQ(b->state(), breaker_state::open);
  EXPECT_FALSE(b->try_acquire());
  clock.advance(4999ms);
  EXPECT_FALSE(b->try_acquire());
  EXPECT_EQ(b->metrics().not_permitted, 2U);
  clock.advance(1ms);
  EXPECT_TRUE(b->try_acquire());
  EXPECT_EQ(b->state(), breaker_state::half_open);
}

TEST_F(breaker_test, half_open_permits_only_its_trial_calls) {
  auto b = make(small_count_window());
  b->transition_to_half_open();
  const auto p1 = b->try_acquire();
  const auto p2 = b->try_acquire();
  const auto p3 = b->try_acquire();
  EXPECT_TRUE(p1 && p2 && p3);
  EXPECT_FALSE(b->try_acquire());
  // An ignored outcome gives its slot back.
  b->on_ignored(p3);
  const auto p4 = b->try_acquire();
  EXPECT_TRUE(p4);
  EXPECT_FALSE(b->try_acquire());
  b->on_success(p1, 1ms);
  b->on_success(p2, 1ms);
  EXPECT_EQ(b->state(), breaker_state::half_open); // waits for all three
  b->on_success(p4, 1ms);
  EXPECT_EQ(b->state(), breaker_state::closed);
}

TEST_F(breaker_test, failed_trials_reopen_and_wait_grows_exponentially_with_a_cap) {
  auto o = small_count_window();
  o.wait_multiplier = 2.0;
  o.max_wait_in_open = 15s;
  auto b = make(o);
  for (int i = 0; i < 5; ++i) {
    call(*b, true);
  }
  const clock::duration waits[] = {5s, 10s, 15s, 15s};
  for (const auto wait : waits) {
    ASSERT_EQ(b->state(), breaker_state::open);
    clock.advance(wait - 1ms);
    EXPECT_FALSE(b->try_acquire()) << "wait " << wait.count();
    clock.advance(1ms);
    call(*b, true);
    call(*b, true);
    call(*b, false); // 2 of 3 failed: reopen
  }
  // Recovery resets the wait.
  clock.advance(15s);
  for (int i = 0; i < 3; ++i) {
    call(*b, false);
  }
  ASSERT_EQ(b->state(), breaker_state::closed);
  for (int i = 0; i < 5; ++i) {
    call(*b, true);
  }
  clock.advance(5s);
  EXPECT_TRUE(b->try_acquire());
}

TEST_F(breaker_test, slow_calls_open_it_too) {
  auto o = small_count_window();
  o.slow_call_duration = 2s;
  o.slow_call_rate_threshold = 60;
  auto b = make(o);
  call(*b, false, 2s);
  call(*b, false, 3s);
  call(*b, false, 1s);
  call(*b, false, 2s);
  EXPECT_EQ(b->state(), breaker_state::closed);
  call(*b, false, 1999ms); // 3 of 5 slow: 60 %
  EXPECT_EQ(b->state(), breaker_state::open);
  EXPECT_FLOAT_EQ(b->metrics().window.slow_call_rate(), 60.0F);
}

TEST_F(breaker_test, count_window_forgets_calls_older_than_its_size) {
  auto o = small_count_window();
  o.minimum_calls = 10;
  auto b = make(o);
  for (int i = 0; i < 4; ++i) {
    call(*b, true);
  }
  for (int i = 0; i < 6; ++i) {
    call(*b, false); // 4 of 10
  }
  for (int i = 0; i < 4; ++i) {
    call(*b, false); // the four failures roll out
  }
  EXPECT_EQ(b->metrics().window.failed, 0U);
  EXPECT_EQ(b->metrics().window.calls, 10U);
  EXPECT_EQ(b->state(), breaker_state::closed);
}

TEST_F(breaker_test, minimum_calls_is_capped_at_a_count_windows_size) {
  auto o = small_count_window();
  o.window_size = 4;
  o.minimum_calls = 100;
  auto b = make(o);
  for (int i = 0; i < 4; ++i) {
    call(*b, true);
  }
  EXPECT_EQ(b->state(), breaker_state::open);
}

TEST_F(breaker_test, time_window_rolls_over_by_the_second) {
  circuit_breaker_options o;
  o.window_kind = sliding_window_kind::time_based;
  o.window_size = 3; // seconds
  o.minimum_calls = 5;
  auto b = make(o);
  call(*b, true);
  call(*b, true);
  clock.advance(1s);
  call(*b, false);
  clock.advance(1s);
  call(*b, false);
  clock.advance(1s); // the first second's two failures leave the window
  EXPECT_EQ(b->metrics().window.calls, 2U);
  call(*b, true);
  call(*b, false);
  EXPECT_EQ(b->state(), breaker_state::closed); // 4 calls: below the minimum
  call(*b, true);                               // 2 of 5: 40 %
  EXPECT_EQ(b->state(), breaker_state::closed);
  call(*b, true); // 3 of 6
  EXPECT_EQ(b->state(), breaker_state::open);
}

TEST_F(breaker_test, results_of_calls_from_an_earlier_state_are_not_counted) {
  auto b = make(small_count_window());
  const auto old_call = b->try_acquire(); // begun while closed
  for (int i = 0; i < 5; ++i) {
    call(*b, true);
  }
  clock.advance(5s);
  const auto t1 = b->try_acquire();
  ASSERT_EQ(b->state(), breaker_state::half_open);
  b->on_failure(old_call, 1ms); // must not count as a trial
  EXPECT_EQ(b->metrics().window.calls, 0U);
  const auto t2 = b->try_acquire();
  const auto t3 = b->try_acquire();
  b->on_success(t1, 1ms);
  b->on_success(t2, 1ms);
  b->on_success(t3, 1ms);
  EXPECT_EQ(b->state(), breaker_state::closed);
}

TEST_F(breaker_test, half_open_gives_up_on_trials_after_max_wait) {
  auto o = small_count_window();
  o.max_wait_in_half_open = 2s;
  auto b = make(o);
  b->transition_to_half_open();
  const auto p = b->try_acquire();
  ASSERT_TRUE(p);
  clock.advance(2s);
  EXPECT_FALSE(b->try_acquire());
  EXPECT_EQ(b->state(), breaker_state::open);
  b->on_success(p, 1ms); // too late to count
  EXPECT_EQ(b->state(), breaker_state::open);
}

TEST_F(breaker_test, manual_states_behave_as_resilience4j) {
  auto b = make(small_count_window());
  b->transition_to_disabled();
  for (int i = 0; i < 20; ++i) {
    call(*b, true);
  }
  EXPECT_EQ(b->state(), breaker_state::disabled);
  EXPECT_EQ(b->metrics().window.calls, 0U) << "disabled records nothing";

  b->transition_to_metrics_only();
  for (int i = 0; i < 20; ++i) {
    call(*b, true);
  }
  EXPECT_EQ(b->state(), breaker_state::metrics_only);
  EXPECT_EQ(b->metrics().window.calls, 10U);
  EXPECT_FLOAT_EQ(b->metrics().window.failure_rate(), 100.0F);

  b->transition_to_forced_open();
  clock.advance(1h);
  EXPECT_FALSE(b->try_acquire());
  EXPECT_EQ(b->state(), breaker_state::forced_open);

  b->reset();
  EXPECT_EQ(b->state(), breaker_state::closed);
  EXPECT_EQ(b->metrics().not_permitted, 0U);
  EXPECT_EQ(b->metrics().window.calls, 0U);
  EXPECT_EQ(transitions.size(), 4U);
  EXPECT_EQ(transitions.back(), (transition{breaker_state::forced_open, breaker_state::closed}));
}

TEST_F(breaker_test, a_manual_transition_to_the_current_state_changes_nothing) {
  auto b = make(small_count_window());
  b->transition_to_half_open();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(b->try_acquire());
  }
  b->transition_to_half_open(); // must not hand out three more trial permits
  EXPECT_FALSE(b->try_acquire());
  EXPECT_EQ(transitions.size(), 1U);
}

TEST_F(breaker_test, the_listener_may_call_back_into_the_breaker) {
  auto b = std::make_unique<circuit_breaker>("backend", small_count_window(), clock);
  std::vector<breaker_state> seen;
  b->set_listener([&seen](const circuit_breaker& self, breaker_state, breaker_state) {
    seen.push_back(self.state());
    (void)self.metrics(); // takes the breaker's lock: must not deadlock
  });
  for (int i = 0; i < 5; ++i) {
    call(*b, true);
  }
  EXPECT_EQ(seen, std::vector<breaker_state>{breaker_state::open});
}

TEST_F(breaker_test, rejects_bad_options) {
  auto o = small_count_window();
  o.failure_rate_threshold = 0;
  EXPECT_THROW(circuit_breaker("x", o, clock), std::invalid_argument);
  o = small_count_window();
  o.window_size = 0;
  EXPECT_THROW(circuit_breaker("x", o, clock), std::invalid_argument);
  o = small_count_window();
  o.wait_multiplier = 0.5;
  EXPECT_THROW(circuit_breaker("x", o, clock), std::invalid_argument);
  o = small_count_window();
  o.permitted_calls_in_half_open = 0;
  EXPECT_THROW(circuit_breaker("x", o, clock), std::invalid_argument);
  o = small_count_window();
  o.window_kind = sliding_window_kind::time_based;
  o.window_size = 100000; // seconds: refused before a bucket is allocated
  EXPECT_THROW(circuit_breaker("x", o, clock), std::invalid_argument);
}

// Two workers share one breaker through a half-open episode: no more trial calls than permitted
// may get through, and every permitted trial is counted once.
TEST_F(breaker_test, half_open_with_concurrent_calls_admits_exactly_the_permitted_number) {
  for (int round = 0; round < 50; ++round) {
    auto o = small_count_window();
    o.permitted_calls_in_half_open = 7;
    circuit_breaker b{"shared", o, clock};
    b.transition_to_half_open();
    std::atomic<int> admitted{0};
    std::atomic<bool> go{false};
    auto worker = [&] {
      while (!go.load()) {
      }
      for (int i = 0; i < 100; ++i) {
        if (const auto p = b.try_acquire()) {
          admitted.fetch_add(1);
          b.on_success(p, 1ms);
        }
      }
    };
    std::thread t1{worker};
    std::thread t2{worker};
    go.store(true);
    t1.join();
    t2.join();
    // 7 trials close the breaker; after that every call is admitted in closed.
    EXPECT_EQ(b.state(), breaker_state::closed);
    EXPECT_EQ(admitted.load() + static_cast<int>(b.metrics().not_permitted), 200);
    EXPECT_LE(b.metrics().not_permitted, 193U);
  }
}

TEST_F(breaker_test, two_threads_recording_keep_exact_counts) {
  circuit_breaker_options o;
  o.window_size = 100000;
  o.minimum_calls = 100000;
  circuit_breaker b{"shared", o, clock};
  auto worker = [&](bool fail) {
    for (int i = 0; i < 20000; ++i) {
      const auto p = b.try_acquire();
      if (fail) {
        b.on_failure(p, 1ms);
      } else {
        b.on_success(p, 1ms);
      }
    }
  };
  std::thread t1{worker, true};
  std::thread t2{worker, false};
  t1.join();
  t2.join();
  const auto m = b.metrics();
  EXPECT_EQ(m.window.calls, 40000U);
  EXPECT_EQ(m.window.failed, 20000U);
}

} // namespace
} // namespace tether::resilience
