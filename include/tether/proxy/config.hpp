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
#include "tether/resilience/circuit_breaker.hpp"
#include "tether/resilience/outlier_detector.hpp"
#include "tether/resilience/resource_limit.hpp"
#include "tether/resilience/retry_budget.hpp"
#include "tether/resilience/retry_policy.hpp"
#include "tether/tls/options.hpp"
#include "tether/upstream/balancer.hpp"

namespace tether::proxy {

using namespace std::chrono_literals;

/// Where the proxy accepts client connections.
/// A listener that proxies raw TCP (a database, a message broker, TLS passed through) instead
/// of HTTP: each connection goes to a host of `cluster`, picked, connected and retried on
/// another host as a request's connection is (balancer, connect timeout, breakers, health
/// checks, outlier ejection, thresholds), then its bytes are relayed both ways (spliced).
struct tcp_proxy_config {
  std::string cluster;
  /// Nothing moved either way for this long: the connection is closed (Envoy's default, 1 h).
  clock::duration idle_timeout = std::chrono::hours{1};
};

struct listener_config {
  std::string name;
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;
  /// Let other processes listen on this port too (SO_REUSEPORT; the kernel splits connections
  /// between them). Off, a port another process listens on is refused at start, so that a
  /// second tether started by mistake does not silently take part of the traffic.
  bool reuse_port = false;
  /// TLS termination (certificates chosen by SNI, ALPN, TLS 1.2 at least, optional client
  /// certificates); none: plain HTTP.
  std::optional<tls::server_options> tls{};
  /// Raw TCP to a cluster instead of HTTP; none: an HTTP listener.
  std::optional<tcp_proxy_config> tcp{};
};

/// When the proxy tries a request again, and how (a route's, or its cluster's default).
struct retry_config {
  /// Attempts, conditions, per-try and overall timeouts, backoff, Retry-After. The overall
  /// timeout is the cluster's request_timeout. Defaults: retry once, on a connection that could
  /// not be made only (nothing was sent), after 25-250 ms of full jitter (Envoy's backoff).
  resilience::retry_policy policy{};
  /// A request body up to this many bytes is read whole before the first attempt so that it can
  /// be sent again; a longer one is streamed and its request is not retried once sent.
  std::uint64_t buffer_limit = 64 * 1024;
};

/// A route for CONNECT tunnels: which ports a CONNECT may name, and how long a tunnel may sit
/// with nothing moving.
struct connect_route_config {
  std::vector<std::uint16_t> ports;
  clock::duration idle_timeout = std::chrono::hours{1};
};

/// Requests whose Host (without port) and path match go to `cluster`. Routes are tried in order;
/// the first match wins. Host "*" matches any.
struct route_config {
  std::string host = "*";
  std::string path_prefix = "/";
  std::string cluster;
  std::optional<retry_config> retry{}; ///< none: the cluster's
  /// Set: only requests over TLS whose client certificate's subject is exactly this (RFC 2253,
  /// as tls::peer_subject gives it: "CN=client-one,O=Example"). Empty: any request.
  std::string client_subject{};
  /// Set: the route takes CONNECT requests (and no others) for its host and one of these ports;
  /// the tunnel goes to a host of `cluster`. None: the route takes no CONNECT.
  std::optional<connect_route_config> connect{};
};

/// A failure-rate breaker per upstream host (resilience4j's semantics): a host failing at least
/// `failure_rate_threshold` percent of its recent attempts gets no requests for `wait_in_open`,
/// then a few trial requests decide. Failures: connect errors, resets, timeouts, 502, 503 and 504
/// (options.failures: `5xx` counts 500 and the rest too; a 500 is most often about the request,
/// and one client's requests to a broken URL must not take a healthy host from everyone).
struct host_breaker_config {
  bool enabled = true;
  resilience::circuit_breaker_options options = defaults();

  [[nodiscard]] static resilience::circuit_breaker_options defaults() {
    resilience::circuit_breaker_options o;
    o.failure_rate_threshold = 50.0F;
    o.window_kind = resilience::sliding_window_kind::count_based;
    o.window_size = 20;
    o.minimum_calls = 10;
    o.wait_in_open = std::chrono::seconds{3};
    o.wait_multiplier = 1.0;
    o.permitted_calls_in_half_open = 3;
    return o;
  }
};

/// Active health checks of a cluster's hosts.
enum class health_check_kind : std::uint8_t { none, http, tcp };

struct health_check_config {
  health_check_kind kind = health_check_kind::none;
  std::string path = "/health"; ///< http: the path asked with GET
  std::vector<int> expected_statuses{200};
  clock::duration interval = 5s;
  clock::duration jitter = 1s; ///< up to this much is added to each interval
  clock::duration timeout = 1s;
  std::uint32_t healthy_threshold = 2;   ///< passes in a row to come back
  std::uint32_t unhealthy_threshold = 3; ///< failures in a row to be taken out
};

/// One upstream host: an IP address or a DNS name, and a port.
struct endpoint_config {
  std::string host;
  std::uint16_t port = 0;
};

/// How a cluster picks the endpoint for a request (the upstream layer's balancers).
using upstream::lb_policy;
using upstream::to_string;

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
  /// TLS to the endpoints (verified against the system's trust store or a CA file, SNI, ALPN
  /// http/1.1, sessions resumed); none: plain HTTP.
  std::optional<tls::client_options> tls{};
  /// From the request's head arriving to the response's head leaving the upstream (504 past it),
  /// across every attempt.
  clock::duration request_timeout = 15s;
  /// The retry policy of routes to this cluster that have none of their own.
  retry_config retry{};
  /// Retries allowed as a share of requests (Finagle's budget: 20 %, at least 10/s); none: off.
  std::optional<resilience::windowed_retry_budget_options> retry_budget =
      resilience::windowed_retry_budget_options{};
  /// Envoy's thresholds over the whole cluster (every worker): connections, requests waiting for
  /// a connection, requests in flight, retries in flight. At max_connections a request waits as
  /// pending for a connection any worker gives back; past the others it gets 503 at once.
  resilience::cluster_limits_options limits{};
  host_breaker_config breaker{};
  /// Ejection of hosts after consecutive 5xx or gateway failures; none: off (Envoy's default).
  std::optional<resilience::outlier_detection_options> outlier_detection{};
  health_check_config health_check{};

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
  /// A Unix socket where a new tether process (`tether proxy --take-over`) takes the listening
  /// sockets over for an upgrade without a refused connection; empty: no upgrades.
  std::string upgrade_socket{};
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
/// One cluster as /config shows it (a reload keeps a cluster whose JSON did not change).
[[nodiscard]] std::string to_json(const cluster_config& c);

/// Parses a duration: a whole number with a unit, "250ms", "2s", "1m", "1h".
[[nodiscard]] std::optional<clock::duration> parse_duration(std::string_view text) noexcept;

} // namespace tether::proxy
