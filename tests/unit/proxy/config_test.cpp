// The proxy's configuration: what loads, and that every problem is reported with its place.
#include "tether/proxy/config.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace tether::proxy {
namespace {

using namespace std::chrono_literals;

bool has(const load_result& r, const std::string& text) {
  return std::any_of(r.errors.begin(), r.errors.end(),
                     [&](const std::string& e) { return e == text; });
}

std::string all(const load_result& r) {
  std::string out;
  for (const auto& e : r.errors) {
    out += e + "\n";
  }
  return out;
}

TEST(proxy_config, the_built_in_config_loads) {
  const auto r = load_config(default_config_yaml(), "<built-in>");
  ASSERT_TRUE(r.value) << all(r);
  EXPECT_EQ(r.value->listeners.at(0).port, 8080);
  EXPECT_EQ(r.value->admin.port, 9901);
  ASSERT_EQ(r.value->clusters.at(0).endpoints.size(), 2U);
  EXPECT_EQ(r.value->clusters.at(0).endpoints[1].port, 8082);
}

TEST(proxy_config, the_example_config_loads_with_every_field) {
  const auto r = load_config_file(TETHER_SOURCE_DIR "/examples/proxy.yaml");
  ASSERT_TRUE(r.value) << all(r);
  const auto& c = *r.value;
  ASSERT_EQ(c.routes.size(), 2U);
  EXPECT_EQ(c.routes[0].host, "api.example.com");
  const auto* api = c.find_cluster("api");
  ASSERT_NE(api, nullptr);
  EXPECT_EQ(api->lb, lb_policy::least_request);
  EXPECT_EQ(api->pool.max_size, 64U);
  EXPECT_EQ(api->pool.max_lifetime, clock::duration{30min});
  EXPECT_EQ(api->tcp.keepalive_probes, 6);
  EXPECT_EQ(c.find_cluster("web")->endpoints[0].host, "localhost");
  EXPECT_EQ(c.downstream.request_header_timeout, clock::duration{10s});
  ASSERT_TRUE(c.routes[0].retry);
  EXPECT_EQ(c.routes[0].retry->policy.max_attempts, 3U);
  EXPECT_EQ(c.routes[0].retry->policy.per_try_timeout, clock::duration{2s});
  EXPECT_EQ(c.routes[0].retry->policy.overall_timeout, clock::duration{15s});
  EXPECT_FALSE(c.routes[1].retry);
  ASSERT_TRUE(api->retry_budget);
  EXPECT_DOUBLE_EQ(api->retry_budget->percent_can_retry, 0.2);
  EXPECT_EQ(api->limits.max_retries, 3U);
  EXPECT_EQ(api->breaker.options.wait_in_open, clock::duration{3s});
  ASSERT_TRUE(api->outlier_detection);
  EXPECT_EQ(api->health_check.kind, health_check_kind::http);
  EXPECT_EQ(api->health_check.unhealthy_threshold, 3U);
}

TEST(proxy_config, resilience_defaults_are_safe_when_nothing_is_configured) {
  const auto r = load_config(R"(
listeners: [{port: 0}]
routes: [{cluster: c}]
clusters: [{name: c, endpoints: ["127.0.0.1:1"]}]
)",
                             "min.yaml");
  ASSERT_TRUE(r.value) << all(r);
  const auto& c = r.value->clusters[0];
  using resilience::retry_on;
  // Retries only of what was never sent, once, with Envoy's backoff; the budget and breakers on.
  EXPECT_EQ(c.retry.policy.conditions, retry_on::connect_failure | retry_on::refused);
  EXPECT_EQ(c.retry.policy.max_attempts, 2U);
  EXPECT_EQ(c.retry.policy.backoff.base, clock::duration{25ms});
  EXPECT_EQ(c.retry.policy.backoff.cap, clock::duration{250ms});
  EXPECT_EQ(c.retry.policy.overall_timeout, c.request_timeout);
  ASSERT_TRUE(c.retry_budget);
  EXPECT_DOUBLE_EQ(c.retry_budget->percent_can_retry, 0.2);
  EXPECT_EQ(c.retry_budget->min_retries_per_sec, 10U);
  EXPECT_TRUE(c.breaker.enabled);
  EXPECT_EQ(c.limits.max_requests, 1024U);
  EXPECT_FALSE(c.outlier_detection);
  EXPECT_EQ(c.health_check.kind, health_check_kind::none);
}

TEST(proxy_config, resilience_can_be_switched_off_and_bad_values_are_located) {
  const auto off = load_config(R"(
listeners: [{port: 0}]
routes: [{cluster: c}]
clusters:
  - name: c
    endpoints: ["127.0.0.1:1"]
    retry: {retry_on: [], num_retries: 0}
    retry_budget: off
    breaker: off
)",
                               "off.yaml");
  ASSERT_TRUE(off.value) << all(off);
  EXPECT_FALSE(off.value->clusters[0].retry_budget);
  EXPECT_FALSE(off.value->clusters[0].breaker.enabled);
  EXPECT_EQ(off.value->clusters[0].retry.policy.max_attempts, 1U);

  const auto bad = load_config(R"(
listeners: [{port: 0}]
routes: [{cluster: c, retry: {retry_on: [sometimes]}}]
clusters:
  - name: c
    endpoints: ["127.0.0.1:1"]
    retry: {num_retries: 99}
    retry_budget: {percent: -1}
    breaker: {failure_rate_threshold: 0}
    health_check: {type: udp, expected_statuses: [700]}
)",
                               "bad.yaml");
  ASSERT_FALSE(bad.value);
  EXPECT_TRUE(has(bad, "bad.yaml:3:42: route */ retry.retry_on: expected connect-failure, refused, "
                       "reset, timeout, 5xx, gateway-error or retriable-status-codes"))
      << all(bad);
  EXPECT_TRUE(has(bad, "bad.yaml:7:26: cluster 'c'.retry.num_retries must be a whole number in "
                       "[0, 10]"))
      << all(bad);
  EXPECT_TRUE(has(bad, "bad.yaml:8:29: cluster 'c'.retry_budget.percent must be a number in "
                       "[0, 1000]"))
      << all(bad);
  EXPECT_TRUE(has(bad, "bad.yaml:9:39: cluster 'c'.breaker.failure_rate_threshold must be a "
                       "number in [1, 100]"))
      << all(bad);
  EXPECT_TRUE(has(bad, "bad.yaml:10:26: cluster 'c'.health_check.type must be http or tcp"))
      << all(bad);
  EXPECT_TRUE(has(bad, "bad.yaml:10:51: cluster 'c'.health_check.expected_statuses: expected an "
                       "HTTP status code (100-599)"))
      << all(bad);
}

TEST(proxy_config, a_file_that_is_not_utf8_is_refused_where_it_breaks) {
  const std::string yaml = "listeners: [{name: a, address: 127.0.0.1, port: 8080}]\n"
                           "routes: [{path_prefix: /, cluster: \"caf\xc3\"}]\n";
  const auto r = load_config(yaml, "proxy.yaml");
  ASSERT_EQ(r.errors.size(), 1U);
  EXPECT_EQ(r.errors[0], "proxy.yaml:2:40: not UTF-8 (a YAML file is Unicode text)");
  // Real UTF-8, up to four bytes a character, passes.
  const std::string ok = "listeners: [{name: \"caf\xc3\xa9 \xf0\x9d\x84\x9e\", address: "
                         "127.0.0.1, port: 8080}]\nroutes: [{path_prefix: /, cluster: c}]\n"
                         "clusters: [{name: c, endpoints: [\"127.0.0.1:9000\"]}]\n";
  EXPECT_TRUE(load_config(ok, "proxy.yaml").value) << load_config(ok, "proxy.yaml").errors[0];
  // Overlong forms and surrogates are not UTF-8 either.
  for (const char* bad : {"\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"}) {
    EXPECT_FALSE(load_config(std::string{"workers: 1 # "} + bad + "\n", "p.yaml").errors.empty());
  }
}

TEST(proxy_config, every_problem_is_reported_with_file_line_and_column) {
  const auto r = load_config(R"(listeners:
  - name: a
    address: not-an-ip
    port: 70000
routes:
  - path_prefix: api
    cluster: nowhere
clusters:
  - name: web
    endpoints: ["10.0.0.1", "10.0.0.2:80"]
    lb: fastest
    request_timeout: 5 seconds
    pool: {max_size: 0}
    colour: blue
  - name: web
    endpoints: ["10.0.0.3:80"]
)",
                             "proxy.yaml");
  EXPECT_FALSE(r.value);
  const char* expected[] = {
      "proxy.yaml:3:14: listener 'a'.address must be an IP address such as 127.0.0.1 or ::1",
      "proxy.yaml:4:11: listener 'a'.port must be a whole number in [0, 65535]",
      "proxy.yaml:6:18: route.path_prefix must start with /",
      "proxy.yaml:7:14: route to unknown cluster 'nowhere'; clusters defined: web, web",
      "proxy.yaml:10:17: cluster 'web'.endpoints: expected host:port (a name or address, port "
      "1-65535), such as 10.0.0.7:8080 or [::1]:8080",
      "proxy.yaml:11:9: cluster 'web'.lb must be round_robin, least_request or random",
      "proxy.yaml:12:22: cluster 'web'.request_timeout must be a duration such as 250ms, 2s, 1m "
      "or 1h",
      "proxy.yaml:13:22: cluster 'web'.pool.max_size must be a whole number in [1, 100000]",
      "proxy.yaml:14:5: unknown key 'colour' in a cluster; expected one of: name, endpoints, lb, "
      "resolve_interval, pool, tcp, tls, request_timeout, retry, retry_budget, circuit_breakers, "
      "breaker, outlier_detection, health_check",
      "proxy.yaml:15:5: cluster 'web' is defined twice",
  };
  for (const char* e : expected) {
    EXPECT_TRUE(has(r, e)) << "missing: " << e << "\ngot:\n" << all(r);
  }
}

TEST(proxy_config, syntax_errors_and_missing_sections_are_located) {
  const auto broken = load_config("listeners: [\n  {name: a\n", "bad.yaml");
  ASSERT_EQ(broken.errors.size(), 1U);
  EXPECT_EQ(broken.errors[0].rfind("bad.yaml:", 0), 0U) << broken.errors[0];
  EXPECT_NE(broken.errors[0].find("YAML syntax"), std::string::npos);

  const auto empty = load_config("workers: 2\n", "min.yaml");
  EXPECT_TRUE(has(empty, "min.yaml:1:1: the configuration needs listeners (a list of {name, "
                         "address, port})"))
      << all(empty);
  EXPECT_TRUE(has(empty, "min.yaml:1:1: the configuration needs routes (a list of {host, "
                         "path_prefix, cluster})"));

  const auto unreadable = load_config_file("/nonexistent/tether.yaml");
  EXPECT_TRUE(has(unreadable, "/nonexistent/tether.yaml: cannot be read"));
}

TEST(proxy_config, a_key_written_twice_is_an_error_not_a_silent_choice) {
  const auto r = load_config(R"(workers: 1
listeners: [{name: a, address: 127.0.0.1, port: 8080, port: 9090}]
routes: [{path_prefix: /, cluster: web}]
clusters:
  - name: web
    endpoints: ["10.0.0.1:80"]
    request_timeout: 5s
    request_timeout: 50s
workers: 4
)",
                             "dup.yaml");
  EXPECT_FALSE(r.value);
  const char* expected[] = {
      "dup.yaml:2:55: duplicate key 'port' (first at line 2); each key may appear once in a "
      "mapping",
      "dup.yaml:8:5: duplicate key 'request_timeout' (first at line 7); each key may appear once "
      "in a mapping",
      "dup.yaml:9:1: duplicate key 'workers' (first at line 1); each key may appear once in a "
      "mapping",
  };
  for (const char* e : expected) {
    EXPECT_TRUE(has(r, e)) << "missing: " << e << "\ngot:\n" << all(r);
  }
  EXPECT_EQ(r.errors.size(), 3U) << all(r);
}

TEST(proxy_config, an_endpoint_listed_twice_in_a_cluster_is_an_error) {
  const auto r = load_config(R"(listeners: [{name: a, port: 8080}]
routes: [{path_prefix: /, cluster: web}]
clusters:
  - name: web
    endpoints: ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80"]
)",
                             "twice.yaml");
  EXPECT_FALSE(r.value);
  EXPECT_TRUE(has(r, "twice.yaml:5:47: cluster 'web'.endpoints: 10.0.0.1:80 is listed twice"))
      << all(r);
}

TEST(proxy_config, an_upgrade_socket_path_too_long_for_a_unix_socket_is_an_error) {
  const std::string base = "listeners: [{name: a, port: 8080}]\n"
                           "routes: [{path_prefix: /, cluster: web}]\n"
                           "clusters: [{name: web, endpoints: [\"10.0.0.1:80\"]}]\n"
                           "admin: {upgrade_socket: /";
  const auto fits = load_config(base + std::string(106, 'a') + "}\n", "fits.yaml");
  ASSERT_TRUE(fits.value) << all(fits);
  EXPECT_EQ(fits.value->admin.upgrade_socket.size(), 107U);
  EXPECT_NE(to_json(*fits.value).find("\"upgrade_socket\": \"/aaa"), std::string::npos);
  const auto r = load_config(base + std::string(107, 'a') + "}\n", "long.yaml");
  EXPECT_FALSE(r.value);
  EXPECT_TRUE(has(r, "long.yaml:4:25: admin.upgrade_socket is 108 bytes long; a Unix socket's "
                     "path holds 107 at most"))
      << all(r);
  const auto relative =
      load_config(base.substr(0, base.size() - 1) + "run/tether.sock}\n", "relative.yaml");
  EXPECT_FALSE(relative.value);
  EXPECT_TRUE(has(relative, "relative.yaml:4:25: admin.upgrade_socket 'run/tether.sock' must be an "
                            "absolute path: the running tether and the one taking over may start "
                            "in different directories"))
      << all(relative);
}

TEST(proxy_config, two_listeners_of_one_name_are_an_error) {
  const std::string rest = "routes: [{path_prefix: /, cluster: web}]\n"
                           "clusters: [{name: web, endpoints: [\"10.0.0.1:80\"]}]\n";
  const auto named = load_config(
      "listeners: [{name: web, port: 80}, {name: web, port: 443}]\n" + rest, "named.yaml");
  EXPECT_FALSE(named.value);
  EXPECT_TRUE(has(named, "named.yaml:1:36: listener 'web' is defined twice")) << all(named);
  // Unnamed ones are named by address and port: two on port 0 need names.
  const auto unnamed = load_config("listeners: [{port: 0}, {port: 0}]\n" + rest, "unnamed.yaml");
  EXPECT_FALSE(unnamed.value);
  EXPECT_TRUE(has(unnamed, "unnamed.yaml:1:24: listener '127.0.0.1:0' is defined twice (a "
                           "listener without a name is named by its address and port: give each "
                           "one a name)"))
      << all(unnamed);
}

TEST(proxy_config, a_tcp_listener_names_a_cluster_no_route_uses) {
  // A config of tcp listeners only needs no routes.
  const auto ok = load_config("listeners: [{name: db, port: 5433, tcp: {cluster: pg, "
                              "idle_timeout: 30m}}]\n"
                              "clusters: [{name: pg, endpoints: [\"10.0.0.1:5432\"]}]\n",
                              "tcp.yaml");
  ASSERT_TRUE(ok.value) << all(ok);
  ASSERT_TRUE(ok.value->listeners[0].tcp);
  EXPECT_EQ(ok.value->listeners[0].tcp->cluster, "pg");
  EXPECT_EQ(ok.value->listeners[0].tcp->idle_timeout, clock::duration{30min});
  EXPECT_NE(to_json(*ok.value).find("\"idle_timeout_ms\": 1800000"), std::string::npos);

  const auto bad = load_config("listeners:\n"
                               "  - {name: a, port: 1, tcp: {cluster: nowhere}}\n"
                               "  - {name: b, port: 2, tcp: {cluster: secure}}\n"
                               "  - {name: c, port: 3, tcp: {cluster: web}}\n"
                               "  - {name: d, port: 4, tcp: {}}\n"
                               "routes: [{path_prefix: /, cluster: web}]\n"
                               "clusters:\n"
                               "  - {name: web, endpoints: [\"10.0.0.1:80\"]}\n"
                               "  - {name: secure, endpoints: [\"10.0.0.1:443\"], tls: {}}\n",
                               "bad.yaml");
  EXPECT_FALSE(bad.value);
  EXPECT_TRUE(has(bad, "bad.yaml:2:39: listener 'a'.tcp goes to unknown cluster 'nowhere'; "
                       "clusters defined: web, secure"))
      << all(bad);
  EXPECT_TRUE(has(bad, "bad.yaml:4:39: listener 'c'.tcp: cluster 'web' is an HTTP route's cluster "
                       "too (route * /); a cluster serves HTTP routes or tunnels"))
      << all(bad);
  EXPECT_TRUE(has(bad, "bad.yaml:5:29: listener 'd'.tcp needs a cluster (where its connections "
                       "go)"))
      << all(bad);
  // Listener b's cluster has tls: allowed (tether makes the TLS to its hosts).
  EXPECT_EQ(bad.errors.size(), 3U) << all(bad);

  // TLS to a tcp listener's hosts offers no application protocol unless told: "http/1.1" is
  // for HTTP clusters.
  const auto tls = load_config("listeners:\n"
                               "  - {name: a, port: 1, tcp: {cluster: secure}}\n"
                               "  - {name: b, port: 2, tcp: {cluster: told}}\n"
                               "  - {name: c, port: 3}\n"
                               "routes: [{path_prefix: /, cluster: web}]\n"
                               "clusters:\n"
                               "  - {name: secure, endpoints: [\"10.0.0.1:443\"], tls: {}}\n"
                               "  - {name: told, endpoints: [\"10.0.0.1:444\"], tls: {alpn: [x]}}\n"
                               "  - {name: web, endpoints: [\"10.0.0.1:443\"], tls: {}}\n",
                               "tls.yaml");
  ASSERT_TRUE(tls.value) << all(tls);
  EXPECT_TRUE(tls.value->clusters[0].tls->alpn.empty());
  EXPECT_EQ(tls.value->clusters[1].tls->alpn, std::vector<std::string>{"x"});
  EXPECT_EQ(tls.value->clusters[2].tls->alpn, std::vector<std::string>{"http/1.1"});
}

TEST(proxy_config, a_connect_route_lists_its_ports_and_has_a_cluster_of_its_own) {
  const auto ok = load_config(
      "listeners: [{name: edge, port: 3128}]\n"
      "routes:\n"
      "  - {host: api.internal, connect: {ports: [443, 8443], idle_timeout: 10m}, cluster: api}\n"
      "  - {path_prefix: /, cluster: web}\n"
      "clusters:\n"
      "  - {name: api, endpoints: [\"10.0.0.2:443\"]}\n"
      "  - {name: web, endpoints: [\"10.0.0.1:80\"]}\n",
      "connect.yaml");
  ASSERT_TRUE(ok.value) << all(ok);
  ASSERT_TRUE(ok.value->routes[0].connect);
  EXPECT_EQ(ok.value->routes[0].connect->ports, (std::vector<std::uint16_t>{443, 8443}));
  EXPECT_EQ(ok.value->routes[0].connect->idle_timeout, clock::duration{10min});
  EXPECT_FALSE(ok.value->routes[1].connect);

  const auto bad = load_config("listeners: [{name: edge, port: 3128}]\n"
                               "routes:\n"
                               "  - {host: a, connect: {}, cluster: api}\n"
                               "  - {host: b, connect: {ports: [0, 443]}, cluster: web}\n"
                               "  - {host: c, connect: {ports: [443]}, cluster: secure}\n"
                               "  - {path_prefix: /, cluster: web}\n"
                               "clusters:\n"
                               "  - {name: api, endpoints: [\"10.0.0.2:443\"]}\n"
                               "  - {name: web, endpoints: [\"10.0.0.1:80\"]}\n"
                               "  - {name: secure, endpoints: [\"10.0.0.1:443\"], tls: {}}\n",
                               "bad.yaml");
  EXPECT_FALSE(bad.value);
  EXPECT_TRUE(has(bad, "bad.yaml:3:24: route a connect needs ports: the ports a CONNECT may name "
                       "([443])"))
      << all(bad);
  EXPECT_TRUE(has(bad, "bad.yaml:4:33: route b connect.ports: expected a port (1 to 65535)"))
      << all(bad);
  EXPECT_TRUE(has(bad, "bad.yaml:4:52: route b connect: cluster 'web' is an HTTP route's cluster "
                       "too (route * /); a cluster serves HTTP routes or tunnels"))
      << all(bad);
  EXPECT_TRUE(has(bad, "bad.yaml:5:49: route c connect: cluster 'secure' has tls, but a CONNECT's "
                       "client makes its own TLS to the origin (tls on a tunnel's cluster is for "
                       "tcp listeners and WebSocket upgrades)"))
      << all(bad);
}

TEST(proxy_config, durations_need_a_unit) {
  EXPECT_EQ(parse_duration("250ms"), clock::duration{250ms});
  EXPECT_EQ(parse_duration("2s"), clock::duration{2s});
  EXPECT_EQ(parse_duration("1m"), clock::duration{1min});
  EXPECT_EQ(parse_duration("1h"), clock::duration{1h});
  for (const char* bad : {"", "2", "s", "-1s", "1.5s", "2 s", "1d", "99999999999s"}) {
    EXPECT_FALSE(parse_duration(bad)) << bad;
  }
}

TEST(proxy_config, the_running_config_shows_as_json) {
  const auto r = load_config(default_config_yaml(), "<built-in>");
  ASSERT_TRUE(r.value);
  const auto json = to_json(*r.value);
  EXPECT_NE(json.find("\"endpoints\": [\n        \"127.0.0.1:8081\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"port\": 9901"), std::string::npos);
}

} // namespace
} // namespace tether::proxy
