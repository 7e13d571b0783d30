#include "tether/core/random.hpp"

namespace tether {

std::uint64_t default_random::entropy_seed() {
  std::random_device device;
  return (static_cast<std::uint64_t>(device()) << 32U) ^ device();
}

} // namespace tether
