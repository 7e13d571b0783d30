#pragma once

#include <cstdint>
#include <optional>

#include "tether/core/clock.hpp"
#include "tether/core/random.hpp"
#include "tether/resilience/outcome.hpp"
#include "tether/resilience/resource_limit.hpp"
#include "tether/resilience/retry_budget.hpp"
#include "tether/resilience/retry_policy.hpp"

namespace tether::upstream {

/// The decisions between the attempts of one request, the same for the HTTP client and the
/// proxy: the retry policy and budget (resilience::retry_state), the cluster's retry threshold
/// while no budget rules, a response the policy retries at its head, and the replay of a request
/// that a kept-alive connection dropped before answering. It sends nothing and waits for
/// nothing: the caller exchanges, backs off, and asks it what next. Not thread-safe: one request
/// lives on one thread.
class attempts {
public:
  /// What a request's attempts are decided by.
  struct setup {
    const resilience::retry_policy& policy;
    /// The method, an Idempotency-Key, and whether the body is here whole to be sent again.
    resilience::request_traits traits;
    clock::time_point started;
    resilience::retry_budget* budget = nullptr; ///< none: no budget
    /// The cluster's retries in flight (Envoy's max_retries): a retrying request holds one unit
    /// for the rest of its life. Applied only while no budget rules: a budget replaces it
    /// (Envoy's rule; at 3 it would refuse retries any busy cluster needs when a host dies).
    resilience::resource_limit* retry_limit = nullptr;
  };

  /// What to do after an attempt: retry after `delay`, or give up because `reason`.
  struct decision : resilience::retry_decision {
    /// The give-up came from the retry threshold (the caller counts an overflow).
    bool over_retry_limit = false;
  };

  explicit attempts(const setup& s);
  attempts(const attempts&) = delete;
  attempts& operator=(const attempts&) = delete;

  /// When the attempt starting at `start` must end: its per-try timeout, or the overall deadline.
  [[nodiscard]] clock::time_point attempt_deadline(clock::time_point start) const noexcept {
    return retry_.attempt_deadline(start);
  }
  [[nodiscard]] clock::time_point deadline() const noexcept { return retry_.deadline(); }
  /// Attempts started so far, replays of a dropped connection not counted.
  [[nodiscard]] std::uint32_t count() const noexcept { return retry_.attempts(); }

  /// After an attempt that ended in `outcome` at `now` without a response the caller keeps (an
  /// error before any response, or a response it dropped): retry or give up.
  decision after(const resilience::attempt_outcome& outcome, clock::time_point now,
                 random_source& random);

  /// At a response's head: nullopt when this response is the answer (a success for the budget
  /// when below 500, as retry_state would tell it); else a decision: retry (the caller drops the
  /// response and goes again) or give up (the caller forwards it all the same).
  std::optional<decision> at_response(const resilience::attempt_outcome& outcome,
                                      clock::time_point now, random_source& random);

  /// After an attempt on a reused connection that failed before any byte of response: whether
  /// the request goes again on another connection to the same host, now, without counting as a
  /// retry or against the host. The connection was most likely closed by the upstream while it
  /// sat idle, so the request was not processed; but it may have been received, so only a
  /// request that may be sent twice and whose body is here whole goes again, and once (as Go's
  /// and Chromium's clients do). A POST never does.
  bool replay_after_stale(bool reused, bool response_bytes,
                          const resilience::attempt_outcome& outcome) noexcept;

private:
  resilience::retry_state retry_;
  const resilience::retry_policy& policy_;
  resilience::retry_budget* budget_;
  resilience::resource_limit* retry_limit_;
  resilience::resource_guard retry_slot_;
  bool may_resend_;
  bool body_whole_;
  bool replayed_ = false;
};

} // namespace tether::upstream
