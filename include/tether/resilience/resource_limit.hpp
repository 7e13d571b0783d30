#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

namespace tether::resilience {

/// One of Envoy's per-cluster thresholds: a count (connections, pending requests, requests,
/// retries) that may not go past `max`. Lock-free; shared by every worker of a cluster.
class resource_limit {
public:
  explicit resource_limit(std::uint64_t max) noexcept : max_{max} {}
  resource_limit(const resource_limit&) = delete;
  resource_limit& operator=(const resource_limit&) = delete;

  /// Takes one unit if that keeps the count at or under max. Never overshoots.
  [[nodiscard]] bool try_acquire() noexcept {
    std::uint64_t current = count_.load(std::memory_order_relaxed);
    while (current < max_.load(std::memory_order_relaxed)) {
      if (count_.compare_exchange_weak(current, current + 1, std::memory_order_acq_rel)) {
        return true;
      }
    }
    return false;
  }

  /// Gives one unit back. Call exactly once for each successful try_acquire.
  void release() noexcept {
    const std::uint64_t before = count_.fetch_sub(1, std::memory_order_acq_rel);
    if (on_room_ && before >= max()) {
      on_room_();
    }
  }

  /// Called on the releasing thread when a release leaves room under a limit that was full:
  /// whoever waits for a unit may take one now (a proxy cluster's requests pending at
  /// max_connections). Must not throw. Set it before any unit is taken.
  void on_room(std::function<void()> f) { on_room_ = std::move(f); }

  /// Changes the limit (a config reload); units already held stay held.
  void set_max(std::uint64_t max) noexcept { max_.store(max, std::memory_order_relaxed); }

  [[nodiscard]] std::uint64_t max() const noexcept { return max_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t count() const noexcept {
    return count_.load(std::memory_order_relaxed);
  }
  /// How many more units may be taken now (Envoy's `remaining_*` gauge).
  [[nodiscard]] std::uint64_t remaining() const noexcept {
    const std::uint64_t m = max();
    const std::uint64_t c = count();
    return c >= m ? 0 : m - c;
  }
  /// True when the limit is reached (Envoy's `cx_open`, `rq_open`... gauges).
  [[nodiscard]] bool open() const noexcept { return remaining() == 0; }

private:
  std::atomic<std::uint64_t> max_;
  std::atomic<std::uint64_t> count_{0};
  std::function<void()> on_room_;
};

/// Holds one unit of a resource_limit for as long as it lives.
class resource_guard {
public:
  resource_guard() noexcept = default;
  /// Tries to take a unit; check with `operator bool`.
  explicit resource_guard(resource_limit& limit) noexcept
      : limit_{limit.try_acquire() ? &limit : nullptr} {}
  resource_guard(resource_guard&& other) noexcept : limit_{other.limit_} { other.limit_ = nullptr; }
  resource_guard& operator=(resource_guard&& other) noexcept {
    if (this != &other) {
      release();
      limit_ = other.limit_;
      other.limit_ = nullptr;
    }
    return *this;
  }
  resource_guard(const resource_guard&) = delete;
  resource_guard& operator=(const resource_guard&) = delete;
  ~resource_guard() { release(); }

  explicit operator bool() const noexcept { return limit_ != nullptr; }

  /// Gives the unit back early.
  void release() noexcept {
    if (limit_ != nullptr) {
      limit_->release();
      limit_ = nullptr;
    }
  }

private:
  resource_limit* limit_ = nullptr;
};

/// Settings of cluster_limits. Defaults are Envoy's.
struct cluster_limits_options {
  std::uint64_t max_connections = 1024;
  std::uint64_t max_pending_requests = 1024;
  std::uint64_t max_requests = 1024;
  std::uint64_t max_retries = 3;
};

/// Envoy's four per-cluster circuit-breaking thresholds.
struct cluster_limits {
  explicit cluster_limits(const cluster_limits_options& options = {}) noexcept
      : connections{options.max_connections}, pending_requests{options.max_pending_requests},
        requests{options.max_requests}, retries{options.max_retries} {}

  resource_limit connections;
  resource_limit pending_requests;
  resource_limit requests;
  resource_limit retries;
};

} // namespace tether::resilience
