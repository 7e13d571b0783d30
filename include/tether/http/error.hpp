#pragma once

#include <string_view>
#include <system_error>
#include <type_traits>

namespace tether::http {

/// Why a message was rejected. Each maps to the status a server answers with (status_of) and a
/// short reason that goes in that answer's body.
enum class errc {
  bad_request_line = 1,   ///< 400: malformed method, target or version
  method_not_implemented, ///< 501: a method the parser does not know
  target_too_long,        ///< 414: request line longer than the limit
  too_many_headers,       ///< 431: more header fields than the limit
  headers_too_large,      ///< 431: header section larger than the limit
  body_too_large,         ///< 413: body larger than the limit
  invalid_header,         ///< 400: malformed field name or value (control bytes, whitespace)
  obsolete_line_folding,  ///< 400: a header value continued on the next line (obs-fold)
  bare_line_ending,       ///< 400: CR or LF alone where CRLF is due
  content_length_with_transfer_encoding, ///< 400: both framing headers (request smuggling)
  invalid_content_length,                ///< 400: not a number, or several that differ
  invalid_transfer_encoding,             ///< 400: obfuscated, or chunked not last in a request
  invalid_chunk,         ///< 400: bad chunk size (overflow, sign, underscore) or framing
  invalid_status_line,   ///< 502 (upstream): malformed status line
  unexpected_eof,        ///< the peer closed in the middle of a message
  data_after_close,      ///< 400: bytes after a message that closes the connection
  malformed,             ///< 400: any other violation of HTTP/1.1 syntax
  invalid_target,        ///< 400: a control byte or space in the request-target, or a wrong form
  version_not_supported, ///< 505: HTTP/2 or later on an HTTP/1.1 connection
  unsupported_transfer_coding, ///< 501: a request body in a coding besides chunked (gzip, chunked)
  missing_host,                ///< 400: an HTTP/1.1 request without Host (RFC 9112 3.2)
  duplicate_host,              ///< 400: more than one Host field
  invalid_host,                ///< 400: a Host that is not uri-host [":" port]
  host_mismatch,               ///< 400: Host disagrees with an absolute-form target's authority
  bad_content_coding,          ///< a body that is not what its Content-Encoding says (corrupt gzip)
};

/// The category of tether::http::errc; its name is "tether.http".
[[nodiscard]] const std::error_category& error_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// The status a server answers a request rejected for `e` with (400, 413, 414, 431, 501, 505).
[[nodiscard]] int status_of(errc e) noexcept;

} // namespace tether::http

template <>
struct std::is_error_code_enum<tether::http::errc> : std::true_type {};
