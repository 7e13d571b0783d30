// The decisions between a request's attempts, shared by the HTTP client and the proxy: on a
// manual clock and a scripted random source, with a counting budget; no sockets.
#include "tether/upstream/attempts.hpp"

#include <gtest/gtest.h>

#include "scripted_random.hpp"

namespace tether::upstream {
namespace {

using namespace std::chrono_literals;
using resilience::attempt_outcome;
using resilience::attempt_result;
using resilience::give_up_reason;
using resilience::retry_on;

/// A budget that counts what it is told and allows `allowed` withdrawals.
class counting_budget final : public resilience::retry_budget {
public:
  void on_request() noexcept override { ++requests; }
  void on_result(bool success) noexcept override { ++(success ? successes : failures); }
  bool try_withdraw() noexcept override { return allowed-- > 0; }
  [[nodiscard]] std::int64_t remaining() const noexcept override { return allowed; }
  int requests = 0;
  int successes = 0;
  int failures = 0;
  int allowed = 100;
};

resilience::retry_policy policy(retry_on on, std::uint32_t max_attempts = 3) {
  resilience::retry_policy p;
  p.conditions = on;
  p.max_attempts = max_attempts;
  return p;
}

attempt_outcome failed(attempt_result r) {
  return {r, 0, std::nullopt};
}

struct fixture {
  manual_clock clock;
  testing::scripted_random random{{0}}; // backoff at its shortest
};

TEST(attempts, a_connection_never_made_is_retried_for_any_method) {
  fixture f;
  const auto p = policy(retry_on::connect_failure);
  attempts post{{p, {"POST", false, false}, f.clock.now()}};
  const auto d = post.after(failed(attempt_result::connect_failure), f.clock.now(), f.random);
  EXPECT_TRUE(d.retry);
  EXPECT_EQ(post.count(), 2U);
}

TEST(attempts, a_request_sent_is_retried_only_when_it_may_be_sent_twice) {
  fixture f;
  const auto p = policy(retry_on::reset);
  attempts post{{p, {"POST", false, true}, f.clock.now()}};
  EXPECT_EQ(post.after(failed(attempt_result::reset), f.clock.now(), f.random).reason,
            give_up_reason::not_idempotent);
  attempts keyed{{p, {"POST", true, true}, f.clock.now()}};
  EXPECT_TRUE(keyed.after(failed(attempt_result::reset), f.clock.now(), f.random).retry);
  attempts streamed{{p, {"PUT", false, false}, f.clock.now()}};
  EXPECT_EQ(streamed.after(failed(attempt_result::reset), f.clock.now(), f.random).reason,
            give_up_reason::body_not_replayable);
}

TEST(attempts, at_a_responses_head_a_retriable_status_is_decided_and_others_are_the_answer) {
  fixture f;
  counting_budget budget;
  const auto p = policy(retry_on::gateway_error, 2);
  attempts get{{p, {"GET", false, true}, f.clock.now(), &budget}};
  EXPECT_EQ(budget.requests, 1);
  // A 404 is the answer, and a success for the budget.
  EXPECT_FALSE(get.at_response(attempt_outcome::from_status(404), f.clock.now(), f.random));
  EXPECT_EQ(budget.successes, 1);
  // A 500 the policy does not retry is the answer too, and not a success.
  EXPECT_FALSE(get.at_response(attempt_outcome::from_status(500), f.clock.now(), f.random));
  EXPECT_EQ(budget.successes, 1);
  EXPECT_EQ(budget.failures, 0);
  // A 503 is retried once (2 attempts), then given up: the caller forwards it.
  const auto first = get.at_response(attempt_outcome::from_status(503), f.clock.now(), f.random);
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->retry);
  const auto second = get.at_response(attempt_outcome::from_status(503), f.clock.now(), f.random);
  ASSERT_TRUE(second);
  EXPECT_FALSE(second->retry);
  EXPECT_EQ(second->reason, give_up_reason::attempts_exhausted);
  EXPECT_EQ(budget.failures, 2);
}

TEST(attempts, a_retry_after_is_waited_for_up_to_its_limit) {
  fixture f;
  auto p = policy(retry_on::retriable_status_codes);
  p.retriable_status_codes = {429};
  p.max_retry_after = 5s;
  attempts get{{p, {"GET", false, true}, f.clock.now()}};
  const auto d = get.at_response(attempt_outcome::from_status(429, 2s), f.clock.now(), f.random);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->retry);
  EXPECT_GE(d->delay, 2s);
  const auto too_long =
      get.at_response(attempt_outcome::from_status(429, 10s), f.clock.now(), f.random);
  ASSERT_TRUE(too_long);
  EXPECT_FALSE(too_long->retry);
}

TEST(attempts, the_retry_threshold_is_held_while_no_budget_rules) {
  fixture f;
  const auto p = policy(retry_on::reset);
  resilience::resource_limit retries{1};
  {
    attempts first{{p, {"GET", false, true}, f.clock.now(), nullptr, &retries}};
    EXPECT_TRUE(first.after(failed(attempt_result::reset), f.clock.now(), f.random).retry);
    // A second request finds the threshold reached while the first still retries.
    attempts second{{p, {"GET", false, true}, f.clock.now(), nullptr, &retries}};
    const auto refused = second.after(failed(attempt_result::reset), f.clock.now(), f.random);
    EXPECT_FALSE(refused.retry);
    EXPECT_TRUE(refused.over_retry_limit);
    // The first holds its one unit for all its retries.
    EXPECT_TRUE(first.after(failed(attempt_result::reset), f.clock.now(), f.random).retry);
  }
  EXPECT_EQ(retries.remaining(), 1U); // given back with the request
  // With a budget the threshold is not applied (Envoy's rule).
  counting_budget budget;
  resilience::resource_limit none{0};
  attempts budgeted{{p, {"GET", false, true}, f.clock.now(), &budget, &none}};
  EXPECT_TRUE(budgeted.after(failed(attempt_result::reset), f.clock.now(), f.random).retry);
  budget.allowed = 0;
  attempts broke{{p, {"GET", false, true}, f.clock.now(), &budget, &none}};
  EXPECT_EQ(broke.after(failed(attempt_result::reset), f.clock.now(), f.random).reason,
            give_up_reason::budget_exhausted);
}

TEST(attempts, the_overall_deadline_ends_retries_and_bounds_each_attempt) {
  fixture f;
  auto p = policy(retry_on::timeout, 5);
  p.overall_timeout = 1s;
  p.per_try_timeout = 400ms;
  const auto start = f.clock.now();
  attempts get{{p, {"GET", false, true}, start}};
  EXPECT_EQ(get.attempt_deadline(start), start + 400ms);
  EXPECT_EQ(get.attempt_deadline(start + 800ms), start + 1s);
  f.clock.advance(999ms); // a backoff of 0 (the scripted draw) still starts before the deadline
  EXPECT_TRUE(get.after(failed(attempt_result::timeout), f.clock.now(), f.random).retry);
  f.clock.advance(1ms);
  EXPECT_EQ(get.after(failed(attempt_result::timeout), f.clock.now(), f.random).reason,
            give_up_reason::deadline_exceeded);
}

TEST(attempts, a_request_a_dropped_connection_failed_goes_again_once) {
  fixture f;
  const auto p = policy(retry_on::connect_failure);
  const auto reset = failed(attempt_result::reset);
  attempts get{{p, {"GET", false, true}, f.clock.now()}};
  EXPECT_FALSE(get.replay_after_stale(false, false, reset)) << "a new connection: not stale";
  EXPECT_FALSE(get.replay_after_stale(true, true, reset)) << "part of a response came";
  EXPECT_FALSE(get.replay_after_stale(true, false, failed(attempt_result::timeout)));
  EXPECT_TRUE(get.replay_after_stale(true, false, reset));
  EXPECT_FALSE(get.replay_after_stale(true, false, reset)) << "once per request";
  EXPECT_EQ(get.count(), 1U) << "not a retry";
  attempts post{{p, {"POST", false, true}, f.clock.now()}};
  EXPECT_FALSE(post.replay_after_stale(true, false, reset)) << "never twice";
  attempts keyed{{p, {"POST", true, true}, f.clock.now()}};
  EXPECT_TRUE(keyed.replay_after_stale(true, false, reset));
  attempts streamed{{p, {"PUT", false, false}, f.clock.now()}};
  EXPECT_FALSE(streamed.replay_after_stale(true, false, reset)) << "its body is gone";
}

} // namespace
} // namespace tether::upstream
