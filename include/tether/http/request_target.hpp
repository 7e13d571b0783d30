#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <system_error>

#include "tether/http/error.hpp"
#include "tether/http/parser.hpp"

namespace tether::http {

/// The four forms of a request-target (RFC 9112 3.2).
enum class target_form : std::uint8_t {
  origin,    ///< "/path?query": what clients send to a server
  absolute,  ///< "http://host:port/path?query": what clients send to a proxy; a server must take it
  authority, ///< "host:port": CONNECT only
  asterisk,  ///< "*": OPTIONS only, about the server as a whole
};

/// A request-target, read and checked. Views into the target given.
struct request_target {
  target_form form = target_form::origin;
  std::string_view scheme;    ///< absolute-form: "http" or "https", as sent
  std::string_view authority; ///< absolute- and authority-form: host[:port]
  /// origin- and absolute-form: the path and query. Empty for an absolute-form without a path
  /// ("http://a" or "http://a?q"): its origin-form is "/" followed by it (RFC 9112 3.2.1).
  std::string_view path_and_query;
};

/// Reads the request-target of a `method` request. errc::invalid_target when its form is not
/// one that method takes ("*" only for OPTIONS; host:port only for CONNECT, and CONNECT only
/// with it), an absolute-form's scheme is not http or https, it has userinfo ("user@host",
/// which RFC 9110 4.2.4 tells a recipient to treat as an error) or no valid host.
[[nodiscard]] std::error_code read_request_target(std::string_view method, std::string_view target,
                                                  request_target& out);

/// Whether `value` is uri-host [":" port] (RFC 9110 7.2, RFC 3986 3.2.2): a bracketed IPv6
/// literal, or a non-empty run of unreserved, percent-encoded and sub-delims characters (a name
/// or an IPv4 address), then optionally a colon and a port of up to five digits (at most
/// 65535). Empty, "/", "@", a space or a bad port make it invalid.
[[nodiscard]] bool is_valid_authority(std::string_view value) noexcept;

/// Whether two authorities name the same host and port: the host compared case-insensitively,
/// an omitted port read as the scheme's default (80 for http, 443 for https).
[[nodiscard]] bool same_authority(std::string_view a, std::string_view b,
                                  std::string_view scheme) noexcept;

/// The Host rules a server applies to a request (RFC 9112 3.2 and 3.2.2): exactly one Host
/// field in HTTP/1.1 (errc::missing_host, errc::duplicate_host), at most one in HTTP/1.0; a
/// valid value (errc::invalid_host). With an absolute-form target, its authority is the one
/// that counts and a Host naming another host is refused (errc::host_mismatch): the RFC says to
/// ignore the Host there, but anything in front of tether that routes or filters on Host would
/// have judged another request than the one served. On success `authority` is what the request
/// is for: the target's authority, else the Host's value (empty: an HTTP/1.0 request without
/// Host).
[[nodiscard]] std::error_code check_host(std::span<const header> fields, int version_minor,
                                         const request_target& target, std::string_view& authority);

/// A request's Host fields: how many, and the first one's value.
struct host_fields {
  std::size_t count = 0;
  std::string_view value;
};

/// The Host fields among `fields`.
[[nodiscard]] host_fields find_host(std::span<const header> fields) noexcept;

/// check_host on Host fields found already (a server that scans a head's fields once).
[[nodiscard]] std::error_code check_host(const host_fields& host, int version_minor,
                                         const request_target& target, std::string_view& authority);

/// The host of an authority, without its port, and an IPv6 literal without its brackets.
[[nodiscard]] std::string_view host_of(std::string_view authority) noexcept;

} // namespace tether::http
