#include "tether/resilience/sliding_window.hpp"

#include <algorithm>
#include <stdexcept>

namespace tether::resilience {
namespace {

constexpr std::uint8_t failed_bit = 1U;
constexpr std::uint8_t slow_bit = 2U;
constexpr std::uint8_t recorded_bit = 4U;

void subtract(window_totals& from, const window_totals& what) noexcept {
  from.calls -= what.calls;
  from.failed -= what.failed;
  from.slow -= what.slow;
}

} // namespace

count_window::count_window(std::uint32_t size) : ring_(size, 0) {
  if (size == 0) {
    throw std::invalid_argument("sliding window size must be at least 1");
  }
}

window_totals count_window::record(bool failed, bool slow) noexcept {
  std::uint8_t& slot = ring_[next_];
  if ((slot & recorded_bit) != 0) {
    --totals_.calls;
    totals_.failed -= (slot & failed_bit) != 0 ? 1U : 0U;
    totals_.slow -= (slot & slow_bit) != 0 ? 1U : 0U;
  }
  slot =
      static_cast<std::uint8_t>(recorded_bit | (failed ? failed_bit : 0U) | (slow ? slow_bit : 0U));
  ++totals_.calls;
  totals_.failed += failed ? 1U : 0U;
  totals_.slow += slow ? 1U : 0U;
  next_ = next_ + 1 == ring_.size() ? 0 : next_ + 1;
  return totals_;
}

void count_window::clear() noexcept {
  std::fill(ring_.begin(), ring_.end(), std::uint8_t{0});
  next_ = 0;
  totals_ = {};
}

time_window::time_window(std::uint32_t seconds) : buckets_(seconds) {
  if (seconds == 0) {
    throw std::invalid_argument("sliding window size must be at least 1 second");
  }
}

void time_window::roll(std::int64_t second) noexcept {
  if (second <= head_second_) {
    return;
  }
  const auto size = static_cast<std::int64_t>(buckets_.size());
  const std::int64_t expired = std::min(second - head_second_, size);
  for (std::int64_t i = 1; i <= expired; ++i) {
    auto& b = buckets_[static_cast<std::size_t>((head_second_ + i) % size)];
    subtract(totals_, b);
    b = {};
  }
  head_second_ = second;
}

window_totals time_window::record(clock::time_point now, bool failed, bool slow) noexcept {
  const std::int64_t second =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  roll(second);
  auto& b =
      buckets_[static_cast<std::size_t>(head_second_ % static_cast<std::int64_t>(buckets_.size()))];
  for (window_totals* t : {&b, &totals_}) {
    t->calls += 1;
    t->failed += failed ? 1U : 0U;
    t->slow += slow ? 1U : 0U;
  }
  return totals_;
}

window_totals time_window::totals(clock::time_point now) noexcept {
  roll(std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
  return totals_;
}

void time_window::clear() noexcept {
  std::fill(buckets_.begin(), buckets_.end(), window_totals{});
  totals_ = {};
}

} // namespace tether::resilience
