#pragma once

#include <string>
#include <system_error>
#include <type_traits>

namespace tether {

/// tether's own error conditions. Every completion reports an std::error_code; these are the
/// values that do not come from the operating system.
enum class errc {
  pool_timeout = 1,   ///< no connection became free within the acquire timeout
  pool_closed,        ///< the pool is closing or closed
  circuit_open,       ///< a circuit breaker refused the call
  budget_exhausted,   ///< the retry budget has no retry left to spend
  deadline_exceeded,  ///< the overall deadline passed
  retries_exhausted,  ///< every permitted attempt failed
  overloaded,         ///< a concurrency limit (connections, pending, requests, retries) is full
  host_ejected,       ///< the host is ejected by outlier detection
  blocking_on_worker, ///< a blocking call was made on the thread that must serve it
  // TLS handshakes (the tls layer reports these; the upstream layer does not retry the
  // certificate errors: a second try meets the same certificate).
  tls_certificate_expired, ///< the peer's certificate (or one in its chain) has expired
  tls_unknown_ca,          ///< the peer's chain does not lead to a trusted CA
  tls_hostname_mismatch,   ///< the certificate is not for the name (or address) asked for
  tls_certificate_invalid, ///< another verification failure (not yet valid, bad signature...)
  tls_certificate_refused, ///< the peer refused our certificate, or wanted one we lack
  tls_protocol_version,    ///< no TLS version both sides accept (e.g. a TLS 1.0-only peer)
  tls_handshake_timeout,   ///< the handshake did not finish within its timeout
  tls_handshake_failed,    ///< any other handshake failure (not TLS at all, no common cipher)
  // Requests.
  response_timeout,   ///< no whole response within the per-try timeout (the connection was made)
  invalid_request,    ///< the request was refused before anything was sent (the message says why)
  too_many_redirects, ///< a redirect beyond the limit (client_options::max_redirects)
  bad_redirect,       ///< a redirect whose Location cannot be followed (the message says why)
  proxy_refused,      ///< a forward proxy did not open the tunnel (CONNECT) to the host
  proxy_authentication_required, ///< the proxy wants credentials it was not given (407)
};

/// True for every tls_* code above (a handshake that failed, or a peer's TLS alert).
[[nodiscard]] bool is_tls_error(std::error_code ec) noexcept;

/// True for the TLS errors about a certificate (expired, unknown CA, hostname mismatch, invalid,
/// refused): a retry meets the same certificate, so none is retried.
[[nodiscard]] bool is_certificate_error(std::error_code ec) noexcept;

/// The category of tether::errc values; its name is "tether".
[[nodiscard]] const std::error_category& error_category() noexcept;

/// Makes an error_code from a tether::errc (found by argument-dependent lookup).
[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

} // namespace tether

template <>
struct std::is_error_code_enum<tether::errc> : std::true_type {};
