// Active health checks: each host is asked every interval, and taken out or brought back.
#include <algorithm>

#include "tether/net/tcp_connector.hpp"

#include "server_impl.hpp"

namespace tether::proxy {
namespace detail {

// Active health checks of one host: every interval (plus up to `jitter`, so checks of many hosts
// spread out) an HTTP GET of the path or a TCP connect, within the timeout. After
// unhealthy_threshold failures in a row the host is out of service; after healthy_threshold
// passes in a row it is back. A host starts out of service and unchecked: the first check runs at
// once, and its one verdict decides (a single pass puts it in service, as in Envoy). A pass also
// brings back a host that outlier detection ejected (Envoy's default as well).
// Ends when the cluster is retired by a reload (which destroys the timer: it is not touched
// after a wait once `retired` is seen) or the proxy stops.
asio::awaitable<void> health_loop(server::impl* s, std::shared_ptr<proxy_cluster> c, std::size_t e,
                                  asio::steady_timer* timer, std::shared_ptr<http::client> client) {
  const auto& cl = c->cfg;
  const auto& hc = cl.health_check;
  const auto& ep = cl.endpoints[e];
  auto& counters = c->upstream->at(e);
  // The streaks and the schedule are the endpoint's: a cluster that took over from another
  // goes on from them (a reload does not put a check off, nor restart a count).
  auto& state = *c->endpoints[e];
  for (;;) {
    if (state.next_check > steady::now()) {
      timer->expires_at(state.next_check);
      const auto [ec] = co_await timer->async_wait(use_tuple);
      if (ec || c->retired || !s->started) {
        co_return;
      }
    }
    bool passed = false;
    if (hc.kind == health_check_kind::http) {
      http::request r;
      r.host = ep.host;
      r.port = ep.port;
      r.target = hc.path;
      r.tls = cl.tls.has_value();
      const auto result = co_await client->async_request(r);
      passed = !result.error && std::find(hc.expected_statuses.begin(), hc.expected_statuses.end(),
                                          result.response.status) != hc.expected_statuses.end();
    } else {
      net::tcp_options tcp = cl.tcp;
      tcp.connect_timeout = hc.timeout;
      net::tcp_connector connector{ep.host, ep.port, tcp};
      std::unique_ptr<net::tcp_connection> connection;
      passed = !co_await connector.async_connect(connection);
    }
    if (c->retired || !s->started) {
      co_return;
    }
    (passed ? counters.series.checks_passed : counters.series.checks_failed)->Increment();
    auto& passes = state.check_passes;
    auto& failures = state.check_failures;
    passes = passed ? passes + 1 : 0;
    failures = passed ? 0 : failures + 1;
    const bool healthy = counters.healthy.load();
    if (!counters.checked.load()) {
      counters.checked = true;
      s->set_health(*c, e, passed);
    } else if (healthy && failures >= hc.unhealthy_threshold) {
      s->set_health(*c, e, false);
    } else if (!healthy && passes >= hc.healthy_threshold) {
      s->set_health(*c, e, true);
    }
    if (passed && counters.outlier &&
        c->upstream->detector->on_health_check_passed(*counters.outlier)) {
      log_event(s->shared, spdlog::level::info,
                "health check passed: outlier detection returned " + counters.name() +
                    " to service");
    }
    auto wait = hc.interval;
    if (hc.jitter > clock::duration::zero()) {
      wait += uniform_duration(s->random, clock::duration::zero(), hc.jitter);
    }
    state.next_check = steady::now() + wait;
  }
}

} // namespace detail

void server::impl::set_health(detail::proxy_cluster& c, std::size_t e, bool healthy) {
  auto& counters = c.upstream->at(e);
  counters.healthy = healthy;
  log_event(shared, healthy ? spdlog::level::info : spdlog::level::warn,
            "health check: " + c.cfg.name + "/" + counters.name() +
                (healthy ? " is healthy" : " is unhealthy: no traffic, connections closed"));
  if (!healthy) {
    for (auto& w : workers) {
      asio::post(w->io, [pool = counters.pools[w->id]] { pool->evict_all(); });
    }
  }
}

} // namespace tether::proxy
