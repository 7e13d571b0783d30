#pragma once
// What a proxy's workers share: the config, the counters and metric handles per cluster and
// host (atomics only on the data path), the process and access logs.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>
#include <prometheus/counter.h>
#include <spdlog/async.h>
#include <spdlog/spdlog.h>

#include "tether/core/clock.hpp"
#include "tether/http/client.hpp"
#include "tether/http/connection.hpp"
#include "tether/metrics/histogram.hpp"
#include "tether/metrics/registry.hpp"
#include "tether/metrics/resilience_metrics.hpp"
#include "tether/net/address_cache.hpp"
#include "tether/pool/connection_pool.hpp"
#include "tether/pool/pool_metrics.hpp"
#include "tether/proxy/config.hpp"
#include "tether/resilience/circuit_breaker.hpp"
#include "tether/resilience/outlier_detector.hpp"
#include "tether/resilience/resource_limit.hpp"
#include "tether/resilience/retry_budget.hpp"
#include "tether/tls/context.hpp"
#include "tether/tls/handshake.hpp"
#include "tether/upstream/cluster.hpp"

namespace tether::proxy::detail {

inline constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
using steady = std::chrono::steady_clock;
using upstream_cluster = upstream::cluster<http::http_connector>;
using upstream_host = upstream::host<http::http_connector>;
using upstream_pool = upstream_host::pool_type;
using upstream::resource;

enum class response_class : std::uint8_t { c1xx, c2xx, c3xx, c4xx, c5xx, count_ };
inline constexpr std::array<const char*, 5> class_names = {"1xx", "2xx", "3xx", "4xx", "5xx"};

// Why the proxy answered itself (or gave up on a request).
enum class cause : std::uint8_t {
  no_route,
  bad_request,
  header_timeout,
  connect_failure,
  pool_timeout,
  upstream_reset,
  upstream_timeout,
  bad_response,
  downstream_reset,
  overflow,
  circuit_open,
  count_
};
inline constexpr std::array<const char*, 11> cause_names = {
    "no_route",         "bad_request",    "header_timeout",   "connect_failure",
    "pool_timeout",     "upstream_reset", "upstream_timeout", "bad_response",
    "downstream_reset", "overflow",       "circuit_open"};

/// The pools that take part in a cluster's max_connections (stats.cpp, share_connection_limit),
/// held weakly, across the reloads that keep the cluster's limits: the admin thread adds to
/// it, any worker reads it (off the fast path: only while the cluster is at its limit).
class limit_pools {
public:
  void add(const std::shared_ptr<upstream_pool>& p) {
    const std::lock_guard hold{lock_};
    std::erase_if(pools_, [](const auto& weak) { return weak.expired(); });
    pools_.push_back(p);
  }
  /// Those still open, held while the caller looks at them (called without the lock held:
  /// what it calls on them may release a connection, which may call back here).
  [[nodiscard]] std::vector<std::shared_ptr<upstream_pool>> live() const {
    std::vector<std::shared_ptr<upstream_pool>> out;
    const std::lock_guard hold{lock_};
    for (const auto& weak : pools_) {
      if (auto p = weak.lock()) {
        out.push_back(std::move(p));
      }
    }
    return out;
  }

private:
  mutable std::mutex lock_;
  std::vector<std::weak_ptr<upstream_pool>> pools_;
};

/// What the proxy keeps of one endpoint beyond its upstream host, shared by every cluster that
/// holds the host: a reload that changes only a cluster's endpoints keeps the others as they are.
/// When the last cluster holding it goes, `close` closes the host's pools on their workers.
struct endpoint_state {
  std::shared_ptr<upstream_host> host;
  std::vector<std::shared_ptr<pool::pool_metrics>> observers; // its pools' gauges, per worker
  std::function<void(std::vector<std::shared_ptr<upstream_pool>>)> close;
  // The admin thread's: whether its pools were started, and its health checks' streaks and
  // schedule (a cluster that takes over goes on from them, not from scratch).
  bool started = false;
  std::uint32_t check_passes = 0;
  std::uint32_t check_failures = 0;
  steady::time_point next_check{}; // the epoch: at once
  endpoint_state() = default;
  endpoint_state(const endpoint_state&) = delete;
  endpoint_state& operator=(const endpoint_state&) = delete;
  ~endpoint_state() {
    if (close && host) {
      close(std::exchange(host->pools, {})); // no cluster uses them any more
    }
  }
  /// Starts the pools (prefill, housekeeping) the first time a running generation has them.
  void start() {
    if (!std::exchange(started, true)) {
      for (auto& p : host->pools) {
        p->start();
      }
    }
  }
};

/// A cluster as the proxy keeps it: the upstream layer's cluster (its hosts with their pools,
/// one per worker, breakers and outlier state; the balancers, thresholds and budget) and the
/// proxy's counters of the responses its clients got. A reload that leaves a cluster's config as
/// it was carries the same object into the next generation, with all that state; one that
/// changes or removes it retires it (server::impl::retire): its gauges go at once, its admin
/// tasks end, and when no request holds it any more it is deleted, with the pools of its
/// endpoints that no other cluster holds. A reload that changes only a cluster's endpoints
/// builds its successor on the same limits, budget and outlier detection, and the endpoints
/// that stay keep their pools, breakers, outlier and health state (upstream::cluster's
/// adopt_host).
struct proxy_cluster {
  cluster_config cfg;
  std::string fingerprint; // its config as /config shows it: equal means unchanged
  std::string settings;    // the same without its endpoints, as they were when it was built
  std::unique_ptr<upstream_cluster> upstream;
  std::array<prometheus::Counter*, 5> responses{};
  metrics::histogram* duration = nullptr;
  /// With the cluster's `tls:`: the context every endpoint's connections are made with, and
  /// their handshakes (each host keeps its own sessions, in its pools' connectors).
  std::shared_ptr<tls::client_context> tls;
  std::shared_ptr<tls::handshake_counters> handshakes; // shared with its connectors
  /// Set on the admin thread when a reload drops the cluster; its admin tasks end on seeing it.
  std::atomic<bool> retired{false};
  /// The admin thread's: health checks, DNS lookups and outlier sweeps, and the health checks'
  /// client.
  std::vector<std::unique_ptr<asio::steady_timer>> timers;
  std::shared_ptr<http::client> checker;
  /// Shared with the clusters that take over from this one (and their predecessors).
  std::shared_ptr<limit_pools> limited_pools;
  /// Per host (upstream->hosts' order): its pools' gauges and the proxy's state of it.
  std::vector<std::shared_ptr<endpoint_state>> endpoints;
  /// When outlier detection sweeps next: shared with the clusters that take over from this one,
  /// so that reloads more frequent than the interval do not put the sweep off (admin thread).
  std::shared_ptr<steady::time_point> next_sweep;
  /// Set when retired: the count of retired clusters still held, which it leaves when it goes.
  std::shared_ptr<std::atomic<std::size_t>> draining;
  /// The gauges read from this cluster at scrape time (declared last: they go first, before
  /// what they read).
  std::vector<metrics::callback_registration> callbacks;

  proxy_cluster() = default;
  proxy_cluster(const proxy_cluster&) = delete;
  proxy_cluster& operator=(const proxy_cluster&) = delete;
  ~proxy_cluster() {
    if (draining) {
      draining->fetch_sub(1, std::memory_order_relaxed);
    }
  }
};

/// One configuration as the workers run it: its routes and clusters, built whole before it is
/// swapped in (a reload either changes everything it says or nothing). Immutable once made;
/// a worker holds the newest, and each client connection the one its request began under.
struct generation {
  config cfg;
  std::vector<std::shared_ptr<proxy_cluster>> clusters; // in cfg.clusters' order
  std::vector<std::size_t> route_cluster;               // per route: its cluster's index
  std::vector<const retry_config*> route_retry; // per route: its retry policy (or the cluster's)
  /// Per listener, its TLS context (null: plain HTTP), its files read when the generation was
  /// made: a reload re-reads certificates, new connections get the new ones.
  std::vector<std::shared_ptr<tls::server_context>> listener_contexts;
  /// Per listener, its handshake counters when it has `tls:` (owned by the server, kept by
  /// name across reloads).
  std::vector<tls::handshake_counters*> listener_handshakes;
  /// Per listener, the index of its cluster for a tcp listener (npos: an HTTP listener).
  std::vector<std::size_t> listener_cluster;
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  std::string hash; // of the config as /config shows it
};

/// A listener's handshakes, when it has `tls:` (its certificates are the generation's), with
/// their series.
struct listener_tls {
  std::unique_ptr<tls::handshake_counters> handshakes;
  std::vector<metrics::callback_registration> callbacks;
};

/// What a tunnel carries: a tcp listener's connection, a CONNECT, an Upgrade.
enum class tunnel_kind : std::uint8_t { tcp, connect, upgrade, count_ };
inline constexpr std::array<const char*, 3> tunnel_kind_names = {"tcp", "connect", "upgrade"};

/// The tunnels' counters, by kind.
struct tunnel_series {
  static constexpr std::size_t kinds = static_cast<std::size_t>(tunnel_kind::count_);
  std::array<prometheus::Counter*, kinds> opened{};
  std::array<prometheus::Counter*, kinds> idle_closed{};
  std::array<prometheus::Counter*, kinds> bytes_up{};   // client to upstream
  std::array<prometheus::Counter*, kinds> bytes_down{}; // upstream to client
  std::array<std::atomic<std::int64_t>, kinds> active{};
};

/// Everything the workers share: the config, counters and metric handles. Read-only after
/// start, but for the atomics inside and `current`.
struct shared_state {
  config cfg; // as started: its listeners, workers, admin and log do not change on reload
  // Breakers, budgets and ejections count in seconds: the coarse clock (a few ns to read) does.
  const clock* resilience_clock = &coarse_monotonic_clock::instance();
  metrics::registry registry;
  /// The generation running (set by the admin thread; read under the lock by other threads).
  std::shared_ptr<const generation> current;
  mutable std::mutex current_lock;
  std::size_t worker_count = 1;
  std::array<prometheus::Counter*, static_cast<std::size_t>(cause::count_)> causes{};
  prometheus::Counter* downstream_opened = nullptr;
  std::array<prometheus::Counter*, 3> accept_failures{}; // by net::accept_failure
  std::atomic<std::int64_t> downstream_active{0};
  tunnel_series tunnels;
  std::vector<metrics::callback_registration> callbacks;
  std::atomic<bool> draining{false};
  // The process log (stderr) and the access log (a file, written by spdlog's own thread so a
  // worker only formats a line and queues it).
  std::shared_ptr<spdlog::logger> log;
  std::shared_ptr<spdlog::details::thread_pool> access_threads;
  std::shared_ptr<spdlog::logger> access;
  bool json_logs = false;
};

inline std::string json_string(std::string_view s) {
  // Bytes that are not UTF-8 (a header value may carry obs-text) are replaced, not thrown on:
  // a log line must never end a worker.
  return nlohmann::json(std::string{s})
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// One line of the process log, as text or as a JSON object's "msg" (log.format).
inline void log_event(shared_state& s, spdlog::level::level_enum level, std::string_view message) {
  if (s.log && s.log->should_log(level)) {
    s.log->log(level, "{}", s.json_logs ? json_string(message) : std::string{message});
  }
}

} // namespace tether::proxy::detail
