#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "tether/core/clock.hpp"

namespace tether::tls {

using namespace std::chrono_literals;

/// The lowest TLS version a side accepts. Nothing older than 1.2 is offered (RFC 8996).
enum class version { tls1_2, tls1_3 };

/// "TLSv1.2", "TLSv1.3" (as OpenSSL and the config spell them).
[[nodiscard]] const char* to_string(version v) noexcept;

/// How tether connects to a TLS upstream (the HTTP client's https:// hosts, a proxy cluster's
/// `tls:`). Verification is on unless turned off: the system's trust store (or `ca_file`), the
/// host name checked against the certificate, SNI sent.
struct client_options {
  bool verify = true;    ///< verify the server's chain and name; off only for tests and labs
  std::string ca_file{}; ///< PEM file of trusted CAs; empty: the system's trust store
  /// The name sent as SNI and checked against the certificate; empty: the host's own name (an IP
  /// address is checked against the certificate's IP entries and sends no SNI, as RFC 6066 says).
  std::string server_name{};
  std::vector<std::string> alpn{"http/1.1"}; ///< protocols offered, in preference order
  std::string cert_file{}; ///< a client certificate chain (PEM), for mTLS; with key_file
  std::string key_file{};  ///< its private key (PEM)
  version min_version = version::tls1_2;
  clock::duration handshake_timeout = 10s; ///< from the TCP connection to the handshake's end
  /// Keep the last session per host (TLS 1.3 tickets, TLS 1.2 sessions) and offer it on the next
  /// connection: an abbreviated handshake, one certificate check less.
  bool session_resumption = true;

  /// Throws std::invalid_argument naming the field when a value is out of range.
  void validate() const;
};

/// One certificate a listener presents: a chain and its key. The names it serves (for SNI) are
/// read from the certificate itself (its subjectAltName DNS entries).
struct certificate {
  std::string cert_file; ///< PEM: the leaf first, then its intermediates
  std::string key_file;  ///< PEM private key
};

/// How a listener terminates TLS.
struct server_options {
  /// The first is the default, presented when the client sends no SNI or a name no certificate
  /// has; the others are chosen by the SNI name.
  std::vector<certificate> certificates{};
  std::vector<std::string> alpn{"http/1.1"}; ///< protocols accepted, in the server's preference
  version min_version = version::tls1_2;
  /// PEM file of CAs that sign client certificates; set, clients are asked for one (mTLS).
  std::string client_ca_file{};
  bool require_client_certificate = false; ///< with client_ca_file: refuse clients without one

  /// Throws std::invalid_argument naming the field when a value is out of range.
  void validate() const;
};

} // namespace tether::tls
