#pragma once
// The proxy's process-wide parts: its workers, the admin listener and thread, and the tasks that
// run there (health checks, DNS lookups, outlier sweeps, the access log's flush).

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "tether/core/random.hpp"
#include "tether/http/client.hpp"
#include "tether/http/server.hpp"
#include "tether/net/listener.hpp"
#include "tether/proxy/server.hpp"

#include "shared_state.hpp"
#include "worker.hpp"

namespace tether::proxy {

struct server::impl {
  impl(config c, const clock& resilience_clock) {
    shared.cfg = std::move(c);
    shared.resilience_clock = &resilience_clock;
  }
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;
  ~impl() {
    // Each worker's pools go before its io_context, which they were made on.
    for (auto& c : shared.clusters) {
      for (auto& h : c.upstream->hosts) {
        h->pools.clear();
      }
    }
  }

  detail::shared_state shared;
  std::vector<std::unique_ptr<detail::worker>> workers;
  std::vector<std::uint16_t> ports;
  asio::io_context admin_io{1};
  std::shared_ptr<asio::executor_work_guard<asio::io_context::executor_type>> admin_work;
  std::shared_ptr<http::small_server> admin;
  std::thread admin_thread;
  std::atomic<bool> started{false}; // read by the admin thread
  std::string failure;              // why start() failed

  // Health checks and outlier sweeps run on the admin thread; their timers, to stop them.
  std::vector<std::unique_ptr<asio::steady_timer>> timers;
  std::vector<std::shared_ptr<http::client>> checkers;
  default_random random{default_random::entropy_seed()};

  void register_metrics();            // the series, and the clusters (build_clusters)
  void build_clusters();              // each through the upstream layer, with its series
  void build_listeners();             // their TLS contexts, with their series
  void open_pools(detail::worker& w); // its pool at every host
  std::error_code bind_listeners();   // every listener on every worker
  void unbind();
  http::server_response admin_request(const http::server_request& r);
  void start_admin_tasks(); // health checks, DNS lookups, outlier sweeps
  void set_health(std::size_t c, std::size_t e, bool healthy);
  net::accept_hooks accept_hooks(const asio::ip::tcp::acceptor& acceptor);
};

namespace detail {

/// Active health checks of cluster `c`'s host `e` (health_checker.cpp).
asio::awaitable<void> health_loop(server::impl* s, std::size_t c, std::size_t e,
                                  asio::steady_timer* timer, std::shared_ptr<http::client> client);

/// Lookups of cluster `c`'s host `e`, given by name, every resolve_interval (dns_refresher.cpp).
asio::awaitable<void> resolve_loop(server::impl* s, std::size_t c, std::size_t e,
                                   asio::steady_timer* timer);

} // namespace detail

} // namespace tether::proxy
