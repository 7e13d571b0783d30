#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "tether/metrics/registry.hpp"
#include "tether/proxy/config.hpp"

namespace tether::proxy {

/// `tether proxy` as a library object: workers (one io_context thread each, SO_REUSEPORT
/// listeners, their own upstream pools: nothing shared on the data path but atomics), and the
/// admin listener (/metrics, /ready, /clusters, /config, POST /reload) on a thread of its own.
/// Tests start it in-process; the `tether proxy` command wraps it with signals.
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

  /// How start() gets its listening sockets.
  struct start_options {
    /// Take them over from the tether process answering on admin.upgrade_socket, for an upgrade
    /// that refuses no connection: its sockets, with the connections queued in them, are passed
    /// here (SCM_RIGHTS); once this one accepts on them, that one stops accepting and drains.
    /// A listener is taken when its name and address match (and its port, unless this config
    /// says 0), the admin listener when its address and port do; the rest is bound anew. A
    /// start that fails leaves the old process as it was.
    bool take_over = false;
  };
  std::error_code start(const start_options& options);

  /// Called once, on the admin thread, when a new process has taken the listeners over (see
  /// start_options::take_over): this one accepts no more connections and drains as stop()
  /// does (a kept-alive client's next answer says `Connection: close`, an idle connection
  /// closes); its owner calls stop() (from another thread) to wait for the drain and end. Set
  /// it before start().
  void on_handed_over(std::function<void(int new_pid)> f);

  /// After a failed start(): what failed, with the address ("listener 'main' on
  /// 127.0.0.1:8080: Address already in use ..."); empty otherwise.
  [[nodiscard]] const std::string& start_failure() const noexcept;

  /// Graceful stop: listeners close, idle connections close, requests in flight get up to the
  /// drain timeout to finish, then everything closes. Blocks until done.
  void stop();

  /// The bound ports (a configured port 0 becomes the kernel's choice), in config order.
  /// Where reload() and the admin listener's POST /reload read the config from (the command's
  /// file, say). Set it before start().
  void set_config_source(std::function<load_result()> source);

  /// Hot reload: the source's config, checked whole, then swapped in on every worker at once;
  /// routes, clusters, downstream settings and drain_timeout change, nothing else (a change to
  /// listeners, workers, admin or log is refused: those need a restart). A cluster whose
  /// settings did not change keeps its pooled connections, breakers, health and budget; one
  /// changed or removed serves the requests it has and then closes. Returns the errors (each
  /// "file:line:column: what"), empty when applied; on error nothing changed. Thread-safe, but
  /// not concurrent with stop().
  std::vector<std::string> reload();
  /// The same with a config already loaded.
  std::vector<std::string> reload(config next);

  [[nodiscard]] std::vector<std::uint16_t> listener_ports() const;
  [[nodiscard]] std::uint16_t admin_port() const;
  /// The config running now (a copy: a reload may replace it at any time).
  [[nodiscard]] config running_config() const;
  [[nodiscard]] metrics::registry& registry() noexcept;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace tether::proxy
