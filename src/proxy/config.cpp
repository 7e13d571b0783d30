#include "tether/proxy/config.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <asio/ip/address.hpp>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "tether/core/host_port.hpp"
#include "tether/tls/context.hpp"

namespace tether::proxy {

const cluster_config* config::find_cluster(std::string_view name) const noexcept {
  for (const auto& c : clusters) {
    if (c.name == name) {
      return &c;
    }
  }
  return nullptr;
}

std::optional<clock::duration> parse_duration(std::string_view text) noexcept {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end == text.data()) {
    return std::nullopt;
  }
  const std::string_view unit{end, static_cast<std::size_t>(text.data() + text.size() - end)};
  // Bounded so that the conversion to nanoseconds cannot overflow (a day is plenty).
  if (value > 86400ULL * 1000) {
    return std::nullopt;
  }
  if (unit == "ms") {
    return std::chrono::milliseconds{value};
  }
  if (unit == "s") {
    return std::chrono::seconds{value};
  }
  if (unit == "m") {
    return std::chrono::minutes{value};
  }
  if (unit == "h") {
    return std::chrono::hours{value};
  }
  return std::nullopt;
}

namespace {

/// The names of retry_policy conditions in the config (Envoy's spelling where Envoy has one).
constexpr std::pair<std::string_view, resilience::retry_on> retry_on_names[] = {
    {"connect-failure", resilience::retry_on::connect_failure},
    {"refused", resilience::retry_on::refused},
    {"reset", resilience::retry_on::reset},
    {"timeout", resilience::retry_on::timeout},
    {"5xx", resilience::retry_on::status_5xx},
    {"gateway-error", resilience::retry_on::gateway_error},
    {"retriable-status-codes", resilience::retry_on::retriable_status_codes}};

/// Walks the YAML tree and records every problem with where it is; values that are wrong keep
/// their default so the walk goes on and reports the rest.
class reader {
public:
  reader(std::string_view source, std::vector<std::string>& errors)
      : source_{source}, errors_{errors} {}

  void error(const YAML::Node& at, const std::string& what) {
    const auto m = at.Mark();
    errors_.push_back(source_ + ":" + std::to_string(m.line + 1) + ":" +
                      std::to_string(m.column + 1) + ": " + what);
  }

  bool is_map(const YAML::Node& n, const std::string& what) {
    if (!n.IsMap()) {
      error(n, what + " must be a mapping");
      return false;
    }
    return true;
  }

  bool is_sequence(const YAML::Node& n, const std::string& what) {
    if (!n.IsSequence()) {
      error(n, what + " must be a list");
      return false;
    }
    return true;
  }

  /// Every key of `n` must be one of `allowed`.
  void known_keys(const YAML::Node& n, std::initializer_list<std::string_view> allowed,
                  const std::string& what) {
    for (auto it = n.begin(); it != n.end(); ++it) {
      const auto key = it->first.Scalar();
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::string list;
        for (const auto a : allowed) {
          list += (list.empty() ? "" : ", ") + std::string{a};
        }
        error(it->first, "unknown key '" + key + "' in " + what + "; expected one of: " + list);
      }
    }
  }

  void string(const YAML::Node& n, const char* key, std::string& out, const std::string& what) {
    const auto v = n[key];
    if (!v) {
      return;
    }
    if (!v.IsScalar()) {
      error(v, what + "." + key + " must be a string");
      return;
    }
    out = v.Scalar();
  }

  template <class T>
  void integer(const YAML::Node& n, const char* key, T& out, std::uint64_t low, std::uint64_t high,
               const std::string& what) {
    const auto v = n[key];
    if (!v) {
      return;
    }
    std::uint64_t value = 0;
    const auto& s = v.IsScalar() ? v.Scalar() : std::string{};
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (!v.IsScalar() || s.empty() || ec != std::errc{} || end != s.data() + s.size() ||
        value < low || value > high) {
      error(v, what + "." + key + " must be a whole number in [" + std::to_string(low) + ", " +
                   std::to_string(high) + "]");
      return;
    }
    out = static_cast<T>(value);
  }

  void strings(const YAML::Node& n, const char* key, std::vector<std::string>& out,
               const std::string& what) {
    const auto v = n[key];
    if (!v) {
      return;
    }
    std::vector<std::string> values;
    if (v.IsSequence()) {
      for (const auto& item : v) {
        if (!item.IsScalar() || item.Scalar().empty()) {
          error(item, what + "." + key + " must list non-empty strings");
          return;
        }
        values.push_back(item.Scalar());
      }
    }
    if (!v.IsSequence() || values.empty()) {
      error(v, what + "." + key + " must be a list of strings such as [http/1.1]");
      return;
    }
    out = std::move(values);
  }

  void boolean(const YAML::Node& n, const char* key, bool& out, const std::string& what) {
    const auto v = n[key];
    if (!v) {
      return;
    }
    if (!v.IsScalar() || (v.Scalar() != "true" && v.Scalar() != "false")) {
      error(v, what + "." + key + " must be true or false");
      return;
    }
    out = v.Scalar() == "true";
  }

  void duration(const YAML::Node& n, const char* key, clock::duration& out,
                const std::string& what) {
    const auto v = n[key];
    if (!v) {
      return;
    }
    const auto d = v.IsScalar() ? parse_duration(v.Scalar()) : std::nullopt;
    if (!d) {
      error(v, what + "." + key + " must be a duration such as 250ms, 2s, 1m or 1h");
      return;
    }
    out = *d;
  }

  void number(const YAML::Node& n, const char* key, double& out, double low, double high,
              const std::string& what) {
    const auto v = n[key];
    if (!v) {
      return;
    }
    double value = 0;
    const auto& s = v.IsScalar() ? v.Scalar() : std::string{};
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (!v.IsScalar() || s.empty() || ec != std::errc{} || end != s.data() + s.size() ||
        !(value >= low && value <= high)) {
      std::ostringstream range;
      range << "[" << low << ", " << high << "]";
      error(v, what + "." + key + " must be a number in " + range.str());
      return;
    }
    out = value;
  }

  /// A list of HTTP status codes (100-599).
  void statuses(const YAML::Node& n, const char* key, std::vector<int>& out,
                const std::string& what) {
    const auto v = n[key];
    if (!v) {
      return;
    }
    if (!is_sequence(v, what + "." + key)) {
      return;
    }
    out.clear();
    for (const auto& e : v) {
      int code = 0;
      const auto& s = e.IsScalar() ? e.Scalar() : std::string{};
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), code);
      if (!e.IsScalar() || ec != std::errc{} || end != s.data() + s.size() || code < 100 ||
          code > 599) {
        error(e, what + "." + key + ": expected an HTTP status code (100-599)");
        continue;
      }
      out.push_back(code);
    }
  }

  /// True when the node is the word `off` (or `false`): a feature switched off.
  static bool is_off(const YAML::Node& n) {
    return n.IsScalar() && (n.Scalar() == "off" || n.Scalar() == "false");
  }

  void address(const YAML::Node& n, const char* key, std::string& out, const std::string& what) {
    const auto v = n[key];
    if (!v) {
      return;
    }
    std::error_code ec;
    if (!v.IsScalar() || (asio::ip::make_address(v.Scalar(), ec), ec)) {
      error(v, what + "." + key + " must be an IP address such as 127.0.0.1 or ::1");
      return;
    }
    out = v.Scalar();
  }

private:
  std::string source_;
  std::vector<std::string>& errors_;
};

void read_pool(reader& r, const YAML::Node& n, pool::pool_options& pool, const std::string& what) {
  if (!r.is_map(n, what)) {
    return;
  }
  r.known_keys(n, {"max_size", "min_idle", "acquire_timeout", "idle_timeout", "max_lifetime"},
               what);
  r.integer(n, "max_size", pool.max_size, 1, 100000, what);
  std::size_t min_idle = pool.effective_min_idle();
  if (n["min_idle"]) {
    r.integer(n, "min_idle", min_idle, 0, 100000, what);
    pool.min_idle = min_idle;
  }
  r.duration(n, "acquire_timeout", pool.acquire_timeout, what);
  r.duration(n, "idle_timeout", pool.idle_timeout, what);
  r.duration(n, "max_lifetime", pool.max_lifetime, what);
  try {
    pool.validate();
  } catch (const std::invalid_argument& e) {
    r.error(n, what + ": " + e.what());
  }
}

void read_tcp(reader& r, const YAML::Node& n, net::tcp_options& tcp, const std::string& what) {
  if (!r.is_map(n, what)) {
    return;
  }
  r.known_keys(n,
               {"connect_timeout", "no_delay", "keepalive", "keepalive_idle", "keepalive_interval",
                "keepalive_probes", "user_timeout"},
               what);
  r.duration(n, "connect_timeout", tcp.connect_timeout, what);
  r.boolean(n, "no_delay", tcp.no_delay, what);
  r.boolean(n, "keepalive", tcp.keepalive, what);
  r.duration(n, "keepalive_idle", tcp.keepalive_idle, what);
  r.duration(n, "keepalive_interval", tcp.keepalive_interval, what);
  r.integer(n, "keepalive_probes", tcp.keepalive_probes, 1, 127, what);
  r.duration(n, "user_timeout", tcp.user_timeout, what);
  try {
    tcp.validate();
  } catch (const std::invalid_argument& e) {
    r.error(n, what + ": " + e.what());
  }
}

void read_tls_version(reader& r, const YAML::Node& n, tls::version& out, const std::string& what) {
  if (const auto v = n["min_version"]) {
    const auto& s = v.IsScalar() ? v.Scalar() : std::string{};
    if (s == "TLSv1.2" || s == "1.2") {
      out = tls::version::tls1_2;
    } else if (s == "TLSv1.3" || s == "1.3") {
      out = tls::version::tls1_3;
    } else {
      r.error(v, what + ".min_version must be TLSv1.2 or TLSv1.3 (older versions are not offered)");
    }
  }
}

// A cluster's `tls:` (TLS to its endpoints). The files are read here, so that `tether validate`
// names an unreadable CA file or a certificate that does not match its key.
void read_cluster_tls(reader& r, const YAML::Node& n, std::optional<tls::client_options>& out,
                      const std::string& what) {
  if (reader::is_off(n)) {
    out.reset();
    return;
  }
  if (!r.is_map(n, what + " (or off)")) {
    return;
  }
  r.known_keys(n,
               {"verify", "ca_file", "server_name", "alpn", "cert_file", "key_file", "min_version",
                "handshake_timeout", "session_resumption"},
               what);
  tls::client_options o;
  r.boolean(n, "verify", o.verify, what);
  r.string(n, "ca_file", o.ca_file, what);
  r.string(n, "server_name", o.server_name, what);
  r.strings(n, "alpn", o.alpn, what);
  r.string(n, "cert_file", o.cert_file, what);
  r.string(n, "key_file", o.key_file, what);
  read_tls_version(r, n, o.min_version, what);
  r.duration(n, "handshake_timeout", o.handshake_timeout, what);
  r.boolean(n, "session_resumption", o.session_resumption, what);
  try {
    const tls::client_context check{o};
  } catch (const std::invalid_argument& e) {
    r.error(n, what + ": " + e.what());
  }
  out = std::move(o);
}

// A listener's `tls:`: one certificate (cert_file, key_file) or several (certificates), chosen
// by SNI; every file is read and checked here.
void read_listener_tls(reader& r, const YAML::Node& n, std::optional<tls::server_options>& out,
                       const std::string& what) {
  if (!r.is_map(n, what)) {
    return;
  }
  r.known_keys(n,
               {"cert_file", "key_file", "certificates", "alpn", "min_version", "client_ca_file",
                "require_client_certificate"},
               what);
  tls::server_options o;
  tls::certificate first;
  r.string(n, "cert_file", first.cert_file, what);
  r.string(n, "key_file", first.key_file, what);
  if (!first.cert_file.empty() || !first.key_file.empty()) {
    o.certificates.push_back(first);
  }
  if (const auto list = n["certificates"]; list && r.is_sequence(list, what + ".certificates")) {
    for (const auto& c : list) {
      tls::certificate pair;
      if (r.is_map(c, what + ".certificates[]")) {
        r.known_keys(c, {"cert_file", "key_file"}, what + ".certificates[]");
        r.string(c, "cert_file", pair.cert_file, what + ".certificates[]");
        r.string(c, "key_file", pair.key_file, what + ".certificates[]");
        o.certificates.push_back(pair);
      }
    }
  }
  r.strings(n, "alpn", o.alpn, what);
  read_tls_version(r, n, o.min_version, what);
  r.string(n, "client_ca_file", o.client_ca_file, what);
  r.boolean(n, "require_client_certificate", o.require_client_certificate, what);
  if (const auto fault = tls::check_server_options(o); !fault.empty()) {
    r.error(n, what + ": " + fault);
  }
  out = std::move(o);
}

void read_retry(reader& r, const YAML::Node& n, retry_config& c, const std::string& what) {
  if (!r.is_map(n, what)) {
    return;
  }
  r.known_keys(n,
               {"retry_on", "num_retries", "per_try_timeout", "backoff", "retriable_status_codes",
                "max_retry_after", "buffer_limit"},
               what);
  auto& p = c.policy;
  if (const auto on = n["retry_on"]; on && r.is_sequence(on, what + ".retry_on")) {
    using resilience::retry_on;
    p.conditions = retry_on::none;
    for (const auto& e : on) {
      const auto* found =
          std::find_if(std::begin(retry_on_names), std::end(retry_on_names),
                       [&](const auto& kv) { return e.IsScalar() && kv.first == e.Scalar(); });
      if (found == std::end(retry_on_names)) {
        r.error(e, what + ".retry_on: expected connect-failure, refused, reset, timeout, 5xx, "
                          "gateway-error or retriable-status-codes");
        continue;
      }
      p.conditions = p.conditions | found->second;
    }
  }
  std::uint32_t retries = p.max_attempts - 1;
  r.integer(n, "num_retries", retries, 0, 10, what);
  p.max_attempts = retries + 1;
  r.duration(n, "per_try_timeout", p.per_try_timeout, what);
  r.statuses(n, "retriable_status_codes", p.retriable_status_codes, what);
  r.duration(n, "max_retry_after", p.max_retry_after, what);
  r.integer(n, "buffer_limit", c.buffer_limit, 0, 64ULL << 20U, what);
  if (const auto b = n["backoff"]; b && r.is_map(b, what + ".backoff")) {
    r.known_keys(b, {"base", "max"}, what + ".backoff");
    r.duration(b, "base", p.backoff.base, what + ".backoff");
    r.duration(b, "max", p.backoff.cap, what + ".backoff");
  }
  try {
    p.validate();
  } catch (const std::invalid_argument& e) {
    r.error(n, what + ": " + e.what());
  }
}

// A cluster's breaker: off, or its settings.
void read_breaker(reader& r, const YAML::Node& v, cluster_config& c, const std::string& what) {
  if (reader::is_off(v)) {
    c.breaker.enabled = false;
  } else if (r.is_map(v, what + " (or off)")) {
    r.known_keys(v,
                 {"failure_rate_threshold", "window", "minimum_calls", "wait_in_open",
                  "half_open_calls", "failures"},
                 what);
    auto& o = c.breaker.options;
    double threshold = o.failure_rate_threshold;
    r.number(v, "failure_rate_threshold", threshold, 1.0, 100.0, what);
    o.failure_rate_threshold = static_cast<float>(threshold);
    r.integer(v, "window", o.window_size, 1, 100000, what);
    r.integer(v, "minimum_calls", o.minimum_calls, 1, 100000, what);
    r.duration(v, "wait_in_open", o.wait_in_open, what);
    r.integer(v, "half_open_calls", o.permitted_calls_in_half_open, 1, 100000, what);
    if (const auto f = v["failures"]) {
      const auto name = f.IsScalar() ? f.Scalar() : std::string{};
      if (name == "gateway-error") {
        o.failures = resilience::breaker_failures::gateway_errors;
      } else if (name == "5xx") {
        o.failures = resilience::breaker_failures::all_5xx;
      } else {
        r.error(f, what + ".failures must be gateway-error (connect failures, resets, timeouts, "
                          "502-504: the default) or 5xx (every 5xx, 500 included)");
      }
    }
    try {
      o.validate();
    } catch (const std::invalid_argument& e) {
      r.error(v, what + ": " + e.what());
    }
  }
}

// A cluster's outlier detection: off, or its settings.
void read_outlier_detection(reader& r, const YAML::Node& v, cluster_config& c,
                            const std::string& what) {
  if (reader::is_off(v)) {
    c.outlier_detection.reset();
  } else if (r.is_map(v, what + " (or off)")) {
    r.known_keys(v,
                 {"consecutive_5xx", "consecutive_gateway_failure", "interval",
                  "base_ejection_time", "max_ejection_time", "max_ejection_percent"},
                 what);
    resilience::outlier_detection_options o;
    r.integer(v, "consecutive_5xx", o.consecutive_5xx, 0, 100000, what);
    r.integer(v, "consecutive_gateway_failure", o.consecutive_gateway_failure, 0, 100000, what);
    r.duration(v, "interval", o.interval, what);
    r.duration(v, "base_ejection_time", o.base_ejection_time, what);
    r.duration(v, "max_ejection_time", o.max_ejection_time, what);
    r.number(v, "max_ejection_percent", o.max_ejection_percent, 0.0, 100.0, what);
    try {
      o.validate();
    } catch (const std::invalid_argument& e) {
      r.error(v, what + ": " + e.what());
    }
    c.outlier_detection = o;
  }
}

// A cluster's active health checks.
void read_health_check(reader& r, const YAML::Node& v, health_check_config& h,
                       const std::string& what) {
  r.known_keys(v,
               {"type", "path", "expected_statuses", "interval", "jitter", "timeout",
                "healthy_threshold", "unhealthy_threshold"},
               what);
  std::string type;
  r.string(v, "type", type, what);
  if (type == "http") {
    h.kind = health_check_kind::http;
  } else if (type == "tcp") {
    h.kind = health_check_kind::tcp;
  } else {
    r.error(v["type"] ? v["type"] : v, what + ".type must be http or tcp");
  }
  r.string(v, "path", h.path, what);
  if (h.path.empty() || h.path.front() != '/' ||
      h.path.find_first_of(" \r\n\t") != std::string::npos) {
    r.error(v["path"] ? v["path"] : v, what + ".path must start with / and have no spaces");
  }
  r.statuses(v, "expected_statuses", h.expected_statuses, what);
  r.duration(v, "interval", h.interval, what);
  r.duration(v, "jitter", h.jitter, what);
  r.duration(v, "timeout", h.timeout, what);
  r.integer(v, "healthy_threshold", h.healthy_threshold, 1, 1000, what);
  r.integer(v, "unhealthy_threshold", h.unhealthy_threshold, 1, 1000, what);
  if (h.interval <= clock::duration::zero() || h.timeout <= clock::duration::zero()) {
    r.error(v, what + ": interval and timeout must be above 0");
  }
}

void read_resilience(reader& r, const YAML::Node& n, cluster_config& c, const std::string& named) {
  if (const auto v = n["retry"]) {
    read_retry(r, v, c.retry, named + ".retry");
  }
  if (const auto v = n["retry_budget"]) {
    const std::string what = named + ".retry_budget";
    if (reader::is_off(v)) {
      c.retry_budget.reset();
    } else if (r.is_map(v, what + " (or off)")) {
      r.known_keys(v, {"percent", "min_retries_per_second", "ttl"}, what);
      auto& b = *c.retry_budget;
      double percent = b.percent_can_retry * 100.0;
      r.number(v, "percent", percent, 0.0, 1000.0, what);
      b.percent_can_retry = percent / 100.0;
      r.integer(v, "min_retries_per_second", b.min_retries_per_sec, 0, 1000000, what);
      r.duration(v, "ttl", b.ttl, what);
      try {
        b.validate();
      } catch (const std::invalid_argument& e) {
        r.error(v, what + ": " + e.what());
      }
    }
  }
  if (const auto v = n["circuit_breakers"]; v && r.is_map(v, named + ".circuit_breakers")) {
    const std::string what = named + ".circuit_breakers";
    r.known_keys(v, {"max_connections", "max_pending_requests", "max_requests", "max_retries"},
                 what);
    r.integer(v, "max_connections", c.limits.max_connections, 1, 1ULL << 32U, what);
    r.integer(v, "max_pending_requests", c.limits.max_pending_requests, 1, 1ULL << 32U, what);
    r.integer(v, "max_requests", c.limits.max_requests, 1, 1ULL << 32U, what);
    r.integer(v, "max_retries", c.limits.max_retries, 0, 1ULL << 32U, what);
  }
  if (const auto v = n["breaker"]) {
    read_breaker(r, v, c, named + ".breaker");
  }
  if (const auto v = n["outlier_detection"]) {
    read_outlier_detection(r, v, c, named + ".outlier_detection");
  }
  if (const auto v = n["health_check"]; v && r.is_map(v, named + ".health_check")) {
    read_health_check(r, v, c.health_check, named + ".health_check");
  }
}

void read_cluster(reader& r, const YAML::Node& n, cluster_config& c, const std::string& what) {
  if (!r.is_map(n, what)) {
    return;
  }
  r.known_keys(n,
               {"name", "endpoints", "lb", "resolve_interval", "pool", "tcp", "tls",
                "request_timeout", "retry", "retry_budget", "circuit_breakers", "breaker",
                "outlier_detection", "health_check"},
               what);
  r.string(n, "name", c.name, what);
  if (c.name.empty()) {
    r.error(n, what + " needs a name");
  }
  const std::string named = "cluster '" + c.name + "'";
  const auto endpoints = n["endpoints"];
  if (!endpoints) {
    r.error(n, named + " needs endpoints (a list of host:port)");
  } else if (r.is_sequence(endpoints, named + ".endpoints")) {
    if (endpoints.size() == 0) {
      r.error(endpoints, named + ".endpoints must list at least one host:port");
    }
    for (const auto& e : endpoints) {
      endpoint_config ep;
      if (!e.IsScalar() || !split_host_port(e.Scalar(), ep.host, ep.port) || ep.host.empty() ||
          ep.port == 0) {
        r.error(e, named + ".endpoints: expected host:port (a name or address, port 1-65535), "
                           "such as 10.0.0.7:8080 or [::1]:8080");
        continue;
      }
      const bool listed = std::any_of(c.endpoints.begin(), c.endpoints.end(), [&](const auto& o) {
        return o.host == ep.host && o.port == ep.port;
      });
      if (listed) {
        // One host, one pool and one breaker: listed twice it would be two of each, and its
        // metric series would clash.
        r.error(e, named + ".endpoints: " + e.Scalar() + " is listed twice");
        continue;
      }
      c.endpoints.push_back(ep);
    }
  }
  if (const auto lb = n["lb"]) {
    const auto& s = lb.IsScalar() ? lb.Scalar() : std::string{};
    if (s == "round_robin") {
      c.lb = lb_policy::round_robin;
    } else if (s == "least_request") {
      c.lb = lb_policy::least_request;
    } else if (s == "random") {
      c.lb = lb_policy::random;
    } else {
      r.error(lb, named + ".lb must be round_robin, least_request or random");
    }
  }
  r.duration(n, "resolve_interval", c.resolve_interval, named);
  r.duration(n, "request_timeout", c.request_timeout, named);
  if (const auto p = n["pool"]) {
    read_pool(r, p, c.pool, named + ".pool");
  }
  if (const auto t = n["tcp"]) {
    read_tcp(r, t, c.tcp, named + ".tcp");
  }
  if (const auto t = n["tls"]) {
    read_cluster_tls(r, t, c.tls, named + ".tls");
  }
  read_resilience(r, n, c, named);
  c.retry.policy.overall_timeout = c.request_timeout;
}

// yaml-cpp keeps every pair of a mapping but looks a key up by its first: a key written twice
// would silently lose its second value. YAML forbids it (1.2, 3.2.1.1); every one is an error.
void check_unique_keys(reader& r, const YAML::Node& n) {
  if (n.IsMap()) {
    std::vector<std::pair<std::string, YAML::Mark>> seen;
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (it->first.IsScalar()) {
        const auto& key = it->first.Scalar();
        const auto first =
            std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == key; });
        if (first != seen.end()) {
          r.error(it->first, "duplicate key '" + key + "' (first at line " +
                                 std::to_string(first->second.line + 1) +
                                 "); each key may appear once in a mapping");
        } else {
          seen.emplace_back(key, it->first.Mark());
        }
      }
      check_unique_keys(r, it->second);
    }
  } else if (n.IsSequence()) {
    for (const auto& item : n) {
      check_unique_keys(r, item);
    }
  }
}

// The listeners section.
void read_listeners(reader& r, const YAML::Node& root, const YAML::Node& listeners, config& c) {
  if (!listeners) {
    r.error(root, "the configuration needs listeners (a list of {name, address, port})");
  } else if (r.is_sequence(listeners, "listeners")) {
    for (const auto& n : listeners) {
      listener_config l;
      if (!r.is_map(n, "a listener")) {
        continue;
      }
      r.known_keys(n, {"name", "address", "port", "reuse_port", "tls", "tcp"}, "a listener");
      r.string(n, "name", l.name, "listener");
      r.address(n, "address", l.address, "listener '" + l.name + "'");
      if (!n["port"]) {
        r.error(n, "listener '" + l.name + "' needs a port");
      }
      r.integer(n, "port", l.port, 0, 65535, "listener '" + l.name + "'");
      r.boolean(n, "reuse_port", l.reuse_port, "listener '" + l.name + "'");
      if (l.name.empty()) {
        l.name = l.address + ":" + std::to_string(l.port);
      }
      // A listener is known by its name (its metrics, a reload's and an upgrade's matching).
      if (std::any_of(c.listeners.begin(), c.listeners.end(),
                      [&l](const listener_config& o) { return o.name == l.name; })) {
        r.error(n, "listener '" + l.name + "' is defined twice" +
                       (n["name"] ? ""
                                  : " (a listener without a name is named by its address "
                                    "and port: give each one a name)"));
      }
      if (const auto t = n["tls"]) {
        read_listener_tls(r, t, l.tls, "listener '" + l.name + "'.tls");
      }
      if (const auto t = n["tcp"]; t && r.is_map(t, "listener '" + l.name + "'.tcp")) {
        const std::string what = "listener '" + l.name + "'.tcp";
        r.known_keys(t, {"cluster", "idle_timeout"}, what);
        auto& tcp = l.tcp.emplace();
        r.string(t, "cluster", tcp.cluster, what);
        r.duration(t, "idle_timeout", tcp.idle_timeout, what);
        if (tcp.cluster.empty()) {
          r.error(t, what + " needs a cluster (where its connections go)");
        }
      }
      c.listeners.push_back(l);
    }
  }
}

// The clusters' names, for an error about one that is not there.
std::string cluster_names(const config& c) {
  std::string list;
  for (const auto& cl : c.clusters) {
    list += (list.empty() ? "" : ", ") + cl.name;
  }
  return list.empty() ? std::string{"none"} : list;
}

// Whether a tunnel's cluster (a tcp listener's, a CONNECT route's) can be one: not the cluster
// of an HTTP route too (its pools hold HTTP connections a tunnel must never be handed). With
// tls, the tunnel's bytes go to its hosts over TLS tether makes.
void check_tunnel_cluster(reader& r, const YAML::Node& at, const std::string& what,
                          const cluster_config& cl, const config& c, bool connect) {
  if (connect && cl.tls) {
    // A CONNECT's client speaks TLS to the origin itself: tether's TLS around it would reach
    // the origin as a handshake inside a handshake.
    r.error(at, what + ": cluster '" + cl.name +
                    "' has tls, but a CONNECT's client makes its own TLS to the origin (tls "
                    "on a tunnel's cluster is for tcp listeners and WebSocket upgrades)");
  }
  if (cl.pool.min_idle > 0) {
    r.error(at, what + ": cluster '" + cl.name +
                    "' has pool.min_idle > 0, but a tunnel's connection is made for its client "
                    "(one opened ahead would meet a server that speaks first, or times out a "
                    "login, before any client)");
  }
  for (const auto& rt : c.routes) {
    if (rt.cluster == cl.name && !rt.connect) {
      r.error(at, what + ": cluster '" + cl.name + "' is an HTTP route's cluster too (route " +
                      rt.host + " " + rt.path_prefix +
                      "); a cluster serves HTTP routes or tunnels");
      break;
    }
  }
}

// The clusters of tunnels (after the clusters and routes): tcp listeners' and CONNECT routes'.
void check_tunnels(reader& r, const YAML::Node& listeners, const YAML::Node& routes,
                   const config& c) {
  // (Nodes and entries are matched by index: only when each node became an entry.)
  const bool listed = listeners && listeners.IsSequence() && listeners.size() == c.listeners.size();
  for (std::size_t i = 0; listed && i < c.listeners.size(); ++i) {
    const auto& l = c.listeners[i];
    if (!l.tcp || l.tcp->cluster.empty()) {
      continue;
    }
    const auto at = listeners[i]["tcp"]["cluster"];
    const std::string what = "listener '" + l.name + "'.tcp";
    if (const auto* cl = c.find_cluster(l.tcp->cluster)) {
      check_tunnel_cluster(r, at, what, *cl, c, false);
    } else {
      r.error(at, what + " goes to unknown cluster '" + l.tcp->cluster +
                      "'; clusters defined: " + cluster_names(c));
    }
  }
  const bool routed = routes && routes.IsSequence() && routes.size() == c.routes.size();
  for (std::size_t i = 0; routed && i < c.routes.size(); ++i) {
    const auto& rt = c.routes[i];
    const auto at = routes[i]["cluster"];
    if (const auto* cl = c.find_cluster(rt.cluster); cl != nullptr && rt.connect && at) {
      check_tunnel_cluster(r, at, "route " + rt.host + " connect", *cl, c, true);
    }
  }
}

// TLS around a tcp listener's bytes names no application protocol unless the config lists one:
// the default ALPN ("http/1.1") is an HTTP listener's and an HTTP cluster's, and a client or a
// host that offers another (a database's, h2) would be refused over it.
void tunnel_alpn_defaults(const YAML::Node& listeners, const YAML::Node& clusters, config& c) {
  const bool listed = listeners && listeners.IsSequence() && listeners.size() == c.listeners.size();
  const bool defined = clusters && clusters.IsSequence() && clusters.size() == c.clusters.size();
  for (std::size_t i = 0; listed && i < c.listeners.size(); ++i) {
    auto& l = c.listeners[i];
    if (!l.tcp) {
      continue;
    }
    if (l.tls && !listeners[i]["tls"]["alpn"]) {
      l.tls->alpn.clear();
    }
    for (std::size_t j = 0; defined && j < c.clusters.size(); ++j) {
      auto& cl = c.clusters[j];
      if (cl.name == l.tcp->cluster && cl.tls && !clusters[j]["tls"]["alpn"]) {
        cl.tls->alpn.clear();
      }
    }
  }
}

// The routes section (after the clusters, which routes name).
void read_routes(reader& r, const YAML::Node& root, config& c) {
  const auto routes = root["routes"];
  const bool http =
      c.listeners.empty() || std::any_of(c.listeners.begin(), c.listeners.end(),
                                         [](const listener_config& l) { return !l.tcp; });
  if (!routes) {
    if (http) {
      r.error(root, "the configuration needs routes (a list of {host, path_prefix, cluster})");
    }
  } else if (r.is_sequence(routes, "routes")) {
    for (const auto& n : routes) {
      route_config rt;
      if (!r.is_map(n, "a route")) {
        continue;
      }
      r.known_keys(n, {"host", "path_prefix", "cluster", "retry", "client_subject", "connect"},
                   "a route");
      r.string(n, "host", rt.host, "route");
      r.string(n, "client_subject", rt.client_subject, "route");
      r.string(n, "path_prefix", rt.path_prefix, "route");
      r.string(n, "cluster", rt.cluster, "route");
      if (const auto v = n["retry"]) {
        rt.retry.emplace();
        read_retry(r, v, *rt.retry, "route " + rt.host + rt.path_prefix + " retry");
        if (const auto* cl = c.find_cluster(rt.cluster)) {
          rt.retry->policy.overall_timeout = cl->request_timeout;
        }
      }
      if (const auto v = n["connect"]; v && r.is_map(v, "route " + rt.host + " connect")) {
        const std::string what = "route " + rt.host + " connect";
        r.known_keys(v, {"ports", "idle_timeout"}, what);
        auto& connect = rt.connect.emplace();
        r.duration(v, "idle_timeout", connect.idle_timeout, what);
        const auto ports = v["ports"];
        if (!ports || !ports.IsSequence() || ports.size() == 0) {
          r.error(ports ? ports : v, what + " needs ports: the ports a CONNECT may name ([443])");
        } else {
          for (const auto& p : ports) {
            int port = 0;
            if (!YAML::convert<int>::decode(p, port) || port < 1 || port > 65535) {
              r.error(p, what + ".ports: expected a port (1 to 65535)");
              continue;
            }
            connect.ports.push_back(static_cast<std::uint16_t>(port));
          }
        }
      }
      if (rt.path_prefix.empty() || rt.path_prefix.front() != '/') {
        r.error(n["path_prefix"] ? n["path_prefix"] : n, "route.path_prefix must start with /");
      }
      if (rt.cluster.empty()) {
        r.error(n, "a route needs a cluster");
      } else if (c.find_cluster(rt.cluster) == nullptr) {
        r.error(n["cluster"], "route to unknown cluster '" + rt.cluster +
                                  "'; clusters defined: " + cluster_names(c));
      }
      c.routes.push_back(rt);
    }
  }
}

// The sections about the process itself: downstream limits, the admin listener, logs.
void read_process_sections(reader& r, const YAML::Node& root, config& c) {
  if (const auto d = root["downstream"]; d && r.is_map(d, "downstream")) {
    r.known_keys(d,
                 {"request_header_timeout", "idle_timeout", "max_requests_per_connection",
                  "max_request_line", "max_header_count", "max_header_bytes", "max_body_bytes"},
                 "downstream");
    r.duration(d, "request_header_timeout", c.downstream.request_header_timeout, "downstream");
    r.duration(d, "idle_timeout", c.downstream.idle_timeout, "downstream");
    r.integer(d, "max_requests_per_connection", c.downstream.max_requests_per_connection, 0,
              std::numeric_limits<std::uint32_t>::max(), "downstream");
    r.integer(d, "max_request_line", c.downstream.limits.max_request_line, 64, 1 << 20,
              "downstream");
    r.integer(d, "max_header_count", c.downstream.limits.max_header_count, 1, 10000, "downstream");
    r.integer(d, "max_header_bytes", c.downstream.limits.max_header_bytes, 256, 1 << 24,
              "downstream");
    r.integer(d, "max_body_bytes", c.downstream.limits.max_body, 0,
              std::numeric_limits<std::uint64_t>::max(), "downstream");
  }

  if (const auto a = root["admin"]; a && r.is_map(a, "admin")) {
    r.known_keys(a, {"address", "port", "upgrade_socket"}, "admin");
    r.address(a, "address", c.admin.address, "admin");
    r.integer(a, "port", c.admin.port, 0, 65535, "admin");
    r.string(a, "upgrade_socket", c.admin.upgrade_socket, "admin");
    // sockaddr_un holds 107 bytes and a NUL.
    if (c.admin.upgrade_socket.size() > 107) {
      r.error(a["upgrade_socket"], "admin.upgrade_socket is " +
                                       std::to_string(c.admin.upgrade_socket.size()) +
                                       " bytes long; a Unix socket's path holds 107 at most");
    }
    if (!c.admin.upgrade_socket.empty() && c.admin.upgrade_socket.front() != '/') {
      r.error(a["upgrade_socket"], "admin.upgrade_socket '" + c.admin.upgrade_socket +
                                       "' must be an absolute path: the running tether and the "
                                       "one taking over may start in different directories");
    }
  }

  if (const auto l = root["log"]; l && r.is_map(l, "log")) {
    r.known_keys(l, {"level", "format", "access_log"}, "log");
    r.string(l, "level", c.log.level, "log");
    static constexpr std::string_view levels[] = {"trace", "debug", "info", "warn", "error", "off"};
    if (std::find(std::begin(levels), std::end(levels), c.log.level) == std::end(levels)) {
      r.error(l["level"], "log.level must be one of trace, debug, info, warn, error, off");
    }
    std::string format = "text";
    r.string(l, "format", format, "log");
    if (format == "json") {
      c.log.format = log_format::json;
    } else if (format != "text") {
      r.error(l["format"], "log.format must be text or json");
    }
    r.string(l, "access_log", c.log.access_log, "log");
  }
}

// Two listeners (or a listener and the admin listener) on one address and port.
void check_addresses(reader& r, const YAML::Node& root, const YAML::Node& listeners,
                     const config& c) {
  std::set<std::pair<std::string, std::uint16_t>> bound;
  for (std::size_t i = 0; i < c.listeners.size(); ++i) {
    const auto& l = c.listeners[i];
    if (l.port != 0 && !bound.insert({l.address, l.port}).second) {
      r.error(listeners[i], "listener '" + l.name + "' uses " + l.address + ":" +
                                std::to_string(l.port) + ", which another listener uses");
    }
  }
  if (c.admin.port != 0 && bound.count({c.admin.address, c.admin.port}) != 0) {
    r.error(root["admin"] ? root["admin"] : root, "admin uses " + c.admin.address + ":" +
                                                      std::to_string(c.admin.port) +
                                                      ", which a listener uses");
  }
}

void read_config(reader& r, const YAML::Node& root, config& c) {
  check_unique_keys(r, root);
  if (!r.is_map(root, "the configuration")) {
    return;
  }
  r.known_keys(
      root,
      {"workers", "listeners", "routes", "clusters", "downstream", "admin", "log", "drain_timeout"},
      "the configuration");
  r.integer(root, "workers", c.workers, 0, 1024, "workers");
  r.duration(root, "drain_timeout", c.drain_timeout, "drain_timeout");

  const auto listeners = root["listeners"];
  read_listeners(r, root, listeners, c);

  const auto clusters = root["clusters"];
  if (clusters && r.is_sequence(clusters, "clusters")) {
    std::set<std::string> names;
    for (const auto& n : clusters) {
      cluster_config cl;
      read_cluster(r, n, cl, "a cluster");
      if (!cl.name.empty() && !names.insert(cl.name).second) {
        r.error(n, "cluster '" + cl.name + "' is defined twice");
      }
      c.clusters.push_back(std::move(cl));
    }
  }

  read_routes(r, root, c);
  check_tunnels(r, listeners, root["routes"], c);
  tunnel_alpn_defaults(listeners, root["clusters"], c);

  read_process_sections(r, root, c);

  check_addresses(r, root, listeners, c);
}

} // namespace

namespace {

// Where the first byte that is not UTF-8 is (RFC 3629: no overlongs, no surrogates, nothing past
// U+10FFFF), or npos. YAML streams are Unicode; yaml-cpp takes any bytes, and a name that is not
// UTF-8 would later break /config's JSON and JSON logs. A dozen lines, here because no library
// tether uses says where the fault is.
std::size_t first_invalid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (b < 0x80) {
      ++i;
      continue;
    } else if (b >= 0xC2 && b <= 0xDF) {
      n = 1, cp = b & 0x1FU;
    } else if (b >= 0xE0 && b <= 0xEF) {
      n = 2, cp = b & 0x0FU;
    } else if (b >= 0xF0 && b <= 0xF4) {
      n = 3, cp = b & 0x07U;
    } else {
      return i;
    }
    if (i + n >= s.size()) {
      return i; // cut short at the end
    }
    for (std::size_t k = 1; k <= n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0U) != 0x80U) {
        return i;
      }
      cp = (cp << 6U) | (c & 0x3FU);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 3 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return i;
    }
    i += n + 1;
  }
  return std::string_view::npos;
}

} // namespace

load_result load_config(std::string_view yaml, std::string_view source) {
  load_result out;
  if (const auto bad = first_invalid_utf8(yaml); bad != std::string_view::npos) {
    const auto before = yaml.substr(0, bad);
    const auto line = std::count(before.begin(), before.end(), '\n') + 1;
    const auto line_start = before.rfind('\n');
    const auto column = bad - (line_start == std::string_view::npos ? 0 : line_start + 1) + 1;
    out.errors.push_back(std::string{source} + ":" + std::to_string(line) + ":" +
                         std::to_string(column) + ": not UTF-8 (a YAML file is Unicode text)");
    return out;
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string{yaml});
  } catch (const YAML::ParserException& e) {
    out.errors.push_back(std::string{source} + ":" + std::to_string(e.mark.line + 1) + ":" +
                         std::to_string(e.mark.column + 1) + ": YAML syntax: " + e.msg);
    return out;
  }
  config c;
  reader r{source, out.errors};
  try {
    read_config(r, root, c);
  } catch (const YAML::Exception& e) {
    out.errors.push_back(std::string{source} + ":" + std::to_string(e.mark.line + 1) + ":" +
                         std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  if (out.errors.empty()) {
    out.value = std::move(c);
  }
  // In the order of the file, whatever order the checks ran in.
  const auto place = [prefix = source.size() + 1](const std::string& e) {
    unsigned line = 0;
    unsigned column = 0;
    const char* p = e.c_str() + std::min(prefix, e.size());
    const auto [l_end, l_ec] = std::from_chars(p, e.c_str() + e.size(), line);
    if (l_ec == std::errc{} && *l_end == ':') {
      std::from_chars(l_end + 1, e.c_str() + e.size(), column);
    }
    return std::pair{line, column};
  };
  std::stable_sort(out.errors.begin(), out.errors.end(),
                   [&](const std::string& a, const std::string& b) { return place(a) < place(b); });
  return out;
}

load_result load_config_file(const std::string& path) {
  std::ifstream in{path};
  if (!in) {
    return {std::nullopt, {path + ": cannot be read"}};
  }
  std::stringstream text;
  text << in.rdbuf();
  return load_config(text.str(), path);
}

std::string_view default_config_yaml() noexcept {
  return R"(# tether proxy's built-in configuration: `tether proxy` with no -c runs this, and starts
# the two demo upstreams it names itself.
listeners:
  - name: main
    address: 127.0.0.1
    port: 8080
routes:
  - host: "*"
    path_prefix: /
    cluster: demo
clusters:
  - name: demo
    endpoints: ["127.0.0.1:8081", "127.0.0.1:8082"]
    lb: round_robin
    request_timeout: 5s
admin:
  address: 127.0.0.1
  port: 9901
)";
}

namespace {

using json = nlohmann::ordered_json;

long long ms(clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

json retry_json(const retry_config& r) {
  using resilience::retry_on;
  json on = json::array();
  for (const auto& [name, flag] : retry_on_names) {
    if (resilience::has(r.policy.conditions, flag)) {
      on.push_back(name);
    }
  }
  return json{
      {"retry_on", on},
      {"num_retries", r.policy.max_attempts - 1},
      {"per_try_timeout_ms", ms(r.policy.per_try_timeout)},
      {"backoff", {{"base_ms", ms(r.policy.backoff.base)}, {"max_ms", ms(r.policy.backoff.cap)}}},
      {"retriable_status_codes", r.policy.retriable_status_codes},
      {"max_retry_after_ms", ms(r.policy.max_retry_after)},
      {"buffer_limit", r.buffer_limit}};
}

// A cluster as /config shows it.
json cluster_json(const cluster_config& cl) {
  json endpoints = json::array();
  for (const auto& e : cl.endpoints) {
    endpoints.push_back(e.host + ":" + std::to_string(e.port));
  }
  json out = {{"name", cl.name},
              {"endpoints", endpoints},
              {"lb", to_string(cl.lb)},
              {"resolve_interval_ms", ms(cl.resolve_interval)},
              {"request_timeout_ms", ms(cl.request_timeout)},
              {"pool",
               {{"max_size", cl.pool.max_size},
                {"min_idle", cl.pool.effective_min_idle()},
                {"acquire_timeout_ms", ms(cl.pool.acquire_timeout)},
                {"idle_timeout_ms", ms(cl.pool.idle_timeout)},
                {"max_lifetime_ms", ms(cl.pool.max_lifetime)}}},
              {"tcp",
               {{"connect_timeout_ms", ms(cl.tcp.connect_timeout)},
                {"no_delay", cl.tcp.no_delay},
                {"keepalive", cl.tcp.keepalive},
                {"keepalive_idle_ms", ms(cl.tcp.keepalive_idle)},
                {"keepalive_interval_ms", ms(cl.tcp.keepalive_interval)},
                {"keepalive_probes", cl.tcp.keepalive_probes},
                {"user_timeout_ms", ms(cl.tcp.user_timeout)}}}};
  if (const auto& t = cl.tls) {
    // Paths only: what a key file holds never leaves it.
    out["tls"] = {{"verify", t->verify},
                  {"ca_file", t->ca_file.empty() ? "system" : t->ca_file},
                  {"server_name", t->server_name},
                  {"alpn", t->alpn},
                  {"cert_file", t->cert_file},
                  {"key_file", t->key_file},
                  {"min_version", tls::to_string(t->min_version)},
                  {"handshake_timeout_ms", ms(t->handshake_timeout)},
                  {"session_resumption", t->session_resumption}};
  } else {
    out["tls"] = "off";
  }
  out["retry"] = retry_json(cl.retry);
  out["retry_budget"] = cl.retry_budget
                            ? json{{"percent", cl.retry_budget->percent_can_retry * 100.0},
                                   {"min_retries_per_second", cl.retry_budget->min_retries_per_sec},
                                   {"ttl_ms", ms(cl.retry_budget->ttl)}}
                            : json("off");
  out["circuit_breakers"] = {{"max_connections", cl.limits.max_connections},
                             {"max_pending_requests", cl.limits.max_pending_requests},
                             {"max_requests", cl.limits.max_requests},
                             {"max_retries", cl.limits.max_retries}};
  const auto& b = cl.breaker.options;
  out["breaker"] =
      cl.breaker.enabled
          ? json{{"failure_rate_threshold", b.failure_rate_threshold},
                 {"window", b.window_size},
                 {"minimum_calls", b.minimum_calls},
                 {"wait_in_open_ms", ms(b.wait_in_open)},
                 {"half_open_calls", b.permitted_calls_in_half_open},
                 {"failures",
                  b.failures == resilience::breaker_failures::all_5xx ? "5xx" : "gateway-error"}}
          : json("off");
  if (const auto& o = cl.outlier_detection) {
    out["outlier_detection"] = {{"consecutive_5xx", o->consecutive_5xx},
                                {"consecutive_gateway_failure", o->consecutive_gateway_failure},
                                {"interval_ms", ms(o->interval)},
                                {"base_ejection_time_ms", ms(o->base_ejection_time)},
                                {"max_ejection_time_ms", ms(o->max_ejection_time)},
                                {"max_ejection_percent", o->max_ejection_percent}};
  } else {
    out["outlier_detection"] = "off";
  }
  const auto& h = cl.health_check;
  if (h.kind == health_check_kind::none) {
    out["health_check"] = "off";
  } else {
    out["health_check"] = {{"type", h.kind == health_check_kind::http ? "http" : "tcp"},
                           {"path", h.path},
                           {"expected_statuses", h.expected_statuses},
                           {"interval_ms", ms(h.interval)},
                           {"jitter_ms", ms(h.jitter)},
                           {"timeout_ms", ms(h.timeout)},
                           {"healthy_threshold", h.healthy_threshold},
                           {"unhealthy_threshold", h.unhealthy_threshold}};
  }
  return out;
}

} // namespace

std::string to_json(const cluster_config& c) {
  return cluster_json(c).dump();
}

std::string to_json(const config& c) {
  json listeners = json::array();
  for (const auto& l : c.listeners) {
    json listener = {
        {"name", l.name}, {"address", l.address}, {"port", l.port}, {"reuse_port", l.reuse_port}};
    if (const auto& t = l.tls) {
      json certificates = json::array();
      for (const auto& pair : t->certificates) {
        certificates.push_back({{"cert_file", pair.cert_file}, {"key_file", pair.key_file}});
      }
      listener["tls"] = {{"certificates", certificates},
                         {"alpn", t->alpn},
                         {"min_version", tls::to_string(t->min_version)},
                         {"client_ca_file", t->client_ca_file},
                         {"require_client_certificate", t->require_client_certificate}};
    }
    if (const auto& t = l.tcp) {
      listener["tcp"] = {{"cluster", t->cluster}, {"idle_timeout_ms", ms(t->idle_timeout)}};
    }
    listeners.push_back(std::move(listener));
  }
  json routes = json::array();
  for (const auto& r : c.routes) {
    json route = {{"host", r.host}, {"path_prefix", r.path_prefix}, {"cluster", r.cluster}};
    if (r.connect) {
      route["connect"] = {{"ports", r.connect->ports},
                          {"idle_timeout_ms", ms(r.connect->idle_timeout)}};
    }
    if (!r.client_subject.empty()) {
      route["client_subject"] = r.client_subject;
    }
    if (r.retry) {
      route["retry"] = retry_json(*r.retry);
    }
    routes.push_back(route);
  }
  json clusters = json::array();
  for (const auto& cl : c.clusters) {
    clusters.push_back(cluster_json(cl));
  }
  const json out = {{"workers", c.workers},
                    {"listeners", listeners},
                    {"routes", routes},
                    {"clusters", clusters},
                    {"downstream",
                     {{"request_header_timeout_ms", ms(c.downstream.request_header_timeout)},
                      {"idle_timeout_ms", ms(c.downstream.idle_timeout)},
                      {"max_requests_per_connection", c.downstream.max_requests_per_connection},
                      {"max_request_line", c.downstream.limits.max_request_line},
                      {"max_header_count", c.downstream.limits.max_header_count},
                      {"max_header_bytes", c.downstream.limits.max_header_bytes},
                      {"max_body_bytes", c.downstream.limits.max_body}}},
                    {"admin",
                     {{"address", c.admin.address},
                      {"port", c.admin.port},
                      {"upgrade_socket", c.admin.upgrade_socket}}},
                    {"log",
                     {{"level", c.log.level},
                      {"format", c.log.format == log_format::json ? "json" : "text"},
                      {"access_log", c.log.access_log}}},
                    {"drain_timeout_ms", ms(c.drain_timeout)}};
  return out.dump(2, ' ', false, json::error_handler_t::replace);
}

} // namespace tether::proxy
