#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tether/core/clock.hpp"
#include "tether/http/client.hpp"
#include "tether/http/parser.hpp"
#include "tether/net/tcp_connector.hpp"
#include "tether/pool/pool_options.hpp"

namespace tether::proxy {

using namespace std::chrono_literals;

/// Where the proxy accepts client connections.
struct listener_config {
  std::string name;
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;
};

/// Requests whose Host (without port) and path match go to `cluster`. Routes are tried in order;
/// the first match wins. Host "*" matches any.
struct route_config {
  std::string host = "*";
  std::string path_prefix = "/";
  std::string cluster;
};

/// One upstream host: an IP address or a DNS name, and a port.
struct endpoint_config {
  std::string host;
  std::uint16_t port = 0;
};

/// How a cluster picks the endpoint for a request.
enum class lb_policy : std::uint8_t { round_robin, least_request, random };

[[nodiscard]] std::string_view to_string(lb_policy p) noexcept;

/// A set of interchangeable upstream endpoints and how to talk to them.
struct cluster_config {
  std::string name;
  std::vector<endpoint_config> endpoints;
  lb_policy lb = lb_policy::round_robin;
  /// How often DNS names among the endpoints are resolved again (new connections use the
  /// current answer).
  clock::duration resolve_interval = 30s;
  /// Per endpoint and worker. An HTTP upstream pool grows on demand (min idle 0) and closes idle
  /// connections after 50 s, before common server keep-alive timeouts (nginx: 75 s).
  pool::pool_options pool = default_pool();
  net::tcp_options tcp{};
  /// From the request's head arriving to the response's head leaving the upstream (504 past it).
  clock::duration request_timeout = 15s;

  /// The HTTP client's per-host defaults (http::client_options), with room for a proxy's
  /// concurrency and a shorter drain.
  [[nodiscard]] static pool::pool_options default_pool() {
    pool::pool_options o = http::client_options::default_pool();
    o.max_size = 64;
    o.drain_timeout = 5s;
    return o;
  }
};

/// The client side of the proxy.
struct downstream_config {
  /// From a request's first byte to its last header byte (408 past it): slow clients
  /// (slowloris) cannot hold a connection with a head that never ends.
  clock::duration request_header_timeout = 10s;
  /// A kept-alive connection with no request in progress is closed after it.
  clock::duration idle_timeout = 60s;
  /// Requests served on one connection before it is closed (0: no limit).
  std::uint32_t max_requests_per_connection = 1000;
  http::parser_limits limits{};
};

/// The admin listener: /metrics, /ready, /clusters, /config.
struct admin_config {
  std::string address = "127.0.0.1";
  std::uint16_t port = 9901;
};

enum class log_format : std::uint8_t { text, json };

struct log_config {
  std::string level = "info"; ///< trace, debug, info, warn, error, off
  log_format format = log_format::text;
  std::string access_log{}; ///< a file for one line per request; empty: none
};

/// The whole configuration of `tether proxy`.
struct config {
  std::uint32_t workers = 0; ///< threads serving requests; 0: one per core
  std::vector<listener_config> listeners;
  std::vector<route_config> routes;
  std::vector<cluster_config> clusters;
  downstream_config downstream{};
  admin_config admin{};
  log_config log{};
  /// On SIGTERM or SIGINT: how long requests in flight may take to finish.
  clock::duration drain_timeout = 10s;

  [[nodiscard]] const cluster_config* find_cluster(std::string_view name) const noexcept;
};

/// A configuration read from YAML, or every problem found, each as "file:line:column: what is
/// wrong and what is expected".
struct load_result {
  std::optional<config> value;
  std::vector<std::string> errors;
};

/// Reads and checks a YAML configuration. `source` names the text in error messages (the file's
/// path). Nothing half-read is returned: either a whole, valid config or the errors.
[[nodiscard]] load_result load_config(std::string_view yaml, std::string_view source);

/// Reads the file at `path` and loads it; a file that cannot be read is one error.
[[nodiscard]] load_result load_config_file(const std::string& path);

/// The configuration `tether proxy` runs when given none: a listener on 127.0.0.1:8080, the
/// admin listener on 127.0.0.1:9901, and one cluster of two demo upstreams (127.0.0.1:8081 and
/// 127.0.0.1:8082) that `tether proxy` starts itself.
[[nodiscard]] std::string_view default_config_yaml() noexcept;

/// The running configuration as JSON (what /config shows).
[[nodiscard]] std::string to_json(const config& c);

/// Parses a duration: a whole number with a unit, "250ms", "2s", "1m", "1h".
[[nodiscard]] std::optional<clock::duration> parse_duration(std::string_view text) noexcept;

} // namespace tether::proxy
