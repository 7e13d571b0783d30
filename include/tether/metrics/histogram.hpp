#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "tether/core/clock.hpp"

namespace tether::metrics {

/// Bucket upper bounds in seconds for latencies from 100 us to 30 s.
[[nodiscard]] const std::vector<double>& latency_buckets();

/// A Prometheus histogram whose observe() takes no lock (prometheus-cpp's Histogram::Observe
/// takes a mutex, which design.md rules out on the hot path): one relaxed atomic add per bucket
/// hit and one for the sum. Reads at scrape time are not a single snapshot, which Prometheus
/// tolerates: counts only grow.
class histogram {
public:
  /// `bounds` are the upper bounds of the buckets, strictly increasing; +Inf is implied.
  explicit histogram(std::vector<double> bounds);

  /// Records one value (seconds, for durations).
  void observe(double value) noexcept;
  /// Records a duration, in seconds.
  void observe(clock::duration d) noexcept { observe(std::chrono::duration<double>(d).count()); }

  [[nodiscard]] const std::vector<double>& bounds() const noexcept { return bounds_; }
  /// Observations in each bucket, not cumulative; the last is the +Inf bucket.
  [[nodiscard]] std::vector<std::uint64_t> bucket_counts() const;
  [[nodiscard]] std::uint64_t count() const noexcept;
  [[nodiscard]] double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }

private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
  std::atomic<double> sum_{0.0};
};

} // namespace tether::metrics
