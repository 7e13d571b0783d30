#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tether/core/clock.hpp"
#include "tether/core/random.hpp"
#include "tether/resilience/backoff.hpp"
#include "tether/resilience/outcome.hpp"

namespace tether::resilience {

class retry_budget;

/// The conditions under which an attempt is retried (Envoy's `retry_on`). Combine with `|`.
enum class retry_on : std::uint32_t {
  none = 0,
  connect_failure = 1U << 0U,       ///< the connection could not be made
  refused = 1U << 1U,               ///< the connection was refused
  reset = 1U << 2U,                 ///< reset, closed or per-try timeout before a response
  timeout = 1U << 3U,               ///< the per-try timeout passed
  status_5xx = 1U << 4U,            ///< any 5xx, or no response at all (Envoy's `5xx`)
  gateway_error = 1U << 5U,         ///< 502, 503, 504, or no response at all (`gateway-error`)
  retriable_status_codes = 1U << 6U ///< a status listed in retry_policy::retriable_status_codes
};

[[nodiscard]] constexpr retry_on operator|(retry_on a, retry_on b) noexcept {
  return static_cast<retry_on>(static_cast<std::uint32_t>(a) | static_cast<std::uint32_t>(b));
}
[[nodiscard]] constexpr bool has(retry_on set, retry_on flag) noexcept {
  return (static_cast<std::uint32_t>(set) & static_cast<std::uint32_t>(flag)) != 0;
}

/// When and how often to retry. Envoy's num_retries (1), timeout (15 s) and backoff; for the
/// conditions, which Envoy leaves empty, tether retries only what was never sent: a connection
/// that could not be made.
struct retry_policy {
  std::uint32_t max_attempts = 2; ///< attempts in all, the first included
  clock::duration per_try_timeout = clock::duration::zero();  ///< 0: only the overall limit
  clock::duration overall_timeout = std::chrono::seconds{15}; ///< covers every attempt; 0: none
  retry_on conditions = retry_on::connect_failure | retry_on::refused;
  std::vector<int> retriable_status_codes{};
  exponential_backoff_options backoff{};
  /// The longest Retry-After honoured; a longer one ends the request instead of waiting.
  clock::duration max_retry_after = std::chrono::seconds{300};

  /// Throws std::invalid_argument naming the field when a value is out of range.
  void validate() const;

  /// True when `outcome` meets one of the policy's conditions (ignoring method and budget).
  [[nodiscard]] bool is_retriable(const attempt_outcome& outcome) const noexcept;
};

/// What is known of the request that decides whether it may be sent twice.
struct request_traits {
  std::string_view method = "GET";
  bool has_idempotency_key = false; ///< the request carries an Idempotency-Key header
  bool body_replayable = true;      ///< the body is buffered (or empty), so it can be sent again
};

/// True for the methods RFC 9110 defines as idempotent: GET, HEAD, OPTIONS, TRACE, PUT, DELETE.
/// Method names are case-sensitive.
[[nodiscard]] bool is_idempotent_method(std::string_view method) noexcept;

/// Why a request will not be tried again.
enum class give_up_reason : std::uint8_t {
  succeeded,           ///< the attempt succeeded, or got a final response below 500
  not_retriable,       ///< the outcome is not one the policy retries
  not_idempotent,      ///< the request was sent and may not be sent twice
  body_not_replayable, ///< the body was streamed upstream and not kept
  attempts_exhausted,  ///< max_attempts reached
  deadline_exceeded,   ///< the next attempt could not start before the overall deadline
  budget_exhausted,    ///< the retry budget refused
};

/// A short lower-case name of the reason ("budget_exhausted", ...).
[[nodiscard]] std::string_view to_string(give_up_reason reason) noexcept;

/// The answer to "what now?" after an attempt: retry after `delay`, or give up because `reason`.
struct retry_decision {
  bool retry = false;
  clock::duration delay = clock::duration::zero();
  give_up_reason reason = give_up_reason::succeeded;

  [[nodiscard]] static retry_decision retry_after(clock::duration d) noexcept {
    return {true, d, give_up_reason::succeeded};
  }
  [[nodiscard]] static retry_decision give_up(give_up_reason why) noexcept {
    return {false, clock::duration::zero(), why};
  }
};

/// The retry state of one request: counts attempts, holds its backoff, knows its deadline.
/// Not thread-safe; a request lives on one worker. The policy must outlive the state.
class retry_state {
public:
  /// Starts a request at `now`. With a budget, the request is deposited into it here.
  retry_state(const retry_policy& policy, const request_traits& request, clock::time_point now,
              retry_budget* budget = nullptr);

  /// Decides after an attempt ended in `outcome` at `now`. A "retry" decision has already spent
  /// one retry from the budget and counted the next attempt.
  [[nodiscard]] retry_decision decide(const attempt_outcome& outcome, clock::time_point now,
                                      random_source& random);

  /// When the current attempt must end: the per-try timeout, or the overall deadline if sooner.
  [[nodiscard]] clock::time_point attempt_deadline(clock::time_point attempt_start) const noexcept;

  /// The overall deadline (time_point::max() when there is none).
  [[nodiscard]] clock::time_point deadline() const noexcept { return deadline_; }

  /// Attempts started so far (1 once the first is under way).
  [[nodiscard]] std::uint32_t attempts() const noexcept { return attempts_; }

private:
  const retry_policy& policy_;
  retry_budget* budget_;
  bool idempotent_;
  bool body_replayable_;
  exponential_backoff backoff_;
  clock::time_point deadline_;
  std::uint32_t attempts_ = 1;
};

} // namespace tether::resilience
