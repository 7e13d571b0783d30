#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "tether/core/clock.hpp"

namespace tether::resilience {

/// How one attempt at an upstream ended, in the terms retry policies, breakers and outlier
/// detection decide with.
enum class attempt_result : std::uint8_t {
  success,         ///< a response that is not a failure (any status below 500 unless listed)
  connect_failure, ///< the connection could not be made (timeout, unreachable); nothing was sent
  refused,         ///< the upstream refused the connection (ECONNREFUSED); nothing was sent
  reset,           ///< the connection was reset or closed before a response
  timeout,         ///< the per-try timeout passed without a response
  http_status,     ///< a response whose status is in `status` (a 5xx, or a listed code)
};

/// The outcome of one attempt.
struct attempt_outcome {
  attempt_result result = attempt_result::success;
  int status = 0;                               ///< the HTTP status, when there was a response
  std::optional<clock::duration> retry_after{}; ///< the response's Retry-After, if any

  /// An outcome from a response's status: 2xx-4xx are successes as far as the connection goes.
  [[nodiscard]] static attempt_outcome
  from_status(int status, std::optional<clock::duration> retry_after = std::nullopt) noexcept {
    return {attempt_result::http_status, status, retry_after};
  }

  /// True when the upstream never received the request (so any method may be sent again).
  [[nodiscard]] bool request_not_sent() const noexcept {
    return result == attempt_result::connect_failure || result == attempt_result::refused;
  }

  /// True for connect failures, resets and timeouts: errors seen before any response.
  [[nodiscard]] bool locally_originated() const noexcept {
    return result != attempt_result::success && result != attempt_result::http_status;
  }

  /// True for a 5xx response, and for locally originated errors (which a proxy answers 502-504).
  [[nodiscard]] bool is_5xx() const noexcept {
    return locally_originated() || (result == attempt_result::http_status && status >= 500);
  }

  /// True for 502, 503, 504, and for locally originated errors.
  [[nodiscard]] bool is_gateway_error() const noexcept {
    return locally_originated() ||
           (result == attempt_result::http_status && status >= 502 && status <= 504);
  }
};

/// Which outcomes a circuit breaker records as failures of the host (resilience4j's
/// recordResult). A 500 is most often about the request (a bug its input hits), not the host: a
/// breaker that counts it lets one client's requests to one broken URL take a healthy host away
/// from everyone. So the default counts only what says the host itself is in trouble.
enum class breaker_failures : std::uint8_t {
  gateway_errors, ///< connect failures, resets, timeouts, 502, 503, 504 (the default)
  all_5xx,        ///< those and every other 5xx, 500 included
};

/// Whether `outcome` is a failure under `rule`.
[[nodiscard]] inline bool is_breaker_failure(const attempt_outcome& outcome,
                                             breaker_failures rule) noexcept {
  return rule == breaker_failures::all_5xx ? outcome.is_5xx() : outcome.is_gateway_error();
}

/// A short lower-case name of the result ("connect_failure", ...), for logs and metric labels.
[[nodiscard]] std::string_view to_string(attempt_result result) noexcept;

} // namespace tether::resilience
