#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <system_error>
#include <vector>

#include "tether/metrics/registry.hpp"
#include "tether/proxy/config.hpp"

namespace tether::proxy {

/// `tether proxy` as a library object: workers (one io_context thread each, SO_REUSEPORT
/// listeners, their own upstream pools: nothing shared on the data path but atomics), and the
/// admin listener (/metrics, /ready, /clusters, /config) on a thread of its own. Tests start it
/// in-process; `run()` wraps it with signals.
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
  /// on failure; the error says which address could not be bound.
  std::error_code start();

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

/// What run() does besides the proxy.
struct run_options {
  /// Start the built-in demo upstreams (127.0.0.1:8081 and :8082) first: the default config's.
  bool demo_upstreams = false;
};

/// Runs the proxy until SIGINT or SIGTERM, then drains and returns 0; 1 when it cannot start
/// (the reason goes to `err`). Prints where to send requests and where the metrics are.
int run(const config& c, std::ostream& out, std::ostream& err, const run_options& options = {});

} // namespace tether::proxy
