#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>

#include "tether/chaos/proxy.hpp"
#include "tether/core/random.hpp"
#include "tether/http/server.hpp"
#include "tether/metrics/registry.hpp"

namespace tether::chaos {

/// The version /version reports: Toxiproxy's API version tether chaos speaks, and tether's own.
inline constexpr std::string_view api_version = "2.12.0";

/// Toxiproxy's REST API over a set of proxies, all on one executor: the handler of the
/// small_server that `tether chaos` runs, and a library for tests that want proxies in-process.
///
/// Routes, bodies, status codes and error bodies are Toxiproxy's (docs/chaos.md lists them):
/// /proxies, /populate, /proxies/{name}, /proxies/{name}/toxics, /proxies/{name}/toxics/{toxic},
/// /reset, /version, /metrics.
class api {
public:
  api(asio::io_context::executor_type executor, std::uint64_t seed);
  api(const api&) = delete;
  api& operator=(const api&) = delete;
  ~api();

  /// Answers one request. Call on the executor.
  http::server_response handle(const http::server_request& request);

  /// Creates or replaces proxies from a JSON array of proxy bodies, as /populate does: all are
  /// checked before any change (an invalid one changes nothing); a proxy already there with the
  /// same listen address and upstream is left alone, toxics and connections included; a failure
  /// to listen stops there, the entries before it applied.
  std::optional<api_error> populate(std::string_view json);
  /// The same, saying which proxies (by name) were applied before any error.
  std::optional<api_error> populate(std::string_view json, std::vector<std::string>& applied);

  [[nodiscard]] std::shared_ptr<proxy> find(std::string_view name) const;
  [[nodiscard]] metrics::registry& registry() noexcept { return registry_; }

  /// Stops every proxy.
  void stop_all();

private:
  struct entry;

  http::server_response proxies_index() const;
  http::server_response proxy_create(std::string_view body);
  http::server_response proxy_update(const std::string& name, std::string_view body);
  http::server_response proxy_delete(const std::string& name);
  http::server_response populate_route(std::string_view body);
  http::server_response reset();
  http::server_response toxic_create(proxy& p, std::string_view body);
  http::server_response toxic_update(proxy& p, const std::string& toxic_name,
                                     std::string_view body);
  void watch(const std::shared_ptr<proxy>& p);

  asio::io_context::executor_type executor_;
  default_random random_;
  metrics::registry registry_;
  std::map<std::string, std::shared_ptr<proxy>, std::less<>> proxies_;
  std::map<std::string, std::vector<metrics::callback_registration>, std::less<>> series_;
};

} // namespace tether::chaos
