#pragma once

#include <cstdint>
#include <vector>

#include "tether/core/clock.hpp"

namespace tether::resilience {

/// Totals over a circuit breaker's sliding window.
struct window_totals {
  std::uint32_t calls = 0;
  std::uint32_t failed = 0;
  std::uint32_t slow = 0;

  /// Failed calls as a percentage of calls (0 when there are none).
  [[nodiscard]] float failure_rate() const noexcept {
    return calls == 0 ? 0.0F : static_cast<float>(failed) * 100.0F / static_cast<float>(calls);
  }
  /// Slow calls as a percentage of calls (0 when there are none).
  [[nodiscard]] float slow_call_rate() const noexcept {
    return calls == 0 ? 0.0F : static_cast<float>(slow) * 100.0F / static_cast<float>(calls);
  }
};

/// The last `size` calls. Recording is O(1): the oldest outcome leaves the totals as the new one
/// enters. Not thread-safe (the breaker guards it).
class count_window {
public:
  explicit count_window(std::uint32_t size);

  /// Records one call and returns the totals after it.
  window_totals record(bool failed, bool slow) noexcept;
  [[nodiscard]] const window_totals& totals() const noexcept { return totals_; }
  void clear() noexcept;

private:
  std::vector<std::uint8_t> ring_; // bit 0: failed, bit 1: slow, bit 2: holds a call
  std::uint32_t next_ = 0;
  window_totals totals_{};
};

/// The calls of the last `seconds` whole seconds, one bucket per second (resilience4j's
/// SlidingTimeWindowMetrics). Recording is O(1) amortised: a bucket is emptied at most once per
/// second it stays in the window. Not thread-safe (the breaker guards it).
class time_window {
public:
  explicit time_window(std::uint32_t seconds);

  /// Records one call at `now` and returns the totals after it.
  window_totals record(clock::time_point now, bool failed, bool slow) noexcept;
  /// The totals as of `now` (calls older than the window dropped).
  [[nodiscard]] window_totals totals(clock::time_point now) noexcept;
  void clear() noexcept;

private:
  void roll(std::int64_t second) noexcept;

  std::vector<window_totals> buckets_; // bucket for second s is buckets_[s % size]
  std::int64_t head_second_ = 0;
  window_totals totals_{};
};

} // namespace tether::resilience
