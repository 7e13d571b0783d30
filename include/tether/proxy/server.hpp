#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "tether/metrics/registry.hpp"
#include "tether/proxy/config.hpp"

namespace tether::proxy {

/// `tether proxy` as a library object: workers (one io_context thread each, SO_REUSEPORT
/// listeners, their own upstream pools: nothing shared on the data path but atomics), and the
/// admin listener (/metrics, /ready, /clusters, /config) on a thread of its own. Tests start it
/// in-process; the `tether proxy` command wraps it with signals.
class server {
public:
  explicit server(config c);
  /// With the clock that breakers, retry budgets and outlier ejections read (tests pass a
  /// manual_clock to move a breaker from open to half-open without waiting).
  server(config c, const clock& resilience_clock);
  server(const server&) = delete;
  server& operator=(const server&) = delete;
  ~server();

  /// Binds every listener and the admin listener, then starts the threads. Nothing is left bound
  /// on failure, and start_failure() says what could not be done and where. A listener whose
  /// port another socket listens on is refused (unless its `reuse_port` shares it on purpose).
  std::error_code start();

  /// After a failed start(): what failed, with the address ("listener 'main' on
  /// 127.0.0.1:8080: Address already in use ..."); empty otherwise.
  [[nodiscard]] const std::string& start_failure() const noexcept;

  /// Graceful stop: listeners close, idle connections close, requests in flight get up to the
  /// drain timeout to finish, then everything closes. Blocks until done.
  void stop();

  /// The bound ports (a configured port 0 becomes the kernel's choice), in config order.
  [[nodiscard]] std::vector<std::uint16_t> listener_ports() const;
  [[nodiscard]] std::uint16_t admin_port() const;
  [[nodiscard]] const config& running_config() const noexcept;
  [[nodiscard]] metrics::registry& registry() noexcept;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace tether::proxy
