#include "tether/resilience/retry_policy.hpp"

#include <gtest/gtest.h>

#include "tether/resilience/retry_budget.hpp"

namespace tether::resilience {
namespace {

const attempt_outcome ok{};
const attempt_outcome refused{attempt_result::refused};
const attempt_outcome connect_failed{attempt_result::connect_failure};
const attempt_outcome reset_before_response{attempt_result::reset};
const attempt_outcome timed_out{attempt_result::timeout};

retry_policy policy_with(retry_on conditions, std::uint32_t max_attempts = 3) {
  retry_policy p;
  p.conditions = conditions;
  p.max_attempts = max_attempts;
  return p;
}

struct retry_policy_test : ::testing::Test {
  manual_clock clock;
  default_random random{1};
};

TEST_F(retry_policy_test, defaults_retry_only_what_was_never_sent) {
  const retry_policy p;
  EXPECT_TRUE(p.is_retriable(refused));
  EXPECT_TRUE(p.is_retriable(connect_failed));
  EXPECT_FALSE(p.is_retriable(reset_before_response));
  EXPECT_FALSE(p.is_retriable(timed_out));
  EXPECT_FALSE(p.is_retriable(attempt_outcome::from_status(503)));
  EXPECT_FALSE(p.is_retriable(ok));
  EXPECT_EQ(p.max_attempts, 2U);
}

TEST_F(retry_policy_test, conditions_match_envoys_retry_on) {
  const auto s5xx = policy_with(retry_on::status_5xx);
  EXPECT_TRUE(s5xx.is_retriable(attempt_outcome::from_status(500)));
  EXPECT_TRUE(s5xx.is_retriable(attempt_outcome::from_status(599)));
  EXPECT_FALSE(s5xx.is_retriable(attempt_outcome::from_status(499)));
  EXPECT_TRUE(s5xx.is_retriable(reset_before_response)); // "or no response at all"
  EXPECT_TRUE(s5xx.is_retriable(connect_failed));
  EXPECT_TRUE(s5xx.is_retriable(timed_out));

  const auto gateway = policy_with(retry_on::gateway_error);
  EXPECT_FALSE(gateway.is_retriable(attempt_outcome::from_status(500)));
  for (const int s : {502, 503, 504}) {
    EXPECT_TRUE(gateway.is_retriable(attempt_outcome::from_status(s))) << s;
  }
  EXPECT_FALSE(gateway.is_retriable(attempt_outcome::from_status(505)));
  EXPECT_TRUE(gateway.is_retriable(connect_failed));
  EXPECT_TRUE(gateway.is_retriable(reset_before_response));
  EXPECT_TRUE(gateway.is_retriable(timed_out));

  const auto reset = policy_with(retry_on::reset);
  EXPECT_TRUE(reset.is_retriable(reset_before_response));
  EXPECT_TRUE(reset.is_retriable(timed_out));
  EXPECT_FALSE(reset.is_retriable(connect_failed));

  const auto only_refused = policy_with(retry_on::refused);
  EXPECT_TRUE(only_refused.is_retriable(refused));
  EXPECT_FALSE(only_refused.is_retriable(connect_failed));

  const auto timeout = policy_with(retry_on::timeout);
  EXPECT_TRUE(timeout.is_retriable(timed_out));
  EXPECT_FALSE(timeout.is_retriable(reset_before_response));

  auto listed = policy_with(retry_on::retriable_status_codes);
  listed.retriable_status_codes = {409, 429};
  EXPECT_TRUE(listed.is_retriable(attempt_outcome::from_status(429)));
  EXPECT_TRUE(listed.is_retriable(attempt_outcome::from_status(409)));
  EXPECT_FALSE(listed.is_retriable(attempt_outcome::from_status(503)));
  EXPECT_FALSE(policy_with(retry_on::none).is_retriable(attempt_outcome::from_status(429)));
}

TEST_F(retry_policy_test, idempotent_methods_are_rfc_9110s) {
  for (const char* m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}) {
    EXPECT_TRUE(is_idempotent_method(m)) << m;
  }
  for (const char* m : {"POST", "PATCH", "CONNECT", "get", ""}) {
    EXPECT_FALSE(is_idempotent_method(m)) << m;
  }
}

TEST_F(retry_policy_test, retries_until_max_attempts_with_growing_delays) {
  auto p = policy_with(retry_on::gateway_error, 4);
  p.backoff = {10ms, 2.0, 1s, jitter::none};
  retry_state s{p, {"GET"}, clock.now()};
  const clock::duration expected[] = {10ms, 20ms, 40ms};
  for (const auto e : expected) {
    const auto d = s.decide(attempt_outcome::from_status(503), clock.now(), random);
    ASSERT_TRUE(d.retry);
    EXPECT_EQ(d.delay, e);
  }
  EXPECT_EQ(s.attempts(), 4U);
  const auto last = s.decide(attempt_outcome::from_status(503), clock.now(), random);
  EXPECT_FALSE(last.retry);
  EXPECT_EQ(last.reason, give_up_reason::attempts_exhausted);
}

TEST_F(retry_policy_test, success_and_unlisted_outcomes_end_the_request) {
  const auto p = policy_with(retry_on::gateway_error);
  retry_state s{p, {"GET"}, clock.now()};
  EXPECT_EQ(s.decide(ok, clock.now(), random).reason, give_up_reason::succeeded);
  EXPECT_EQ(s.decide(attempt_outcome::from_status(500), clock.now(), random).reason,
            give_up_reason::not_retriable);
}

TEST_F(retry_policy_test, a_sent_post_is_never_sent_twice) {
  const auto p = policy_with(retry_on::status_5xx);
  retry_state post{p, {"POST"}, clock.now()};
  const auto d = post.decide(attempt_outcome::from_status(503), clock.now(), random);
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.reason, give_up_reason::not_idempotent);
  retry_state reset{p, {"POST"}, clock.now()};
  EXPECT_EQ(reset.decide(reset_before_response, clock.now(), random).reason,
            give_up_reason::not_idempotent);
}

TEST_F(retry_policy_test, a_post_that_never_left_may_be_sent_again) {
  const auto p = policy_with(retry_on::connect_failure);
  retry_state s{p, {"POST"}, clock.now()};
  EXPECT_TRUE(s.decide(connect_failed, clock.now(), random).retry);
  EXPECT_TRUE(s.decide(refused, clock.now(), random).retry);
}

TEST_F(retry_policy_test, an_idempotency_key_makes_a_post_retriable) {
  const auto p = policy_with(retry_on::status_5xx);
  retry_state s{p, {"POST", true}, clock.now()};
  EXPECT_TRUE(s.decide(attempt_outcome::from_status(503), clock.now(), random).retry);
}

TEST_F(retry_policy_test, a_streamed_body_is_not_replayed) {
  const auto p = policy_with(retry_on::status_5xx | retry_on::connect_failure);
  retry_state s{p, {"PUT", false, false}, clock.now()};
  EXPECT_EQ(s.decide(attempt_outcome::from_status(503), clock.now(), random).reason,
            give_up_reason::body_not_replayable);
  EXPECT_TRUE(s.decide(connect_failed, clock.now(), random).retry);
}

TEST_F(retry_policy_test, gives_up_when_the_next_attempt_would_start_after_the_deadline) {
  auto p = policy_with(retry_on::gateway_error, 10);
  p.overall_timeout = 1s;
  p.backoff = {100ms, 1.0, 100ms, jitter::none};
  retry_state s{p, {"GET"}, clock.now()};
  clock.advance(850ms);
  EXPECT_TRUE(s.decide(attempt_outcome::from_status(503), clock.now(), random).retry);
  clock.advance(60ms); // 910 ms: 910 + 100 passes the 1 s deadline
  const auto d = s.decide(attempt_outcome::from_status(503), clock.now(), random);
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.reason, give_up_reason::deadline_exceeded);
}

TEST_F(retry_policy_test, per_try_deadline_is_bounded_by_the_overall_one) {
  auto p = policy_with(retry_on::gateway_error);
  p.overall_timeout = 1s;
  p.per_try_timeout = 300ms;
  const auto t0 = clock.now();
  retry_state s{p, {"GET"}, t0};
  EXPECT_EQ(s.attempt_deadline(t0), t0 + 300ms);
  EXPECT_EQ(s.attempt_deadline(t0 + 800ms), t0 + 1s);
  EXPECT_EQ(s.deadline(), t0 + 1s);
  p.per_try_timeout = 0s;
  p.overall_timeout = 0s;
  retry_state unbounded{p, {"GET"}, t0};
  EXPECT_EQ(unbounded.attempt_deadline(t0), clock::time_point::max());
}

TEST_F(retry_policy_test, retry_after_is_honoured_and_bounded) {
  auto p = policy_with(retry_on::retriable_status_codes);
  p.retriable_status_codes = {429, 503};
  p.backoff = {10ms, 2.0, 100ms, jitter::none};
  retry_state s{p, {"GET"}, clock.now()};
  auto d = s.decide(attempt_outcome::from_status(429, 2s), clock.now(), random);
  ASSERT_TRUE(d.retry);
  EXPECT_EQ(d.delay, 2s);
  d = s.decide(attempt_outcome::from_status(503, 1ms), clock.now(), random);
  ASSERT_TRUE(d.retry);
  EXPECT_EQ(d.delay, 20ms); // the backoff is longer than Retry-After
  retry_state far{p, {"GET"}, clock.now()};
  EXPECT_EQ(far.decide(attempt_outcome::from_status(503, 1h), clock.now(), random).reason,
            give_up_reason::deadline_exceeded);
}

TEST_F(retry_policy_test, an_empty_budget_stops_retries_and_is_asked_last) {
  auto p = policy_with(retry_on::gateway_error, 5);
  p.backoff = {1ms, 1.0, 1ms, jitter::none};
  // No reserve and nothing deposited but this request's 1000 units: 1 retry at 100 %.
  windowed_retry_budget budget{{10s, 0, 1.0}, clock};
  retry_state s{p, {"GET"}, clock.now(), &budget};
  EXPECT_TRUE(s.decide(attempt_outcome::from_status(503), clock.now(), random).retry);
  const auto d = s.decide(attempt_outcome::from_status(503), clock.now(), random);
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.reason, give_up_reason::budget_exhausted);
  // A request that gives up for another reason leaves the budget alone.
  retry_state post{p, {"POST"}, clock.now(), &budget};
  EXPECT_EQ(post.decide(attempt_outcome::from_status(503), clock.now(), random).reason,
            give_up_reason::not_idempotent);
  EXPECT_EQ(budget.remaining(), 1);
}

TEST_F(retry_policy_test, rejects_bad_policies_naming_the_field) {
  retry_policy p;
  p.max_attempts = 0;
  EXPECT_THROW(p.validate(), std::invalid_argument);
  p = {};
  p.retriable_status_codes = {42};
  try {
    p.validate();
    FAIL() << "expected a throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string{e.what()}.find("42"), std::string::npos);
  }
}

TEST(give_up_reason, has_names) {
  EXPECT_EQ(to_string(give_up_reason::budget_exhausted), "budget_exhausted");
  EXPECT_EQ(to_string(attempt_result::connect_failure), "connect_failure");
}

} // namespace
} // namespace tether::resilience
