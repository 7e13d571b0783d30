#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>

#include "tether/core/clock.hpp"

namespace tether::resilience {

using namespace std::chrono_literals;

/// Caps retries as a share of requests, so retries cannot multiply load during an outage.
/// Shared by every worker that sends to one cluster: implementations are thread-safe.
class retry_budget {
public:
  retry_budget() = default;
  retry_budget(const retry_budget&) = delete;
  retry_budget& operator=(const retry_budget&) = delete;
  virtual ~retry_budget() = default;

  /// Called once for each request (not for its retries).
  virtual void on_request() noexcept = 0;

  /// Called with each attempt's result: `true` for success, `false` for a retriable failure.
  virtual void on_result(bool success) noexcept = 0;

  /// Asks to spend one retry. `true`: the retry may go ahead (and has been paid for).
  [[nodiscard]] virtual bool try_withdraw() noexcept = 0;

  /// Retries the budget would still allow if nothing else came in (each retry following a failed
  /// attempt); exposed as the budget's `remaining` gauge.
  [[nodiscard]] virtual std::int64_t remaining() const noexcept = 0;
};

/// Settings of windowed_retry_budget. Defaults are Finagle's.
struct windowed_retry_budget_options {
  clock::duration ttl = 10s;              ///< how long a deposit counts, in [1 s, 60 s]
  std::uint32_t min_retries_per_sec = 10; ///< retries always allowed, even without traffic
  double percent_can_retry = 0.2; ///< retries per request: 0, or in [0.001, 10] (0.2 = 20 %)

  /// Throws std::invalid_argument naming the field when a value is out of range.
  void validate() const;
};

/// Finagle's RetryBudget: each request deposits one unit, each retry withdraws
/// 1 / percent_can_retry units, deposits and withdrawals expire after `ttl`, and a reserve of
/// min_retries_per_sec * ttl retries is always there.
///
/// The window is ten slices of ttl/10, as Finagle's WindowedAdder. Its sum must be checked and
/// debited as one step, so a small mutex guards it; the critical section is a few additions
/// (see bench/resilience_bench.cpp for its cost with two threads).
class windowed_retry_budget final : public retry_budget {
public:
  windowed_retry_budget(const windowed_retry_budget_options& options, const clock& clock);

  void on_request() noexcept override;
  void on_result(bool /*success*/) noexcept override {}
  [[nodiscard]] bool try_withdraw() noexcept override;
  [[nodiscard]] std::int64_t remaining() const noexcept override;

  /// Units a request deposits and a retry withdraws (1000 and 1000 / percent_can_retry; 0 and 1
  /// when percent_can_retry is 0).
  [[nodiscard]] std::int64_t deposit_units() const noexcept { return deposit_; }
  [[nodiscard]] std::int64_t withdrawal_units() const noexcept { return withdrawal_; }

  static constexpr std::size_t slices = 10;

private:
  // Moves the window to `now`, zeroing the slices that fell out. Needs mutex_.
  void roll(clock::time_point now) const noexcept;
  [[nodiscard]] std::int64_t balance_locked(clock::time_point now) const noexcept;

  const clock& clock_;
  std::int64_t deposit_;
  std::int64_t withdrawal_;
  std::int64_t reserve_;
  clock::duration slice_width_;

  mutable std::mutex mutex_;
  mutable std::array<std::int64_t, slices> window_{};
  mutable std::int64_t window_sum_ = 0;
  mutable std::int64_t current_slice_ = 0; // absolute slice number: now / slice_width_
};

/// Settings of throttling_retry_budget (gRPC's retryThrottling).
struct throttling_retry_budget_options {
  std::uint32_t max_tokens = 10; ///< in (0, 1000]
  double token_ratio = 0.1;      ///< tokens a success adds back, in (0, 1], to 3 decimals

  /// Throws std::invalid_argument naming the field when a value is out of range.
  void validate() const;
};

/// gRPC's retry throttling: a bucket starts with max_tokens; each retriable failure takes one
/// token, each success adds token_ratio; retries are allowed while tokens > max_tokens / 2.
/// Lock-free: the count is one atomic, in thousandths of a token.
class throttling_retry_budget final : public retry_budget {
public:
  explicit throttling_retry_budget(const throttling_retry_budget_options& options = {});

  void on_request() noexcept override {}
  void on_result(bool success) noexcept override;
  [[nodiscard]] bool try_withdraw() noexcept override;
  [[nodiscard]] std::int64_t remaining() const noexcept override;

  /// The current token count (fractional).
  [[nodiscard]] double tokens() const noexcept;

private:
  std::int64_t max_milli_;
  std::int64_t ratio_milli_;
  std::atomic<std::int64_t> milli_tokens_;
};

} // namespace tether::resilience
