#include "tether/core/error.hpp"

namespace tether {
namespace {

class tether_category final : public std::error_category {
public:
  [[nodiscard]] const char* name() const noexcept override { return "tether"; }

  [[nodiscard]] std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
    case errc::pool_timeout:
      return "timed out waiting for a pooled connection";
    case errc::pool_closed:
      return "the connection pool is closed";
    case errc::circuit_open:
      return "circuit breaker is open";
    case errc::budget_exhausted:
      return "retry budget exhausted";
    case errc::deadline_exceeded:
      return "deadline exceeded";
    case errc::retries_exhausted:
      return "all retry attempts failed";
    case errc::overloaded:
      return "concurrency limit reached";
    case errc::host_ejected:
      return "host ejected by outlier detection";
    case errc::blocking_on_worker:
      return "blocking call on the pool's own thread (it would wait for itself); use the async API";
    case errc::tls_certificate_expired:
      return "TLS: the peer's certificate has expired";
    case errc::tls_unknown_ca:
      return "TLS: the peer's certificate is not signed by a trusted CA";
    case errc::tls_hostname_mismatch:
      return "TLS: the peer's certificate does not match the host name";
    case errc::tls_certificate_invalid:
      return "TLS: the peer's certificate failed verification";
    case errc::tls_certificate_refused:
      return "TLS: the peer refused our certificate (or required one)";
    case errc::tls_protocol_version:
      return "TLS: no protocol version both sides accept";
    case errc::tls_handshake_timeout:
      return "TLS: handshake timed out";
    case errc::tls_handshake_failed:
      return "TLS: handshake failed";
    case errc::response_timeout:
      return "no response within the per-try timeout";
    case errc::invalid_request:
      return "invalid request, not sent";
    case errc::too_many_redirects:
      return "too many redirects";
    case errc::bad_redirect:
      return "a redirect that cannot be followed";
    case errc::proxy_refused:
      return "the proxy refused to open a tunnel to the host";
    case errc::proxy_authentication_required:
      return "the proxy wants credentials (407): give them in its URL, http://user:password@host";
    }
    return "unknown tether error " + std::to_string(value);
  }
};

} // namespace

const std::error_category& error_category() noexcept {
  static const tether_category category;
  return category;
}

bool is_tls_error(std::error_code ec) noexcept {
  return ec.category() == error_category() &&
         ec.value() >= static_cast<int>(errc::tls_certificate_expired) &&
         ec.value() <= static_cast<int>(errc::tls_handshake_failed);
}

bool is_certificate_error(std::error_code ec) noexcept {
  // The certificate codes come first among the TLS ones.
  return is_tls_error(ec) && ec.value() <= static_cast<int>(errc::tls_certificate_refused);
}

} // namespace tether
