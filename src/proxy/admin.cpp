// The admin listener's endpoints: /metrics, /ready, /config, /clusters.
#include <nlohmann/json.hpp>

#include "server_impl.hpp"

namespace tether::proxy {

http::server_response server::impl::admin_request(const http::server_request& r) {
  http::server_response out;
  const auto path = r.path();
  if (r.method != "GET") {
    out.status = 405;
    out.content_type = "text/plain";
    out.headers.push_back({"Allow", "GET"}); // RFC 9110 15.5.6: a 405 MUST say what is allowed
    out.body = "only GET\n";
    return out;
  }
  if (path == "/metrics") {
    out.content_type = "text/plain; version=0.0.4";
    out.body = shared.registry.expose();
  } else if (path == "/ready") {
    // As Envoy's initialization: not ready until every health-checked host has had its first
    // verdict (within its check timeout), so an orchestrator sends no traffic while the proxy
    // knows of only some of its hosts.
    bool checked = true;
    for (const auto& cc : shared.clusters) {
      for (const auto& h : cc.upstream->hosts) {
        checked = checked && h->checked.load();
      }
    }
    const bool draining = shared.draining.load();
    const bool ready = started && !draining && checked;
    out.status = ready ? 200 : 503;
    out.content_type = "text/plain";
    out.body = ready ? "ready\n"
                     : (draining ? "draining\n" : "initializing: first health checks pending\n");
  } else if (path == "/config") {
    out.body = to_json(shared.cfg);
  } else if (path == "/clusters") {
    nlohmann::ordered_json clusters = nlohmann::ordered_json::array();
    for (std::size_t c = 0; c < shared.cfg.clusters.size(); ++c) {
      const auto& cfg = shared.cfg.clusters[c];
      nlohmann::ordered_json hosts = nlohmann::ordered_json::array();
      for (std::size_t e = 0; e < cfg.endpoints.size(); ++e) {
        const auto& counters = shared.clusters[c].upstream->at(e);
        std::size_t idle = 0;
        std::size_t active = 0;
        std::size_t pending = 0;
        for (const auto& w : workers) {
          const auto s = counters.pools[w->id]->stats();
          idle += s.idle;
          active += s.active;
          pending += s.pending;
        }
        hosts.push_back(
            {{"address", cfg.endpoints[e].host + ":" + std::to_string(cfg.endpoints[e].port)},
             {"addresses",
              [&] {
                nlohmann::ordered_json list = nlohmann::ordered_json::array();
                if (counters.addresses) {
                  for (const auto& a : counters.addresses->get()) {
                    list.push_back(a.address().to_string());
                  }
                } else {
                  list.push_back(cfg.endpoints[e].host);
                }
                return list;
              }()},
             {"health", !counters.checked.load()
                            ? "unchecked"
                            : (counters.healthy.load() ? "healthy" : "unhealthy")},
             {"ejected", counters.outlier && counters.outlier->ejected()},
             {"breaker", counters.breaker
                             ? std::string{resilience::to_string(counters.breaker->state())}
                             : std::string{"off"}},
             {"requests", counters.requests.load()},
             {"active_requests", counters.active.load()},
             {"failures", counters.failures.load()},
             {"pool", {{"idle", idle}, {"active", active}, {"pending", pending}}}});
      }
      clusters.push_back({{"name", cfg.name}, {"lb", to_string(cfg.lb)}, {"hosts", hosts}});
    }
    out.body = nlohmann::ordered_json{{"clusters", clusters}}.dump(
        2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  } else {
    out.status = 404;
    out.content_type = "text/plain";
    out.body = "not found: try /metrics, /ready, /clusters or /config\n";
  }
  return out;
}

} // namespace tether::proxy
