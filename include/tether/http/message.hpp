#pragma once
// What the HTTP client sends and receives: URLs, requests, responses, and the checks that say
// what is wrong with one before anything goes on the wire.

#include <chrono>
#include <cstdint>
#include <functional>
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
  /// Redirects this request follows, instead of client_options::max_redirects when set.
  std::optional<std::uint32_t> max_redirects{};
  /// Streams the answer's body: called with each piece as it arrives instead of keeping it in
  /// response::body (which stays empty), so a body larger than memory can be read. Return
  /// false to stop the transfer: the request ends with std::errc::operation_canceled and the
  /// connection is closed. Only the answer's body comes here (a response the client retries,
  /// or a redirect it follows, never does), and once a piece has come the request is not
  /// retried: the caller has seen part of an answer. No max_response_body applies, and the body
  /// comes as it was sent (not decoded: client_options::decompress is off for this request).
  std::function<bool(std::string_view)> on_body{};
  /// Produces the body as it is sent, instead of `body`, for a body larger than memory: called
  /// for each piece until it returns an empty view (the end); a piece stays valid until the
  /// next call. With `body_length`, the body goes with that Content-Length (a source that
  /// gives more or less is an error and the connection is closed); without, chunked. Such a
  /// request is sent at most once: a failure after the first byte is not retried, a 307 or 308
  /// is not followed (both would need the body again).
  std::function<std::string_view()> body_source{};
  std::optional<std::uint64_t> body_length{};

  /// A request for `method` on an absolute http:// or https:// URL. Throws std::invalid_argument
  /// saying what is wrong with the method or the URL; url::parse checks a URL without throwing.
  [[nodiscard]] static request to(std::string_view method, std::string_view url);

  /// The absolute URL this request goes to: "https://example.com:8443/items?page=2" (the port
  /// only when it is not the scheme's).
  [[nodiscard]] std::string target_url() const;

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
  /// The body came gzip or deflate and the client decoded it (client_options::decompress); the
  /// Content-Encoding and Content-Length fields it no longer matches were removed.
  bool decompressed = false;

  /// The value of the first header named `name` (case-insensitive), or nullptr.
  [[nodiscard]] const std::string* find(std::string_view name) const noexcept;
};

/// 301, 302, 303, 307 and 308: the statuses whose Location the client follows when asked
/// (client_options::max_redirects). 300 (a choice), 304 (a cache's answer) and 305/306 (unused)
/// are answers.
[[nodiscard]] bool is_redirect(int status) noexcept;

/// The request a redirect asks for (RFC 9110 15.4): `r` again, to `location` resolved against
/// r's URL (RFC 3986 5.2: absolute, "//host/path", "/path", "path", "?query"). The method
/// follows RFC 9110 and what browsers do: 303 turns every method but HEAD into GET, 301 and 302
/// turn POST into GET, 307 and 308 keep the method and the body. A request turned into a GET
/// loses its body and its Content-* fields. A request to another origin (scheme, host or port)
/// loses the credentials it carried (Authorization, Proxy-Authorization, Cookie) and a Host it
/// was given. nullopt when `location` cannot be followed (not a URI reference, not http or
/// https); then `*problem` says why, naming it.
[[nodiscard]] std::optional<request>
redirected(const request& r, int status, std::string_view location, std::string* problem = nullptr);

/// Parses a Retry-After value (RFC 9110 10.2.3): delay-seconds, or an IMF-fixdate taken against
/// `now`. nullopt when it is neither.
[[nodiscard]] std::optional<clock::duration>
parse_retry_after(std::string_view value, std::chrono::system_clock::time_point now);

} // namespace tether::http
