#include "tether/chaos/api.hpp"

#include <nlohmann/json.hpp>

namespace tether::chaos {

namespace {

using json = api_json;
using namespace messages;

http::server_response json_response(int status, const json& body) {
  http::server_response r;
  r.status = status;
  r.body = body.dump();
  return r;
}

// Toxiproxy writes errors with Go's http.Error: text/plain, the JSON and a newline.
http::server_response error_response(const api_error& e) {
  http::server_response r;
  r.status = e.status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = json{{"error", e.message}, {"status", e.status}}.dump() + "\n";
  return r;
}

http::server_response not_found() {
  http::server_response r;
  r.status = 404;
  r.content_type = "text/plain; charset=utf-8";
  r.body = "404 page not found\n";
  return r;
}

http::server_response method_not_allowed() {
  http::server_response r;
  r.status = 405;
  r.content_type.clear();
  return r;
}

http::server_response error_response(int status, std::string_view message) {
  return error_response(api_error{status, std::string{message}});
}

http::server_response no_content() {
  http::server_response r;
  r.status = 204;
  r.content_type.clear();
  return r;
}

// Upstream toxics first, then downstream ones, each in the order added (Toxiproxy's order).
json toxics_json(const proxy& p) {
  json toxics = json::array();
  for (const auto s : {stream::upstream, stream::downstream}) {
    for (const auto& t : p.toxics()) {
      if (t.direction == s) {
        toxics.push_back(to_json(t));
      }
    }
  }
  return toxics;
}

json to_json(const proxy& p) {
  json toxics = toxics_json(p);
  return {{"name", p.config().name},
          {"listen", p.config().listen},
          {"upstream", p.config().upstream},
          {"enabled", p.config().enabled},
          {"toxics", std::move(toxics)}};
}

// "/a/b/c" -> {"a", "b", "c"}
std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    const auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) {
      break;
    }
    path.remove_prefix(slash);
  }
  return out;
}

} // namespace

api::api(asio::io_context::executor_type executor, std::uint64_t seed)
    : executor_{std::move(executor)}, random_{seed} {}

api::~api() {
  stop_all();
}

void api::stop_all() {
  for (auto& [name, p] : proxies_) {
    p->stop();
  }
}

std::shared_ptr<proxy> api::find(std::string_view name) const {
  const auto it = proxies_.find(name);
  return it == proxies_.end() ? nullptr : it->second;
}

void api::watch(const std::shared_ptr<proxy>& p) {
  std::vector<metrics::callback_registration> series;
  std::weak_ptr<proxy> weak = p;
  for (const auto s : {stream::upstream, stream::downstream}) {
    const metrics::labels labels{{"proxy", p->config().name},
                                 {"direction", std::string{to_string(s)}}};
    const auto i = static_cast<std::size_t>(s);
    series.push_back(registry_.callback(
        "tether_chaos_received_bytes_total", "Bytes a chaos proxy read from the sender",
        metrics::metric_kind::counter, labels, [weak, i] {
          auto locked = weak.lock();
          return locked ? static_cast<double>(locked->counters().received[i].load()) : 0.0;
        }));
    series.push_back(registry_.callback(
        "tether_chaos_sent_bytes_total", "Bytes a chaos proxy wrote to the receiver",
        metrics::metric_kind::counter, labels, [weak, i] {
          auto locked = weak.lock();
          return locked ? static_cast<double>(locked->counters().sent[i].load()) : 0.0;
        }));
  }
  series_[p->config().name] = std::move(series);
}

http::server_response api::handle(const http::server_request& request) {
  const auto parts = split_path(request.path());
  const auto& m = request.method;
  const bool update = m == "POST" || m == "PATCH";
  // Toxiproxy refuses browsers, so that a web page cannot drive it (a CSRF guard).
  if (const auto* agent = request.find("user-agent");
      agent != nullptr && agent->starts_with("Mozilla/")) {
    http::server_response r;
    r.status = 403;
    r.content_type = "text/plain; charset=utf-8";
    r.body = "User agent not allowed\n";
    return r;
  }
  if (parts.size() == 1 && parts[0] == "version" && m == "GET") {
    http::server_response r;
    r.content_type = "application/json;charset=utf-8";
    r.body = "{\"version\": \"" + std::string{api_version} + "\"}\n";
    return r;
  }
  if (parts.size() == 1 && parts[0] == "metrics" && m == "GET") {
    http::server_response r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = registry_.expose();
    return r;
  }
  if (parts.size() == 1 && parts[0] == "reset" && m == "POST") {
    return reset();
  }
  if (parts.size() == 1 && parts[0] == "populate" && m == "POST") {
    return populate_route(request.body);
  }
  if (parts.empty() || parts[0] != "proxies") {
    return not_found();
  }
  if (parts.size() == 1) {
    if (m == "GET") {
      return proxies_index();
    }
    if (m == "POST") {
      return proxy_create(request.body);
    }
    return method_not_allowed();
  }
  const std::string name{parts[1]};
  auto p = find(name);
  if (parts.size() == 2) {
    if (!p) {
      return error_response(404, proxy_not_found);
    }
    if (m == "GET") {
      return json_response(200, to_json(*p));
    }
    if (update) {
      return proxy_update(name, request.body);
    }
    if (m == "DELETE") {
      return proxy_delete(name);
    }
    return method_not_allowed();
  }
  if (parts[2] != "toxics" || parts.size() > 4) {
    return not_found();
  }
  if (!p) {
    return error_response(404, proxy_not_found);
  }
  if (parts.size() == 3) {
    if (m == "GET") {
      return json_response(200, toxics_json(*p));
    }
    if (m == "POST") {
      return toxic_create(*p, request.body);
    }
    return method_not_allowed();
  }
  const std::string toxic_name{parts[3]};
  const toxic* t = p->find_toxic(toxic_name);
  if (t == nullptr) {
    return error_response(404, toxic_not_found);
  }
  if (m == "GET") {
    return json_response(200, to_json(*t));
  }
  if (update) {
    return toxic_update(*p, toxic_name, request.body);
  }
  if (m == "DELETE") {
    p->remove_toxic(toxic_name);
    return no_content();
  }
  return method_not_allowed();
}

http::server_response api::proxies_index() const {
  json all = json::object();
  for (const auto& [name, p] : proxies_) {
    all[name] = to_json(*p);
  }
  return json_response(200, all);
}

http::server_response api::proxy_create(std::string_view body) {
  const auto parsed = parse_body(body);
  if (!parsed) {
    return error_response(400, bad_request_body);
  }
  proxy_config config;
  if (auto e = read_proxy(*parsed, config)) {
    return error_response(*e);
  }
  if (auto e = check_new_proxy(config)) {
    return error_response(*e);
  }
  if (find(config.name)) {
    return error_response(409, proxy_exists);
  }
  auto p = proxy::create(executor_, config, random_);
  if (config.enabled) {
    if (const auto ec = p->start()) {
      return error_response(500, "listen tcp " + config.listen + ": " + ec.message());
    }
  }
  proxies_[config.name] = p;
  watch(p);
  return json_response(201, to_json(*p));
}

http::server_response api::proxy_update(const std::string& name, std::string_view body) {
  const auto parsed = parse_body(body);
  if (!parsed) {
    return error_response(400, bad_request_body);
  }
  auto p = find(name);
  proxy_config next = p->config();
  if (auto e = read_proxy(*parsed, next)) {
    return error_response(*e);
  }
  next.name = name; // the name in the path is the proxy's; a body's name is ignored
  if (const auto ec = p->reconfigure(next)) {
    return error_response(500, "listen tcp " + next.listen + ": " + ec.message());
  }
  return json_response(200, to_json(*p));
}

http::server_response api::proxy_delete(const std::string& name) {
  auto it = proxies_.find(name);
  it->second->stop();
  proxies_.erase(it);
  series_.erase(name);
  return no_content();
}

namespace {

// "localhost:P" and "127.0.0.1:P" name one address: a populate that says either keeps a proxy
// that listens on it.
std::string comparable_listen(std::string listen) {
  if (listen.starts_with("localhost:")) {
    listen.replace(0, 9, "127.0.0.1");
  }
  return listen;
}

} // namespace

std::optional<api_error> api::populate(std::string_view body) {
  std::vector<std::string> applied;
  return populate(body, applied);
}

std::optional<api_error> api::populate(std::string_view body, std::vector<std::string>& applied) {
  const auto parsed = parse_body(body);
  if (!parsed || !parsed->is_array()) {
    return api_error{400, std::string{bad_request_body} + ": expected a JSON array of proxies"};
  }
  // Every entry is checked before anything changes.
  std::vector<proxy_config> configs;
  std::size_t position = 0;
  for (const auto& item : *parsed) {
    ++position;
    proxy_config config;
    if (auto e = read_proxy(item, config)) {
      return e;
    }
    if (config.name.empty()) {
      return api_error{400, "missing required field: name at proxy " + std::to_string(position)};
    }
    if (config.upstream.empty()) {
      return api_error{400,
                       "missing required field: upstream at proxy " + std::to_string(position)};
    }
    if (auto e = check_new_proxy(config)) {
      return e;
    }
    configs.push_back(std::move(config));
  }
  // Then applied in order: a proxy whose listen and upstream are unchanged keeps running with its
  // toxics and connections; a changed one is replaced; a failure to listen stops there, leaving
  // the earlier entries applied (as Toxiproxy does).
  for (const auto& config : configs) {
    auto existing = find(config.name);
    if (existing &&
        comparable_listen(existing->config().listen) == comparable_listen(config.listen) &&
        existing->config().upstream == config.upstream) {
      applied.push_back(config.name);
      continue;
    }
    if (existing) {
      existing->stop();
      proxies_.erase(config.name);
      series_.erase(config.name);
    }
    auto p = proxy::create(executor_, config, random_);
    if (config.enabled) {
      if (const auto ec = p->start()) {
        return api_error{500, "listen tcp " + config.listen + ": " + ec.message()};
      }
    }
    proxies_[config.name] = p;
    watch(p);
    applied.push_back(config.name);
  }
  return std::nullopt;
}

http::server_response api::populate_route(std::string_view body) {
  std::vector<std::string> applied;
  const auto error = populate(body, applied);
  // The reply lists the proxies applied, as they now run: [] rather than Toxiproxy's null when
  // there are none, which its own node client cannot read.
  json list = json::array();
  for (const auto& name : applied) {
    if (auto p = find(name)) {
      list.push_back(to_json(*p));
    }
  }
  if (error) {
    return json_response(
        error->status,
        json{{"error", error->message}, {"status", error->status}, {"proxies", std::move(list)}});
  }
  return json_response(201, json{{"proxies", std::move(list)}});
}

http::server_response api::reset() {
  for (auto& [name, p] : proxies_) {
    p->remove_all_toxics();
    if (!p->config().enabled || !p->listening()) {
      auto next = p->config();
      next.enabled = true;
      (void)p->reconfigure(next);
    }
  }
  return no_content();
}

http::server_response api::toxic_create(proxy& p, std::string_view body) {
  const auto parsed = parse_body(body);
  if (!parsed) {
    return error_response(400, bad_request_body);
  }
  toxic t;
  if (auto e = read_new_toxic(*parsed, t)) {
    return error_response(*e);
  }
  if (p.find_toxic(t.name) != nullptr) {
    return error_response(409, toxic_exists);
  }
  auto shown = to_json(t);
  p.add_toxic(std::move(t));
  return json_response(200, shown);
}

http::server_response api::toxic_update(proxy& p, const std::string& toxic_name,
                                        std::string_view body) {
  const auto parsed = parse_body(body);
  if (!parsed || !parsed->is_object()) {
    return error_response(400, bad_request_body);
  }
  // Only attributes and toxicity change; a body's name, type and stream are ignored.
  toxic t = *p.find_toxic(toxic_name);
  if (auto e = read_toxicity(*parsed, t)) {
    return error_response(*e);
  }
  if (auto e = read_attributes(*parsed, t)) {
    return error_response(*e);
  }
  p.update_toxic(t);
  return json_response(200, to_json(t));
}

} // namespace tether::chaos
