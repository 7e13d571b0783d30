#include "tether/metrics/histogram.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace tether::metrics {

const std::vector<double>& latency_buckets() {
  static const std::vector<double> buckets{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                           0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                           1.0,    2.5,     5.0,    10.0,  30.0};
  return buckets;
}

histogram::histogram(std::vector<double> bounds)
    : bounds_{std::move(bounds)}, counts_{std::make_unique<std::atomic<std::uint64_t>[]>(
                                      bounds_.size() + 1)} {
  if (!std::all_of(bounds_.begin(), bounds_.end(), [](double b) { return std::isfinite(b); })) {
    throw std::invalid_argument("histogram bucket bounds must be finite (+Inf is implied)");
  }
  if (!std::is_sorted(bounds_.begin(), bounds_.end()) ||
      std::adjacent_find(bounds_.begin(), bounds_.end()) != bounds_.end()) {
    throw std::invalid_argument("histogram bucket bounds must be strictly increasing");
  }
}

void histogram::observe(double value) noexcept {
  if (std::isnan(value)) {
    return; // would poison the sum forever
  }
  // Bucket i holds values in (bounds[i-1], bounds[i]]: Prometheus buckets are "less or equal".
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), value);
  counts_[static_cast<std::size_t>(it - bounds_.begin())].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<std::uint64_t> histogram::bucket_counts() const {
  std::vector<std::uint64_t> out(bounds_.size() + 1);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = counts_[i].load(std::memory_order_relaxed);
  }
  return out;
}

std::uint64_t histogram::count() const noexcept {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
  }
  return total;
}

} // namespace tether::metrics
