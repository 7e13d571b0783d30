#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <source_location>
#include <string>
#include <string_view>
#include <system_error>

#include "tether/core/clock.hpp"
#include "tether/resilience/backoff.hpp"

namespace tether::pool {

using namespace std::chrono_literals;

/// Settings of a connection_pool. Defaults are HikariCP's.
struct pool_options {
  std::size_t max_size = 10;             ///< connections in all: idle, leased and connecting
  std::optional<std::size_t> min_idle{}; ///< idle connections kept ready; unset: max_size
  clock::duration acquire_timeout = 30s; ///< how long async_acquire waits by default
  clock::duration idle_timeout =
      10min; ///< idle connections above min_idle close after it; 0: never
  clock::duration max_lifetime = 30min;     ///< each connection up to 2.5 % shorter; 0: forever
  clock::duration keepalive_interval = 0s;  ///< probe connections idle this long; 0: off
  bool validate_on_borrow = false;          ///< validate (the connector's ping) before hand-out
  clock::duration leak_threshold = 0s;      ///< report leases held longer; 0: off
  clock::duration drain_timeout = 30s;      ///< how long close() lets leases come home
  clock::duration housekeeping_period = 1s; ///< how often idle, lifetime and leaks are checked
  resilience::grpc_backoff_options connect_backoff{}; ///< reconnecting to a failing host

  /// min_idle as it applies: never above max_size.
  [[nodiscard]] std::size_t effective_min_idle() const noexcept {
    return min_idle ? (*min_idle < max_size ? *min_idle : max_size) : max_size;
  }

  /// Throws std::invalid_argument naming the field when a value is out of range.
  void validate() const;
};

/// Why the pool closed a connection.
enum class close_reason : std::uint8_t {
  idle_timeout,      ///< idle longer than idle_timeout, above min_idle
  max_lifetime,      ///< older than its lifetime
  broken,            ///< its lease marked it broken
  not_usable,        ///< the cheap check on borrow found the peer gone
  validation_failed, ///< the connector's validation on borrow failed
  keepalive_failed,  ///< a keepalive probe failed
  pool_closed,       ///< the pool closed
  not_reusable,      ///< it came back in a state it may not be reused in (the connector said so)
  evicted,           ///< evict_all(): its peer was taken out of service (failed health checks)
  reset_failed,      ///< the connector's reset on return failed (a rollback or reset query)
  shed,              ///< idle, closed so that a request waiting at a shared limit gets its unit
  retired,           ///< retire(): its peer left the configuration, nothing is kept idle
  detached,          ///< its lease took the connection out of the pool (a proxy's tunnel)
};
/// How many close_reason values there are (for arrays indexed by them).
inline constexpr std::size_t close_reason_count = 13;

/// A short lower-case name ("idle_timeout", ...), for logs and metric labels.
[[nodiscard]] std::string_view to_string(close_reason reason) noexcept;

/// Counts of a pool at one moment. Readable from any thread.
struct pool_stats {
  std::size_t total = 0; ///< idle + active (leased or being probed)
  std::size_t idle = 0;
  std::size_t active = 0;
  std::size_t pending = 0;    ///< acquirers waiting
  std::size_t connecting = 0; ///< connections being opened
  std::size_t max = 0;
  std::size_t min_idle = 0;
};

/// What a pool reports as it works: metrics and logs hook in here, so the pool's logic holds no
/// metrics code. Called on the pool's executor; keep it quick.
class pool_observer {
public:
  pool_observer() = default;
  pool_observer(const pool_observer&) = delete;
  pool_observer& operator=(const pool_observer&) = delete;
  virtual ~pool_observer() = default;

  /// A lease was handed out after waiting `waited` (0 when a connection was idle).
  virtual void on_acquired(clock::duration /*waited*/) {}
  /// An acquirer gave up after the acquire timeout.
  virtual void on_acquire_timeout() {}
  /// A lease came back after being held for `held`.
  virtual void on_released(clock::duration /*held*/) {}
  /// A connection was opened in `took`.
  virtual void on_connected(clock::duration /*took*/) {}
  /// Opening a connection failed.
  virtual void on_connect_failed(std::error_code /*cause*/) {}
  /// An acquire was answered at once with the last connect failure, `cause`: the host is
  /// failing, the pool backs off from it and has no connection to give (nothing was dialled).
  virtual void on_acquire_failed_fast(std::error_code /*cause*/) {}
  /// The pool closed a connection.
  virtual void on_closed(close_reason /*reason*/) {}
  /// A lease has been held longer than leak_threshold (reported once per lease).
  virtual void on_leak(const std::source_location& /*acquired_at*/, clock::duration /*held*/) {}
  /// A lease reported as a leak came back.
  virtual void on_leak_returned(const std::source_location& /*acquired_at*/,
                                clock::duration /*held*/) {}
};

/// Writes leak reports and connect failures to stderr, one line each.
class logging_pool_observer : public pool_observer {
public:
  explicit logging_pool_observer(std::string pool_name) : name_{std::move(pool_name)} {}
  void on_connect_failed(std::error_code cause) override;
  void on_leak(const std::source_location& acquired_at, clock::duration held) override;
  void on_leak_returned(const std::source_location& acquired_at, clock::duration held) override;

private:
  std::string name_;
};

} // namespace tether::pool
