#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tether::upstream {

/// The hosts a request has tried: a bit each, with no allocation for up to 64 hosts.
class tried_hosts {
public:
  explicit tried_hosts(std::size_t hosts) {
    if (hosts > 64) {
      more_.resize(hosts);
    }
  }
  [[nodiscard]] bool has(std::size_t i) const {
    return i < 64 ? ((bits_ >> i) & 1U) != 0 : more_[i];
  }
  void add(std::size_t i) {
    if (i < 64) {
      bits_ |= std::uint64_t{1} << i;
    } else {
      more_[i] = true;
    }
  }
  [[nodiscard]] bool empty() const {
    return bits_ == 0 && std::none_of(more_.begin(), more_.end(), [](bool b) { return b; });
  }

private:
  std::uint64_t bits_ = 0;
  std::vector<bool> more_; // hosts 64 and up, when there are that many
};

} // namespace tether::upstream
