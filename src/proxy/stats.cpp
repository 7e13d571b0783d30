// The proxy's metric series and what they count: the process-wide ones at start, each cluster's
// when it is built (at start or by a reload), kept by the counters the workers update.
#include "server_impl.hpp"

#include <algorithm>
#include <iterator>

#include "tether/tls/tls_metrics.hpp"

namespace tether::proxy {

using detail::generation;
using detail::proxy_cluster;

namespace {

// Lets the pools of a cluster take part in its max_connections: `pools` lists them, `p` is one
// being added (before it starts).
//
// Requests pending at max_connections (upstream::detail::within_thresholds) wait in their
// worker's pool for a unit of the limit, which any worker may give back: a connection that
// closes anywhere wakes the pools with requests waiting; a connection coming back idle while
// another pool waits is closed to give its unit over; and a pool refused for the limit asks
// the others to close an idle one. Weak references only: the limit outlives the pools (their
// connections hold it), and must not keep them alive.
void share_connection_limit(const std::shared_ptr<detail::limit_pools>& pools,
                            const std::shared_ptr<resilience::cluster_limits>& limits,
                            const std::shared_ptr<detail::upstream_pool>& p) {
  std::weak_ptr<detail::limit_pools> all = pools;
  p->shed_on_return([all, limit = &limits->connections, raw = p.get()] {
    // (The limit outlives the pool: the pool's connector holds it.)
    if (limit->remaining() > 0) {
      return false;
    }
    const auto list = all.lock();
    if (!list) {
      return false;
    }
    const auto live = list->live();
    return std::any_of(live.begin(), live.end(), [raw](const auto& other) {
      return other.get() != raw && other->stats().pending > 0;
    });
  });
  p->on_overloaded([all, raw = p.get()] {
    const auto list = all.lock();
    if (!list) {
      return;
    }
    for (const auto& other : list->live()) {
      if (other.get() != raw && other->stats().idle > 0) {
        other->shed_idle();
        return;
      }
    }
  });
  pools->add(p);
}

// Wakes the pools with requests pending for a unit of `limits`' connections, when one is given
// back. Set once, when the limits are made: a cluster that takes over from another shares both.
void wake_on_room(const std::shared_ptr<detail::limit_pools>& pools,
                  resilience::cluster_limits& limits) {
  limits.connections.on_room([all = std::weak_ptr<detail::limit_pools>{pools}]() noexcept {
    // Called from a release, which must not throw; live() may (an allocation): a wake lost
    // then leaves its requests to their pool timeout.
    try {
      if (const auto list = all.lock()) {
        for (const auto& p : list->live()) {
          if (p->stats().pending > 0) {
            p->wake_waiters();
          }
        }
      }
    } catch (const std::exception&) { // NOLINT(bugprone-empty-catch): said above
    }
  });
}

} // namespace

std::shared_ptr<proxy_cluster>
server::impl::build_cluster(const cluster_config& c, std::shared_ptr<tls::client_context> tls,
                            const http::parser_limits& response_limits,
                            const proxy_cluster* previous) {
  using namespace detail;
  auto& reg = shared.registry;
  const clock& rclock = *shared.resilience_clock;
  // (Asking a family for a series it has returns that series: a cluster rebuilt by a reload
  // counts on where its predecessor stopped.)
  auto& responses = reg.counter("tether_proxy_responses_total",
                                "Responses to clients by cluster and status class");
  auto& attempts = reg.counter("tether_proxy_upstream_requests_total",
                               "Attempts sent upstream (first tries and retries), by host");
  auto& retries =
      reg.counter("tether_proxy_retries_total", "Retries, by the outcome of the attempt retried");
  auto& exhausted = reg.counter("tether_proxy_retry_budget_exhausted_total",
                                "Retries the cluster's retry budget refused");
  auto& stale = reg.counter(
      "tether_proxy_stale_connection_resends_total",
      "Requests sent again on another connection because the upstream closed a kept-alive one "
      "before answering (not retries: nothing was processed)");
  auto& overflow = reg.counter("tether_proxy_overflow_total",
                               "Requests or retries refused by a cluster threshold");
  auto& ejections =
      reg.counter("tether_proxy_outlier_ejections_total", "Hosts ejected by outlier detection");
  auto& checks =
      reg.counter("tether_proxy_health_checks_total", "Active health checks of a host, by result");
  auto& resolutions = reg.counter("tether_proxy_dns_resolutions_total",
                                  "Lookups of a host given by name, by result");
  upstream::cluster_options options{c.name,
                                    c.lb,
                                    c.limits,
                                    c.retry_budget,
                                    std::nullopt,
                                    c.outlier_detection,
                                    c.health_check.kind != health_check_kind::none,
                                    shared.worker_count};
  if (c.breaker.enabled) {
    options.breaker = c.breaker.options;
  }
  auto pc = std::make_shared<proxy_cluster>();
  pc->cfg = c;
  pc->fingerprint = cluster_fingerprint(c);
  pc->settings = settings_fingerprint(c);
  if (previous != nullptr) {
    // Only its endpoints changed: it goes on with its predecessor's limits, budget, outlier
    // detection, TLS context and sessions, and the endpoints that stay as they are.
    pc->upstream =
        std::make_unique<upstream_cluster>(std::move(options), rclock, *previous->upstream);
    pc->tls = previous->tls;
    pc->handshakes = previous->handshakes;
    pc->limited_pools = previous->limited_pools;
    pc->next_sweep = previous->next_sweep;
  } else {
    pc->upstream = std::make_unique<upstream_cluster>(std::move(options), rclock);
    if (tls) {
      pc->tls = std::move(tls);
      pc->handshakes = std::make_shared<tls::handshake_counters>();
    }
    pc->limited_pools = std::make_shared<limit_pools>();
    wake_on_room(pc->limited_pools, *pc->upstream->limits);
    if (c.outlier_detection) {
      pc->next_sweep =
          std::make_shared<steady::time_point>(steady::now() + c.outlier_detection->interval);
    }
  }
  auto& up = *pc->upstream;
  std::vector<std::shared_ptr<upstream_host>> added;
  for (const auto& e : c.endpoints) {
    if (previous != nullptr) {
      const auto& before = previous->upstream->hosts;
      const auto same = std::find_if(before.begin(), before.end(), [&e](const auto& h) {
        return h->address() == e.host && h->port() == e.port;
      });
      if (same != before.end()) {
        up.adopt_host(*same);
        pc->endpoints.push_back(
            previous->endpoints[static_cast<std::size_t>(same - before.begin())]);
        continue;
      }
    }
    auto& h = up.add_host(e.host, e.port);
    added.push_back(up.hosts.back());
    const metrics::labels hl{{"cluster", c.name}, {"endpoint", h.name()}};
    h.series.attempts = &attempts.Add(hl);
    h.series.ejections = &ejections.Add(hl);
    h.series.checks_passed = &checks.Add(metrics::with_label(hl, "result", "passed"));
    h.series.checks_failed = &checks.Add(metrics::with_label(hl, "result", "failed"));
    if (h.addresses) {
      h.series.resolved = &resolutions.Add(metrics::with_label(hl, "result", "ok"));
      h.series.resolve_failed = &resolutions.Add(metrics::with_label(hl, "result", "failed"));
    }
  }
  up.on_ejection = [log = &shared](const upstream_host& h) {
    log_event(*log, spdlog::level::warn, "outlier detection ejected " + h.name());
  };
  auto& series = up.series;
  for (std::size_t i = 0; i < upstream::retry_reason_names.size(); ++i) {
    series.retries[i] =
        &retries.Add({{"cluster", c.name}, {"reason", upstream::retry_reason_names[i]}});
  }
  for (std::size_t i = 0; i < upstream::resource_names.size(); ++i) {
    series.overflow[i] =
        &overflow.Add({{"cluster", c.name}, {"resource", upstream::resource_names[i]}});
  }
  series.budget_exhausted = &exhausted.Add({{"cluster", c.name}});
  series.stale_resends = &stale.Add({{"cluster", c.name}});
  for (std::size_t i = 0; i < class_names.size(); ++i) {
    pc->responses[i] = &responses.Add({{"cluster", c.name}, {"class", class_names[i]}});
  }
  pc->duration = &reg.histogram_series("tether_proxy_request_duration_seconds",
                                       "From a request's head to the end of its response",
                                       {{"cluster", c.name}});
  // Each host added gets a pool on every worker, at the worker's index among its pools.
  for (const auto& h : added) {
    auto ep = std::make_shared<endpoint_state>();
    ep->host = h;
    for (auto& w : workers) {
      // The gauges read the pool at scrape time, weakly: a pool can outlive its cluster's list
      // while it closes.
      auto weak = std::make_shared<std::weak_ptr<upstream_pool>>();
      auto observer = std::make_shared<pool::pool_metrics>(
          reg,
          metrics::labels{
              {"cluster", c.name}, {"endpoint", h->name()}, {"worker", std::to_string(w->id)}},
          [weak] {
            auto locked = weak->lock();
            return locked ? locked->stats() : pool::pool_stats{};
          },
          false);
      auto limits = response_limits;
      limits.max_body = 0; // responses are streamed, never held whole
      std::optional<tls::client_identity> identity;
      if (pc->tls) {
        identity.emplace(pc->tls, h->address(), pc->handshakes);
      }
      http::http_connector connector{h->address(), h->port(), c.tcp, limits, std::move(identity)};
      connector.limit_connections({up.limits, &up.limits->connections});
      if (h->addresses) {
        connector.use_addresses(h->addresses);
      }
      auto p = upstream_pool::create(w->io.get_executor(), std::move(connector), c.pool,
                                     coarse_monotonic_clock::instance(), observer);
      *weak = p;
      share_connection_limit(pc->limited_pools, up.limits, p);
      h->pools.push_back(std::move(p));
      ep->observers.push_back(std::move(observer));
    }
    ep->close = [this](std::vector<std::shared_ptr<upstream_pool>> pools) {
      close_pools(std::move(pools));
    };
    // In the hosts' order: a host added comes after the adopted ones before it.
    const auto at = std::find(up.hosts.begin(), up.hosts.end(), h);
    pc->endpoints.insert(pc->endpoints.begin() + (at - up.hosts.begin()), std::move(ep));
  }
  return pc;
}

void server::impl::watch(proxy_cluster& pc) {
  auto& reg = shared.registry;
  const auto& name = pc.cfg.name;
  for (const auto& h : pc.upstream->hosts) {
    pc.callbacks.push_back(reg.callback(
        "tether_proxy_host_healthy",
        "1 while a host passes its health checks (or has none); 0 until its first check passes",
        metrics::metric_kind::gauge, {{"cluster", name}, {"endpoint", h->name()}},
        [host = h.get()] { return host->healthy.load() ? 1.0 : 0.0; }));
  }
  pc.upstream->watch(reg, {{"cluster", name}});
  if (pc.handshakes) {
    auto watched =
        tls::watch_handshakes(reg, "tether_proxy_upstream", {{"cluster", name}}, *pc.handshakes);
    std::move(watched.begin(), watched.end(), std::back_inserter(pc.callbacks));
  }
  for (auto& e : pc.endpoints) {
    for (auto& o : e->observers) {
      o->watch_gauges();
    }
  }
}

std::shared_ptr<const generation>
server::impl::build_generation(config c, std::vector<std::shared_ptr<proxy_cluster>> kept,
                               std::vector<std::shared_ptr<proxy_cluster>> from,
                               std::vector<std::shared_ptr<tls::client_context>> contexts) {
  using namespace detail;
  auto g = std::make_shared<generation>();
  g->hash = config_hash(c);
  g->cfg = std::move(c);
  const auto& cfg = g->cfg;
  // The listeners' certificates, read again (first: a file gone bad fails before any cluster
  // is built).
  for (const auto& l : cfg.listeners) {
    g->listener_contexts.push_back(l.tls ? std::make_shared<tls::server_context>(*l.tls) : nullptr);
    g->listener_handshakes.push_back(l.tls ? listener_handshakes(l.name) : nullptr);
    if (l.tls) {
      for (const auto& warning : g->listener_contexts.back()->warnings()) {
        log_event(shared, spdlog::level::warn, "listener '" + l.name + "': " + warning);
      }
    }
  }
  for (std::size_t i = 0; i < cfg.clusters.size(); ++i) {
    g->clusters.push_back(kept[i] ? std::move(kept[i])
                                  : build_cluster(cfg.clusters[i], std::move(contexts[i]),
                                                  cfg.downstream.limits, from[i].get()));
  }
  for (const auto& l : cfg.listeners) {
    auto& index = g->listener_cluster.emplace_back(generation::npos);
    for (std::size_t i = 0; l.tcp && i < cfg.clusters.size(); ++i) {
      if (cfg.clusters[i].name == l.tcp->cluster) {
        index = i;
      }
    }
  }
  for (const auto& r : cfg.routes) {
    for (std::size_t i = 0; i < cfg.clusters.size(); ++i) {
      if (cfg.clusters[i].name == r.cluster) {
        g->route_cluster.push_back(i);
        g->route_retry.push_back(r.retry ? &*r.retry : &cfg.clusters[i].retry);
        break;
      }
    }
  }
  return g;
}

tls::handshake_counters* server::impl::listener_handshakes(const std::string& name) {
  // Made the first time a listener of that name has `tls:`, and kept (its counters go on
  // across reloads, as a cluster's do). Its series appear when a generation that has it runs
  // (watch_listeners): a reload refused later shows none for a listener that never ran.
  auto& state = listener_stats[name];
  if (!state.handshakes) {
    state.handshakes = std::make_unique<tls::handshake_counters>();
  }
  return state.handshakes.get();
}

void server::impl::watch_listeners(const generation& g) {
  for (const auto& l : g.cfg.listeners) {
    const auto it = listener_stats.find(l.name);
    if (l.tls && it != listener_stats.end() && it->second.handshakes &&
        it->second.callbacks.empty()) {
      it->second.callbacks = tls::watch_handshakes(shared.registry, "tether_proxy_downstream",
                                                   {{"listener", l.name}}, *it->second.handshakes);
    }
  }
}

void server::impl::register_metrics() {
  using namespace detail;
  auto& reg = shared.registry;
  auto& reloads = reg.counter("tether_proxy_config_reloads_total",
                              "Reloads of the config (SIGHUP, POST /reload), by result");
  reload_results[0] = &reloads.Add({{"result", "success"}});
  reload_results[1] = &reloads.Add({{"result", "failure"}});
  shared.callbacks.push_back(reg.callback(
      "tether_proxy_config_loaded_timestamp_seconds",
      "When the running config was loaded (at start or by the last reload that succeeded)",
      metrics::metric_kind::gauge, {}, [this] { return loaded_at.load(); }));
  shared.callbacks.push_back(reg.callback(
      "tether_proxy_clusters_draining",
      "Clusters a reload changed or removed that requests, tunnels or a health check under way "
      "still use; each goes when the last of them ends",
      metrics::metric_kind::gauge, {},
      [n = clusters_draining] { return static_cast<double>(n->load()); }));
  auto& causes = reg.counter("tether_proxy_errors_total",
                             "Requests the proxy answered itself or gave up on, by cause");
  for (std::size_t i = 0; i < cause_names.size(); ++i) {
    shared.causes[i] = &causes.Add({{"cause", cause_names[i]}});
  }
  auto& accept_failures =
      reg.counter("tether_proxy_accept_failures_total",
                  "Client connections that could not be accepted, by cause (descriptors: out of "
                  "file descriptors, memory, other)");
  for (std::size_t i = 0; i < shared.accept_failures.size(); ++i) {
    shared.accept_failures[i] =
        &accept_failures.Add({{"cause", net::to_string(static_cast<net::accept_failure>(i))}});
  }
  shared.downstream_opened = &reg.counter("tether_proxy_downstream_connections_opened_total",
                                          "Client connections accepted")
                                  .Add({});
  auto& tunnels =
      reg.counter("tether_proxy_tunnels_total",
                  "Tunnels opened (tcp listeners' connections, CONNECT, Upgrade), by kind");
  auto& idle =
      reg.counter("tether_proxy_tunnel_idle_timeouts_total",
                  "Tunnels closed because nothing moved either way for their idle timeout");
  auto& bytes = reg.counter("tether_proxy_tunnel_bytes_total",
                            "Bytes relayed by tunnels, by kind and direction (upstream: from the "
                            "client to the upstream)");
  for (std::size_t i = 0; i < tunnel_series::kinds; ++i) {
    const std::string kind = tunnel_kind_names[i];
    auto& t = shared.tunnels;
    t.opened[i] = &tunnels.Add({{"kind", kind}});
    t.idle_closed[i] = &idle.Add({{"kind", kind}});
    t.bytes_up[i] = &bytes.Add({{"kind", kind}, {"direction", "upstream"}});
    t.bytes_down[i] = &bytes.Add({{"kind", kind}, {"direction", "downstream"}});
    shared.callbacks.push_back(reg.callback(
        "tether_proxy_tunnels_active", "Tunnels open, by kind", metrics::metric_kind::gauge,
        {{"kind", kind}}, [active = &t.active[i]] { return static_cast<double>(active->load()); }));
  }
  shared.callbacks.push_back(
      reg.callback("tether_proxy_downstream_connections_active", "Client connections open",
                   metrics::metric_kind::gauge, {},
                   [s = &shared] { return static_cast<double>(s->downstream_active.load()); }));
}

} // namespace tether::proxy
