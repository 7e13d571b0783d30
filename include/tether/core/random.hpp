#pragma once

#include <cstdint>
#include <random>

#include "tether/core/clock.hpp"

namespace tether {

/// A source of uniformly distributed random bits. Every rule that draws at random (jitter) takes
/// one, so tests can seed it or script its draws.
class random_source {
public:
  random_source() = default;
  random_source(const random_source&) = delete;
  random_source& operator=(const random_source&) = delete;
  virtual ~random_source() = default;

  /// A value uniformly distributed over all 64-bit integers.
  [[nodiscard]] virtual std::uint64_t next() noexcept = 0;
};

/// std::mt19937_64 as a random_source. Not thread-safe: give each thread or owner its own.
class default_random final : public random_source {
public:
  explicit default_random(std::uint64_t seed) noexcept : engine_{seed} {}

  /// Seeded from std::random_device, for production use.
  [[nodiscard]] static std::uint64_t entropy_seed();

  [[nodiscard]] std::uint64_t next() noexcept override { return engine_(); }

private:
  std::mt19937_64 engine_;
};

/// A double uniformly distributed in [0, 1), from the top 53 bits of one draw.
[[nodiscard]] inline double uniform_unit(random_source& random) noexcept {
  return static_cast<double>(random.next() >> 11U) * 0x1.0p-53;
}

/// A duration uniformly distributed in [low, high); `low` when the range is empty.
[[nodiscard]] inline clock::duration uniform_duration(random_source& random, clock::duration low,
                                                      clock::duration high) noexcept {
  if (high <= low) {
    return low;
  }
  const auto span = static_cast<double>((high - low).count());
  return low + clock::duration{static_cast<clock::duration::rep>(span * uniform_unit(random))};
}

} // namespace tether
