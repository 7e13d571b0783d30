#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "tether/core/random.hpp"

namespace tether::testing {

/// A random_source that returns the values it was given, in a loop. For driving a draw to the
/// edges of its range: 0 gives the low end, UINT64_MAX the high end.
class scripted_random final : public random_source {
public:
  explicit scripted_random(std::vector<std::uint64_t> values) : values_{std::move(values)} {}

  [[nodiscard]] std::uint64_t next() noexcept override {
    const std::uint64_t v = values_[index_];
    index_ = (index_ + 1) % values_.size();
    return v;
  }

  static constexpr std::uint64_t lowest = 0;
  static constexpr std::uint64_t highest = UINT64_MAX;

private:
  std::vector<std::uint64_t> values_;
  std::size_t index_ = 0;
};

} // namespace tether::testing
