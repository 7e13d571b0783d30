#include "tether/tls/tls_metrics.hpp"

namespace tether::tls {
namespace {

double read(const std::atomic<std::uint64_t>& value) {
  return static_cast<double>(value.load(std::memory_order_relaxed));
}

} // namespace

std::vector<metrics::callback_registration> watch_handshakes(metrics::registry& registry,
                                                             const std::string& prefix,
                                                             const metrics::labels& labels,
                                                             const handshake_counters& counters) {
  std::vector<metrics::callback_registration> out;
  const auto handshakes = prefix + "_tls_handshakes_total";
  const char* handshakes_help = "TLS handshakes completed, full or resuming an earlier session";
  out.push_back(registry.callback(handshakes, handshakes_help, metrics::metric_kind::counter,
                                  metrics::with_label(labels, "result", "full"),
                                  [&counters] { return read(counters.full); }));
  out.push_back(registry.callback(handshakes, handshakes_help, metrics::metric_kind::counter,
                                  metrics::with_label(labels, "result", "resumed"),
                                  [&counters] { return read(counters.resumed); }));
  for (std::size_t i = 0; i < failure_causes; ++i) {
    const auto cause = static_cast<failure_cause>(i);
    out.push_back(registry.callback(
        prefix + "_tls_handshake_failures_total", "TLS handshakes that failed, by cause",
        metrics::metric_kind::counter, metrics::with_label(labels, "cause", to_string(cause)),
        [&counters, i] { return read(counters.failures[i]); }));
  }
  const auto versions = prefix + "_tls_protocol_total";
  const char* versions_help = "TLS handshakes completed, by protocol version";
  out.push_back(
      registry.callback(versions, versions_help, metrics::metric_kind::counter,
                        metrics::with_label(labels, "version", to_string(version::tls1_2)),
                        [&counters] { return read(counters.tls1_2); }));
  out.push_back(
      registry.callback(versions, versions_help, metrics::metric_kind::counter,
                        metrics::with_label(labels, "version", to_string(version::tls1_3)),
                        [&counters] { return read(counters.tls1_3); }));
  return out;
}

} // namespace tether::tls
