// The proxy's metric series: registered once at start, kept by the counters the workers update.
#include "server_impl.hpp"

namespace tether::proxy {

void server::impl::register_metrics() {
  using namespace detail;
  auto& reg = shared.registry;
  const auto& cfg = shared.cfg;
  const clock& rclock = *shared.resilience_clock;
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
  for (const auto& c : cfg.clusters) {
    cluster_counters cc;
    const metrics::labels cl{{"cluster", c.name}};
    cc.limits = std::make_unique<resilience::cluster_limits>(c.limits);
    cc.series.watch(reg, *cc.limits, cl);
    if (c.retry_budget) {
      cc.budget = std::make_unique<resilience::windowed_retry_budget>(*c.retry_budget, rclock);
      cc.series.watch(reg, *cc.budget, cl);
    }
    if (c.outlier_detection) {
      cc.detector = std::make_unique<resilience::outlier_detector>(*c.outlier_detection, rclock);
      cc.series.watch(reg, *cc.detector, cl);
    }
    for (const auto& e : c.endpoints) {
      auto ep = std::make_unique<endpoint_counters>();
      ep->name = e.host + ":" + std::to_string(e.port);
      if (c.health_check.kind != health_check_kind::none) {
        // Out of service until its first check passes, as Envoy does: traffic goes to hosts
        // known to answer (and to all while none is, by panic routing).
        ep->healthy = false;
        ep->checked = false;
      }
      const metrics::labels hl{{"cluster", c.name}, {"endpoint", ep->name}};
      ep->attempts = &attempts.Add(hl);
      ep->ejections = &ejections.Add(hl);
      ep->checks_passed = &checks.Add(metrics::with_label(hl, "result", "passed"));
      ep->checks_failed = &checks.Add(metrics::with_label(hl, "result", "failed"));
      if (c.breaker.enabled) {
        ep->breaker = std::make_unique<resilience::circuit_breaker>(c.name + "/" + ep->name,
                                                                    c.breaker.options, rclock);
        ep->breaker_failures = c.breaker.options.failures;
        cc.series.watch(reg, *ep->breaker, hl);
      }
      if (cc.detector) {
        ep->outlier = cc.detector->add_host(ep->name);
      }
      std::error_code not_ip;
      (void)asio::ip::make_address(e.host, not_ip);
      if (not_ip) {
        ep->addresses = std::make_shared<net::address_cache>();
        ep->resolved = &resolutions.Add(metrics::with_label(hl, "result", "ok"));
        ep->resolve_failed = &resolutions.Add(metrics::with_label(hl, "result", "failed"));
      }
      cc.endpoints.push_back(std::move(ep));
    }
    for (std::size_t i = 0; i < class_names.size(); ++i) {
      cc.responses[i] = &responses.Add({{"cluster", c.name}, {"class", class_names[i]}});
    }
    for (std::size_t i = 0; i < retry_reason_names.size(); ++i) {
      cc.retries[i] = &retries.Add({{"cluster", c.name}, {"reason", retry_reason_names[i]}});
    }
    for (std::size_t i = 0; i < resource_names.size(); ++i) {
      cc.overflow[i] = &overflow.Add({{"cluster", c.name}, {"resource", resource_names[i]}});
    }
    cc.budget_exhausted = &exhausted.Add(cl);
    cc.stale_resends = &stale.Add(cl);
    cc.duration = &reg.histogram_series("tether_proxy_request_duration_seconds",
                                        "From a request's head to the end of its response",
                                        {{"cluster", c.name}});
    shared.clusters.push_back(std::move(cc));
  }
  for (std::size_t c = 0; c < cfg.clusters.size(); ++c) {
    for (const auto& ep : shared.clusters[c].endpoints) {
      shared.callbacks.push_back(reg.callback(
          "tether_proxy_host_healthy",
          "1 while a host passes its health checks (or has none); 0 until its first check passes",
          metrics::metric_kind::gauge, {{"cluster", cfg.clusters[c].name}, {"endpoint", ep->name}},
          [e = ep.get()] { return e->healthy.load() ? 1.0 : 0.0; }));
    }
  }
  for (const auto& r : cfg.routes) {
    for (std::size_t c = 0; c < cfg.clusters.size(); ++c) {
      if (cfg.clusters[c].name == r.cluster) {
        shared.route_cluster.push_back(c);
        shared.route_retry.push_back(r.retry ? &*r.retry : &cfg.clusters[c].retry);
        break;
      }
    }
  }
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
  shared.callbacks.push_back(
      reg.callback("tether_proxy_downstream_connections_active", "Client connections open",
                   metrics::metric_kind::gauge, {},
                   [s = &shared] { return static_cast<double>(s->downstream_active.load()); }));
}

} // namespace tether::proxy
