#pragma once

#include <memory>
#include <string>
#include <vector>

#include <asio/ssl/context.hpp>

#include "tether/tls/options.hpp"

namespace tether::tls {

/// An OpenSSL context for connecting to upstreams, built once from client_options and shared by
/// every connection made with them (an SSL_CTX is safe to share between threads once built).
/// Mozilla's "intermediate" settings: TLS 1.2 at least, ECDHE with AES-GCM or ChaCha20 for 1.2,
/// X25519, P-256 and P-384; no compression, no renegotiation.
class client_context {
public:
  /// Throws std::invalid_argument saying which file and what is wrong with it (unreadable, not
  /// PEM, a certificate that does not match its key).
  explicit client_context(client_options options);

  [[nodiscard]] asio::ssl::context& native() noexcept { return context_; }
  [[nodiscard]] const client_options& options() const noexcept { return options_; }

private:
  client_options options_;
  asio::ssl::context context_;
};

/// The contexts a listener terminates TLS with: one per certificate, the first the default, the
/// others chosen by the client's SNI name (exact, or a `*.` wildcard for one label).
class server_context {
public:
  /// Loads every certificate and key and checks them. Throws std::invalid_argument naming the
  /// file and the fault: unreadable, not PEM, a key that does not match its certificate, a
  /// certificate that has expired or is not valid yet.
  explicit server_context(server_options options);
  ~server_context();
  server_context(const server_context&) = delete;
  server_context& operator=(const server_context&) = delete;

  /// The default certificate's context: a new connection starts with it.
  [[nodiscard]] asio::ssl::context& native() noexcept;
  [[nodiscard]] const server_options& options() const noexcept { return options_; }
  /// Things worth a warning that do not stop a start (a key file others may read).
  [[nodiscard]] const std::vector<std::string>& warnings() const noexcept { return warnings_; }
  /// The names (subjectAltName DNS entries) the certificate at `index` serves.
  [[nodiscard]] const std::vector<std::string>& names(std::size_t index) const;

  struct entry;

private:
  server_options options_;
  std::vector<std::unique_ptr<entry>> entries_;
  std::vector<std::string> warnings_;
};

/// Checks a listener's certificates as server_context would, without keeping them: the message
/// of the first fault (which file, what), or empty. For `tether validate`.
[[nodiscard]] std::string check_server_options(const server_options& options);

} // namespace tether::tls
