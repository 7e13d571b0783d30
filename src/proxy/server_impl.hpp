#pragma once
// The proxy's process-wide parts: its workers, the admin listener and thread, and the tasks that
// run there (health checks, DNS lookups, outlier sweeps, the access log's flush).

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>

#include "tether/core/random.hpp"
#include "tether/http/client.hpp"
#include "tether/http/server.hpp"
#include "tether/net/fd_passing.hpp"
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
    // The workers are stopped (or never ran): a cluster let go now is deleted here, its pools
    // before the io_contexts they were made on.
    workers_running = false;
    for (auto& w : workers) {
      w->gen.reset();
    }
    shared.current.reset();
  }

  detail::shared_state shared;
  /// While the workers run, a retired cluster's pools are closed on them; after, at once.
  /// (Declared early: clusters let go while the members below are destroyed read it.)
  std::atomic<bool> workers_running{false};
  /// Held by stop() and by a reload asked from another thread: a reload never waits on an
  /// admin thread that stop() has ended.
  std::mutex lifecycle;
  std::vector<std::unique_ptr<detail::worker>> workers;
  std::vector<std::uint16_t> ports; // per listener of the running config (under current_lock)
  // A take-over in progress (admin thread). Declared before admin_io: a hand_over coroutine
  // destroyed with it resets these on its way out.
  bool handing_over = false;                                     // one take-over at a time
  asio::posix::stream_descriptor* handover_connection = nullptr; // cancelled by a stop
  asio::io_context admin_io{1};
  std::shared_ptr<asio::executor_work_guard<asio::io_context::executor_type>> admin_work;
  std::shared_ptr<http::small_server> admin;
  std::thread admin_thread;
  std::atomic<bool> started{false}; // read by the admin thread
  std::string failure;              // why start() failed

  // The access log's flush runs on the admin thread; its timer, to stop it. (Each cluster keeps
  // the timers of its own tasks.)
  std::vector<std::unique_ptr<asio::steady_timer>> timers;
  default_random random{default_random::entropy_seed()};

  /// Where a reload reads the config from (the command's file, say); none: reload refused.
  std::function<load_result()> source;
  // Reloads by result, and the running config's hash and load time (admin thread).
  std::array<prometheus::Counter*, 2> reload_results{}; // success, failure
  std::optional<metrics::callback_registration> config_info;
  std::atomic<double> loaded_at{0}; // seconds since the epoch
  /// Retired clusters that requests or tunnels still hold (each counts itself out as it goes).
  std::shared_ptr<std::atomic<std::size_t>> clusters_draining =
      std::make_shared<std::atomic<std::size_t>>(0);

  // Upgrades (upgrade.cpp). The old process: its listening sockets as it passes them (copies:
  // the workers close their own when they stop accepting), where a new process asks for them,
  // and what its owner is told when one did.
  struct passed_socket {
    std::string kind; // "listener" or "admin"
    std::string name; // the listener's
    std::string address;
    std::uint16_t port = 0;
    net::owned_fd fd;
    /// For a listener or the admin: same kind, name and address (as addresses: "::" is
    /// "0::0"), and the same port unless `p` is 0.
    [[nodiscard]] bool matches(std::string_view k, std::string_view n, const std::string& a,
                               std::uint16_t p) const;
  };
  std::vector<passed_socket> passable;
  /// The upgrade socket, listening (admin thread; closed once handed over).
  std::unique_ptr<asio::posix::stream_descriptor> upgrade_listener;
  bool upgrade_path_ours = false; // its file is removed at stop (if still the one made)
  net::file_identity upgrade_file;
  std::atomic<bool> handed_over{false};
  std::function<void(int)> handed_over_callback;
  // The new process: what it took, and the connection to the old one until it drains.
  std::vector<passed_socket> taken;
  net::owned_fd predecessor;
  int predecessor_pid = 0;

  /// Asks the process on admin.upgrade_socket for its sockets, into `taken`.
  std::error_code take_over();
  /// Tells the old process that this one accepts now, waits for it to say it drains, then
  /// answers on admin.upgrade_socket itself.
  void finish_take_over();
  /// Answers on admin.upgrade_socket (a start without take-over: refused if a process does).
  std::error_code listen_for_upgrades();
  /// The upgrade socket's connections, one at a time (admin thread).
  asio::awaitable<void> upgrade_loop();
  asio::awaitable<void> hand_over(net::owned_fd connection);
  /// At stop (admin thread): the upgrade socket closed and removed (unless a new process
  /// answers on it now), the copies of the listening sockets closed.
  void stop_upgrades();
  /// Sockets of `taken` for listener `l`, removed from it.
  std::vector<net::owned_fd> take_listener(const listener_config& l);
  void remember_passable(std::string kind, std::string name, const std::string& address,
                         std::uint16_t port, int fd);

  void register_metrics(); // the process-wide series
  /// A TLS listener's handshake counters, by name (made once).
  tls::handshake_counters* listener_handshakes(const std::string& name);
  /// Registers the series of `g`'s TLS listeners' handshakes that have none yet (at publish).
  void watch_listeners(const detail::generation& g);
  std::map<std::string, detail::listener_tls> listener_stats; // start and admin thread
  /// A cluster, its series and its pool on every worker (stats.cpp); `tls` made already, for
  /// a cluster with `tls:`. With `previous` (whose settings `c` repeats, its endpoints aside),
  /// the cluster that takes over from it: sharing its state, keeping the endpoints that stay.
  std::shared_ptr<detail::proxy_cluster> build_cluster(const cluster_config& c,
                                                       std::shared_ptr<tls::client_context> tls,
                                                       const http::parser_limits& response_limits,
                                                       const detail::proxy_cluster* previous);
  /// The generation of `c`: per cluster, the one `kept` holds (a running cluster whose config
  /// did not change), or one built with `contexts`' TLS context, taking over from the one
  /// `from` holds when only its endpoints changed (reload.cpp makes all three).
  std::shared_ptr<const detail::generation>
  build_generation(config c, std::vector<std::shared_ptr<detail::proxy_cluster>> kept,
                   std::vector<std::shared_ptr<detail::proxy_cluster>> from,
                   std::vector<std::shared_ptr<tls::client_context>> contexts);
  /// Registers the gauges read from a cluster at scrape time (its hosts' health, breakers,
  /// limits, budget, outlier state, TLS handshakes and pools), once.
  void watch(detail::proxy_cluster& c);
  /// A cluster left out of the running generation: its gauges and admin tasks end now.
  void retire(detail::proxy_cluster& c);
  /// Per worker, the pools of the endpoints of `previous` that `next` does not hold: each
  /// worker retires its own when it takes `next` (requests in flight finish, nothing is kept
  /// idle).
  [[nodiscard]] std::vector<std::vector<std::shared_ptr<detail::upstream_pool>>>
  pools_left(const detail::generation& previous, const detail::generation& next) const;
  /// An endpoint's pools that no cluster holds any more, closed on their workers (at once
  /// when the workers are stopped).
  void close_pools(std::vector<std::shared_ptr<detail::upstream_pool>> pools);
  /// Validated whole, then swapped in on every worker (admin thread). The error, or empty.
  std::string reload(config next);
  /// The source's config, reloaded (admin thread): the errors, or none.
  std::vector<std::string> reload_from_source();
  /// Makes `g` the running generation (for /config, /clusters, the metrics); the workers get
  /// it by a post of their own.
  /// `listener_ports`, when given, replace `ports` in the same critical section.
  void publish(const std::shared_ptr<const detail::generation>& g,
               const std::vector<std::uint16_t>* listener_ports = nullptr);
  std::error_code bind_listeners(); // every listener, a socket per worker, at start
  /// One socket per worker for `l` (taken over, or bound; `port` says where), or the error.
  std::error_code listener_sockets(const listener_config& l, std::vector<net::owned_fd>& out,
                                   std::uint16_t& port);
  /// Makes sockets from listener_sockets listen (bound only until the start or reload that
  /// made them cannot fail any more; those taken over listen already).
  static std::error_code listen_all(std::vector<net::owned_fd>& fds);
  /// "cannot listen on ADDRESS:PORT (listener 'NAME'): why", and what to do about it.
  static std::string bind_failure(const listener_config& l, std::error_code ec);
  /// Spreads `fds` (from listener_sockets) over the workers (into `per_worker`, one entry per
  /// worker), a copy of each kept for an upgrade when one may come.
  using handed_sockets = std::vector<std::pair<std::string, net::owned_fd>>;
  void adopt_sockets(const listener_config& l, std::vector<net::owned_fd>& fds, std::uint16_t port,
                     std::vector<handed_sockets>& per_worker);
  /// The sockets handed to `w` become its acceptors, accepting (its thread, or before it runs).
  void start_accepting(detail::worker* w);
  void unbind();
  /// Every worker closes its acceptors and gives its idle connections drain_grace to send a
  /// request (shared.draining set first); returns when all have.
  void stop_accepting();
  http::server_response admin_request(const http::server_request& r);
  void start_admin_tasks(); // the access log's flush, each cluster's
  void start_cluster_tasks(const std::shared_ptr<detail::proxy_cluster>& c); // admin thread
  void set_health(detail::proxy_cluster& c, std::size_t e, bool healthy);
  net::accept_hooks accept_hooks(const asio::ip::tcp::acceptor& acceptor);
};

namespace detail {

/// The hash /config and tether_proxy_config_info show: of the config as /config shows it.
std::string config_hash(const config& c);

/// What says whether a cluster changed: its settings as /config shows them, and the size and
/// time of its TLS files.
std::string cluster_fingerprint(const cluster_config& c);
/// The same without its endpoints: equal when a reload changed only those.
std::string settings_fingerprint(const cluster_config& c);

/// Per cluster of `next` neither `kept` nor taking over `from` another, with `tls:`, its client
/// context; made before anything changes, so that a certificate file gone bad fails a reload
/// whole (std::invalid_argument).
std::vector<std::shared_ptr<tls::client_context>>
make_client_contexts(const config& next, const std::vector<std::shared_ptr<proxy_cluster>>& kept,
                     const std::vector<std::shared_ptr<proxy_cluster>>& from);

/// Active health checks of cluster `c`'s host `e` (health_checker.cpp).
asio::awaitable<void> health_loop(server::impl* s, std::shared_ptr<proxy_cluster> c, std::size_t e,
                                  asio::steady_timer* timer, std::shared_ptr<http::client> client);

/// Lookups of cluster `c`'s host `e`, given by name, every resolve_interval (dns_refresher.cpp).
asio::awaitable<void> resolve_loop(server::impl* s, std::shared_ptr<proxy_cluster> c, std::size_t e,
                                   asio::steady_timer* timer);

} // namespace detail

} // namespace tether::proxy
