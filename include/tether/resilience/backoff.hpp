#pragma once

#include <chrono>
#include <cstdint>

#include "tether/core/clock.hpp"
#include "tether/core/random.hpp"

namespace tether::resilience {

using namespace std::chrono_literals;

/// How a delay is randomised, after the AWS Architecture Blog's "Exponential Backoff and Jitter".
enum class jitter {
  none,        ///< min(cap, base * multiplier^n)
  full,        ///< uniform in [0, min(cap, base * multiplier^n))
  equal,       ///< half of the exponential delay, plus uniform in [0, the other half)
  decorrelated ///< min(cap, uniform in [base, previous * 3)), starting from previous = base
};

/// Settings of an exponential_backoff. Defaults are Envoy's for request retries.
struct exponential_backoff_options {
  clock::duration base = 25ms;
  double multiplier = 2.0;
  clock::duration cap = 250ms;
  jitter mode = jitter::full;

  /// Throws std::invalid_argument naming the field when a value is out of range.
  void validate() const;
};

/// Delays between attempts that grow exponentially up to a cap. Holds the attempt count (and, for
/// decorrelated jitter, the previous delay), so keep one per retry sequence.
class exponential_backoff {
public:
  explicit exponential_backoff(const exponential_backoff_options& options);

  /// The delay before the next attempt. The n-th call (from 0) is bounded by
  /// base * multiplier^n (capped) except with decorrelated jitter, which grows from the previous
  /// delay instead and ignores the multiplier.
  [[nodiscard]] clock::duration next(random_source& random) noexcept;

  /// Starts the sequence over (after a success).
  void reset() noexcept;

  /// How many delays have been drawn since the start or the last reset.
  [[nodiscard]] std::uint32_t attempts() const noexcept { return attempts_; }

  [[nodiscard]] const exponential_backoff_options& options() const noexcept { return options_; }

  /// The exponential delay for draw `n`, capped and before jitter: min(cap, base * multiplier^n).
  [[nodiscard]] clock::duration ceiling(std::uint32_t n) const noexcept;

private:
  exponential_backoff_options options_;
  std::uint32_t attempts_ = 0;
  clock::duration previous_;
};

/// Settings of gRPC's connection backoff (doc/connection-backoff.md in the gRPC repository).
struct grpc_backoff_options {
  clock::duration initial = 1s;
  double multiplier = 1.6;
  double jitter = 0.2;
  clock::duration max = 120s;
  clock::duration min_connect_timeout = 20s;

  /// Throws std::invalid_argument naming the field when a value is out of range.
  void validate() const;
};

/// gRPC's connection backoff: the first delay is `initial`; each later one is the previous
/// un-jittered delay times `multiplier`, capped at `max`, then spread by +-`jitter`.
class grpc_backoff {
public:
  explicit grpc_backoff(const grpc_backoff_options& options = {});

  /// The delay before the next connection attempt.
  [[nodiscard]] clock::duration next(random_source& random) noexcept;

  /// Starts over after a successful connection.
  void reset() noexcept;

  /// How long a connection attempt may take: max(min_connect_timeout, the current delay).
  [[nodiscard]] clock::duration connect_timeout() const noexcept;

  [[nodiscard]] std::uint32_t attempts() const noexcept { return attempts_; }

  [[nodiscard]] const grpc_backoff_options& options() const noexcept { return options_; }

private:
  grpc_backoff_options options_;
  std::uint32_t attempts_ = 0;
  clock::duration current_;
};

} // namespace tether::resilience
