#pragma once
// What the HTTP client sends and receives: URLs, requests, responses, and the checks that say
// what is wrong with one before anything goes on the wire.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tether/core/clock.hpp"

namespace tether::http {

/// An absolute `http://` or `https://` URL taken apart.
struct url {
  std::string host;         ///< a name, an IPv4 address, or an IPv6 address without brackets
  std::uint16_t port = 80;  ///< 80 (443 for https) unless the URL says otherwise
  std::string target = "/"; ///< path and query, as sent in the request line
  bool tls = false;         ///< https

  /// Parses `http[s]://host[:port][/path][?query][#fragment]`. nullopt for anything else
  /// (another scheme, user info, an empty host, a bad port, control bytes or spaces); then
  /// `*problem`, when given, says what is wrong and where.
  [[nodiscard]] static std::optional<url> parse(std::string_view text,
                                                std::string* problem = nullptr);
};

/// One header field the client sends or received.
struct field {
  std::string name;
  std::string value;
};

/// A request for the client to send. The client adds Host (unless given), Content-Length (for a
/// body, or for POST, PUT and PATCH without one) and User-Agent (unless given); framing and
/// hop-by-hop fields are the client's to set and are refused here.
struct request {
  std::string method = "GET";
  std::string host;
  std::uint16_t port = 80;
  std::string target = "/";
  std::vector<field> headers{};
  std::string body{};
  /// Over TLS (https), as client_options::tls says: the host's certificate verified for `host`,
  /// which is also sent as SNI.
  bool tls = false;
  /// This request's limits, instead of the client's (client_options::retry) when set: the
  /// overall timeout covers every attempt and wait between them (errc::deadline_exceeded), the
  /// per-try one each attempt (errc::response_timeout); zero turns either off.
  std::optional<clock::duration> timeout{};
  std::optional<clock::duration> per_try_timeout{};

  /// A request for `method` on an absolute http:// or https:// URL. Throws std::invalid_argument
  /// saying what is wrong with the method or the URL; url::parse checks a URL without throwing.
  [[nodiscard]] static request to(std::string_view method, std::string_view url);

  /// What the client would refuse to send in this request, in a sentence ("the header
  /// Content-Length is the client's to set: it writes it from the body"), or empty when
  /// nothing. The client checks every request with it before sending anything.
  [[nodiscard]] std::string problem() const;
};

/// A response, read whole (up to client_options::max_response_body).
struct response {
  int status = 0;
  std::string reason{};
  int version_minor = 1;
  std::vector<field> headers{};
  std::string body{};

  /// The value of the first header named `name` (case-insensitive), or nullptr.
  [[nodiscard]] const std::string* find(std::string_view name) const noexcept;
};

/// Parses a Retry-After value (RFC 9110 10.2.3): delay-seconds, or an IMF-fixdate taken against
/// `now`. nullopt when it is neither.
[[nodiscard]] std::optional<clock::duration>
parse_retry_after(std::string_view value, std::chrono::system_clock::time_point now);

} // namespace tether::http
