#pragma once

#include <string>
#include <vector>

#include "tether/metrics/registry.hpp"
#include "tether/tls/handshake.hpp"

namespace tether::tls {

/// Exposes `counters` as three counter families read at scrape time, each with `labels`:
///   <prefix>_tls_handshakes_total{result="full"|"resumed"}
///   <prefix>_tls_handshake_failures_total{cause="certificate_expired"|"unknown_ca"|...}
///   <prefix>_tls_protocol_total{version="TLSv1.2"|"TLSv1.3"}
/// The series stay while the returned registrations live; `counters` must outlive them.
[[nodiscard]] std::vector<metrics::callback_registration>
watch_handshakes(metrics::registry& registry, const std::string& prefix,
                 const metrics::labels& labels, const handshake_counters& counters);

} // namespace tether::tls
