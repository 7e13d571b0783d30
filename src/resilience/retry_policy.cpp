#include "tether/resilience/retry_policy.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>

#include "tether/resilience/retry_budget.hpp"

namespace tether::resilience {

void retry_policy::validate() const {
  if (max_attempts < 1) {
    throw std::invalid_argument("retry max_attempts must be at least 1");
  }
  if (per_try_timeout < clock::duration::zero()) {
    throw std::invalid_argument("retry per_try_timeout must not be negative");
  }
  if (overall_timeout < clock::duration::zero()) {
    throw std::invalid_argument("retry overall_timeout must not be negative");
  }
  for (const int code : retriable_status_codes) {
    if (code < 100 || code > 599) {
      throw std::invalid_argument("retriable status code " + std::to_string(code) +
                                  " is not an HTTP status (100-599)");
    }
  }
  backoff.validate();
}

bool retry_policy::is_retriable(const attempt_outcome& outcome) const noexcept {
  const retry_on c = conditions;
  switch (outcome.result) {
  case attempt_result::success:
    return false;
  case attempt_result::connect_failure:
    return has(c, retry_on::connect_failure) || has(c, retry_on::status_5xx) ||
           has(c, retry_on::gateway_error);
  case attempt_result::refused:
    return has(c, retry_on::refused) || has(c, retry_on::connect_failure) ||
           has(c, retry_on::status_5xx) || has(c, retry_on::gateway_error);
  case attempt_result::reset:
    return has(c, retry_on::reset) || has(c, retry_on::status_5xx) ||
           has(c, retry_on::gateway_error);
  case attempt_result::timeout:
    return has(c, retry_on::timeout) || has(c, retry_on::reset) || has(c, retry_on::status_5xx) ||
           has(c, retry_on::gateway_error);
  case attempt_result::http_status:
    if (has(c, retry_on::status_5xx) && outcome.status >= 500 && outcome.status <= 599) {
      return true;
    }
    if (has(c, retry_on::gateway_error) && outcome.is_gateway_error()) {
      return true;
    }
    return has(c, retry_on::retriable_status_codes) &&
           std::find(retriable_status_codes.begin(), retriable_status_codes.end(),
                     outcome.status) != retriable_status_codes.end();
  }
  return false;
}

bool is_idempotent_method(std::string_view method) noexcept {
  static constexpr std::array<std::string_view, 6> idempotent{"GET",   "HEAD", "OPTIONS",
                                                              "TRACE", "PUT",  "DELETE"};
  return std::find(idempotent.begin(), idempotent.end(), method) != idempotent.end();
}

std::string_view to_string(give_up_reason reason) noexcept {
  switch (reason) {
  case give_up_reason::succeeded:
    return "succeeded";
  case give_up_reason::not_retriable:
    return "not_retriable";
  case give_up_reason::not_idempotent:
    return "not_idempotent";
  case give_up_reason::body_not_replayable:
    return "body_not_replayable";
  case give_up_reason::attempts_exhausted:
    return "attempts_exhausted";
  case give_up_reason::deadline_exceeded:
    return "deadline_exceeded";
  case give_up_reason::budget_exhausted:
    return "budget_exhausted";
  }
  return "unknown";
}

retry_state::retry_state(const retry_policy& policy, const request_traits& request,
                         clock::time_point now, retry_budget* budget)
    : policy_{policy}, budget_{budget}, idempotent_{is_idempotent_method(request.method) ||
                                                    request.has_idempotency_key},
      body_replayable_{request.body_replayable}, backoff_{policy.backoff},
      deadline_{policy.overall_timeout > clock::duration::zero() ? now + policy.overall_timeout
                                                                 : clock::time_point::max()} {
  if (budget_ != nullptr) {
    budget_->on_request();
  }
}

retry_decision retry_state::decide(const attempt_outcome& outcome, clock::time_point now,
                                   random_source& random) {
  if (outcome.result == attempt_result::success) {
    if (budget_ != nullptr) {
      budget_->on_result(true);
    }
    return retry_decision::give_up(give_up_reason::succeeded);
  }
  if (!policy_.is_retriable(outcome)) {
    // A response below 500 (a 404, say) is the upstream working: a success for the budget and
    // the request. A failure the policy does not retry is not reported to the budget, as gRPC's
    // throttling counts only the failures it would retry.
    if (outcome.result == attempt_result::http_status && outcome.status < 500) {
      if (budget_ != nullptr) {
        budget_->on_result(true);
      }
      return retry_decision::give_up(give_up_reason::succeeded);
    }
    return retry_decision::give_up(give_up_reason::not_retriable);
  }
  if (budget_ != nullptr) {
    budget_->on_result(false);
  }
  // A request that never reached the upstream may be sent again whatever its method or body.
  if (!outcome.request_not_sent()) {
    if (!idempotent_) {
      return retry_decision::give_up(give_up_reason::not_idempotent);
    }
    if (!body_replayable_) {
      return retry_decision::give_up(give_up_reason::body_not_replayable);
    }
  }
  if (attempts_ >= policy_.max_attempts) {
    return retry_decision::give_up(give_up_reason::attempts_exhausted);
  }
  clock::duration delay = backoff_.next(random);
  if (outcome.retry_after) {
    if (*outcome.retry_after > policy_.max_retry_after) {
      return retry_decision::give_up(give_up_reason::deadline_exceeded);
    }
    delay = std::max(delay, *outcome.retry_after);
  }
  if (deadline_ != clock::time_point::max() && now + delay >= deadline_) {
    return retry_decision::give_up(give_up_reason::deadline_exceeded);
  }
  // The budget is asked last, so a retry that would be refused anyway does not spend from it.
  if (budget_ != nullptr && !budget_->try_withdraw()) {
    return retry_decision::give_up(give_up_reason::budget_exhausted);
  }
  ++attempts_;
  return retry_decision::retry_after(delay);
}

clock::time_point retry_state::attempt_deadline(clock::time_point attempt_start) const noexcept {
  if (policy_.per_try_timeout <= clock::duration::zero()) {
    return deadline_;
  }
  return std::min(deadline_, attempt_start + policy_.per_try_timeout);
}

} // namespace tether::resilience
