#pragma once

#include <atomic>
#include <chrono>

namespace tether {

/// A source of monotonic time. Every rule that depends on time takes one, so tests drive time by
/// hand (manual_clock) instead of sleeping.
class clock {
public:
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<std::chrono::steady_clock, duration>;

  clock() = default;
  clock(const clock&) = delete;
  clock& operator=(const clock&) = delete;
  virtual ~clock() = default;

  /// The current time. Never goes backwards.
  [[nodiscard]] virtual time_point now() const noexcept = 0;
};

/// The process's monotonic clock (std::chrono::steady_clock).
class monotonic_clock final : public clock {
public:
  [[nodiscard]] time_point now() const noexcept override {
    return std::chrono::time_point_cast<duration>(std::chrono::steady_clock::now());
  }

  /// A process-wide instance for callers that do not inject a clock of their own.
  static monotonic_clock& instance() noexcept;
};

/// The kernel's coarse monotonic clock (CLOCK_MONOTONIC_COARSE): a few nanoseconds to read, at
/// the resolution of the scheduler tick (1 to 4 ms). For bookkeeping measured in seconds, such as
/// a pool's idle timeouts and lifetimes, read on every acquire and release. Same epoch as
/// monotonic_clock, so the two may be compared.
class coarse_monotonic_clock final : public clock {
public:
  [[nodiscard]] time_point now() const noexcept override;

  /// A process-wide instance.
  static coarse_monotonic_clock& instance() noexcept;
};

/// A clock that moves only when told to. Thread-safe: tests with several threads may share one.
class manual_clock final : public clock {
public:
  /// Starts an hour past the epoch, so a default-constructed time_point is clearly "long ago".
  explicit manual_clock(time_point start = time_point{std::chrono::hours{1}}) noexcept
      : ns_{start.time_since_epoch().count()} {}

  [[nodiscard]] time_point now() const noexcept override {
    return time_point{duration{ns_.load(std::memory_order_acquire)}};
  }

  /// Moves time forward by `d` (which must not be negative).
  void advance(duration d) noexcept { ns_.fetch_add(d.count(), std::memory_order_acq_rel); }

private:
  std::atomic<duration::rep> ns_;
};

} // namespace tether
