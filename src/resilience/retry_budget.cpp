#include "tether/resilience/retry_budget.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace tether::resilience {
namespace {

// Finagle's scale: a deposit is 1000 units so that 1 / percent_can_retry stays precise.
constexpr std::int64_t deposit_scale = 1000;

std::size_t slot(std::int64_t slice) noexcept {
  return static_cast<std::size_t>(slice % static_cast<std::int64_t>(windowed_retry_budget::slices));
}

} // namespace

void windowed_retry_budget_options::validate() const {
  if (ttl < 1s || ttl > 60s) {
    throw std::invalid_argument("retry budget ttl must be between 1s and 60s");
  }
  if (!(percent_can_retry == 0.0 || (percent_can_retry >= 0.001 && percent_can_retry <= 10.0))) {
    throw std::invalid_argument(
        "retry budget percent_can_retry must be 0 or between 0.001 and 10 (0.2 means 20 %)");
  }
}

windowed_retry_budget::windowed_retry_budget(const windowed_retry_budget_options& options,
                                             const clock& clock)
    : clock_{(options.validate(), clock)},
      // With percent_can_retry 0 only the reserve can be spent, so deposits are worth nothing
      // and a retry costs one unit (as Finagle).
      deposit_{options.percent_can_retry == 0.0 ? 0 : deposit_scale},
      withdrawal_{options.percent_can_retry == 0.0
                      ? 1
                      : static_cast<std::int64_t>(static_cast<double>(deposit_scale) /
                                                  options.percent_can_retry)},
      reserve_{static_cast<std::int64_t>(options.min_retries_per_sec) *
               std::chrono::duration_cast<std::chrono::seconds>(options.ttl).count() * withdrawal_},
      slice_width_{options.ttl / static_cast<clock::duration::rep>(slices)} {
  current_slice_ = clock_.now().time_since_epoch() / slice_width_;
}

void windowed_retry_budget::roll(clock::time_point now) const noexcept {
  const std::int64_t slice = now.time_since_epoch() / slice_width_;
  const std::int64_t gap = slice - current_slice_;
  if (gap <= 0) {
    return;
  }
  const std::int64_t expired = std::min<std::int64_t>(gap, slices);
  for (std::int64_t i = 1; i <= expired; ++i) {
    auto& cell = window_[slot(current_slice_ + i)];
    window_sum_ -= cell;
    cell = 0;
  }
  current_slice_ = slice;
}

std::int64_t windowed_retry_budget::balance_locked(clock::time_point now) const noexcept {
  roll(now);
  return window_sum_ + reserve_;
}

void windowed_retry_budget::on_request() noexcept {
  const auto now = clock_.now();
  const std::lock_guard lock{mutex_};
  roll(now);
  window_[slot(current_slice_)] += deposit_;
  window_sum_ += deposit_;
}

bool windowed_retry_budget::try_withdraw() noexcept {
  const auto now = clock_.now();
  const std::lock_guard lock{mutex_};
  if (balance_locked(now) < withdrawal_) {
    return false;
  }
  window_[slot(current_slice_)] -= withdrawal_;
  window_sum_ -= withdrawal_;
  return true;
}

std::int64_t windowed_retry_budget::remaining() const noexcept {
  const auto now = clock_.now();
  const std::lock_guard lock{mutex_};
  return std::max<std::int64_t>(0, balance_locked(now) / withdrawal_);
}

void throttling_retry_budget_options::validate() const {
  if (max_tokens == 0 || max_tokens > 1000) {
    throw std::invalid_argument("retry throttling max_tokens must be in (0, 1000]");
  }
  if (!(token_ratio > 0.0 && token_ratio <= 1.0)) {
    throw std::invalid_argument("retry throttling token_ratio must be in (0, 1]");
  }
}

throttling_retry_budget::throttling_retry_budget(const throttling_retry_budget_options& options)
    : max_milli_{(options.validate(), static_cast<std::int64_t>(options.max_tokens) * 1000)},
      // gRPC keeps three decimals of token_ratio; so do we, by counting thousandths.
      ratio_milli_{static_cast<std::int64_t>(std::lround(options.token_ratio * 1000.0))},
      milli_tokens_{max_milli_} {}

void throttling_retry_budget::on_result(bool success) noexcept {
  std::int64_t current = milli_tokens_.load(std::memory_order_relaxed);
  std::int64_t next = 0;
  do {
    next = success ? std::min(max_milli_, current + ratio_milli_)
                   : std::max<std::int64_t>(0, current - 1000);
    if (next == current) {
      return;
    }
  } while (!milli_tokens_.compare_exchange_weak(current, next, std::memory_order_relaxed));
}

bool throttling_retry_budget::try_withdraw() noexcept {
  // gRPC spends nothing here: the failure that led to the retry already took its token.
  return milli_tokens_.load(std::memory_order_relaxed) * 2 > max_milli_;
}

std::int64_t throttling_retry_budget::remaining() const noexcept {
  // A retry follows the failure that prompted it, and that failure takes its token first: the
  // retries still allowed are the k >= 1 with tokens - k > max / 2, i.e. ceil(tokens - max/2) - 1.
  const std::int64_t above = milli_tokens_.load(std::memory_order_relaxed) * 2 - max_milli_;
  return above <= 0 ? 0 : (above + 1999) / 2000 - 1;
}

double throttling_retry_budget::tokens() const noexcept {
  return static_cast<double>(milli_tokens_.load(std::memory_order_relaxed)) / 1000.0;
}

} // namespace tether::resilience
