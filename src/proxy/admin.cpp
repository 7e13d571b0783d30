// The admin listener's endpoints: /metrics, /ready, /config, /clusters, and POST /reload.
#include <nlohmann/json.hpp>

#include "server_impl.hpp"

namespace tether::proxy {

http::server_response server::impl::admin_request(const http::server_request& r) {
  http::server_response out;
  const auto path = r.path();
  const bool reload_path = path == "/reload";
  if (r.method != (reload_path ? "POST" : "GET")) {
    out.status = 405;
    out.content_type = "text/plain";
    // RFC 9110 15.5.6: a 405 MUST say what is allowed.
    out.headers.push_back({"Allow", reload_path ? "POST" : "GET"});
    out.body = reload_path ? "only POST\n" : "only GET\n";
    return out;
  }
  const auto& gen = *shared.current; // this thread is the one that replaces it
  if (reload_path) {
    // This is the admin thread, where reloads run: the same as SIGHUP, answered with the result.
    const auto errors = reload_from_source();
    out.content_type = "text/plain";
    if (errors.empty()) {
      out.body = "reloaded: config " + shared.current->hash + "\n";
    } else {
      out.status = 400;
      out.body = "reload refused, the running config stays:\n";
      for (const auto& e : errors) {
        out.body += e + "\n";
      }
    }
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
    for (const auto& cc : gen.clusters) {
      for (const auto& h : cc->upstream->hosts) {
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
    // Which version runs and since when, then the config itself.
    nlohmann::ordered_json shown{{"hash", gen.hash}, {"loaded_at", loaded_at.load()}};
    auto running = nlohmann::ordered_json::parse(to_json(gen.cfg));
    for (auto& [key, value] : running.items()) {
      shown[key] = std::move(value);
    }
    out.body = shown.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  } else if (path == "/clusters") {
    nlohmann::ordered_json clusters = nlohmann::ordered_json::array();
    for (const auto& c : gen.clusters) {
      const auto& cfg = c->cfg;
      nlohmann::ordered_json hosts = nlohmann::ordered_json::array();
      for (std::size_t e = 0; e < cfg.endpoints.size(); ++e) {
        const auto& counters = c->upstream->at(e);
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
    out.body = "not found: try /metrics, /ready, /clusters, /config or POST /reload\n";
  }
  return out;
}

} // namespace tether::proxy
