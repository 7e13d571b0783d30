#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "tether/http/parser.hpp"

namespace tether::http {

/// How a head is written back out.
struct serialize_options {
  /// Keep Upgrade (and Connection: upgrade) because the connection becomes a tunnel.
  bool tunnel = false;
  /// Header fields to add after the message's own (Via, X-Forwarded-For, ...).
  std::span<const header> extra = {};
  /// Further fields not to write, by name (case-insensitive): ones the writer answers itself
  /// (Expect) or replaces (X-Forwarded-For).
  std::span<const std::string_view> drop = {};
};

/// True for the hop-by-hop fields a proxy must not forward (RFC 9110 7.6.1): Connection and every
/// field it names, Keep-Alive, Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE,
/// Trailer, and Upgrade unless the connection becomes a tunnel. Content-Length and
/// Transfer-Encoding are framing and stay: the body is forwarded as it was framed.
[[nodiscard]] bool is_hop_by_hop(std::string_view name, const message_head& head,
                                 bool tunnel = false) noexcept;

/// Appends the request line and header section of `head` (target as received) to `out`,
/// without hop-by-hop fields, ending with the blank line.
void write_request_head(std::string& out, const message_head& head,
                        const serialize_options& options = {});

/// Appends the status line and header section of `head` to `out`, without hop-by-hop fields.
void write_response_head(std::string& out, const message_head& head,
                         const serialize_options& options = {});

/// A Date field's value for `t`: IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 5.6.7).
[[nodiscard]] std::string http_date(std::chrono::system_clock::time_point t);

/// The reason phrase of a status code ("Not Found"), or "Unknown".
[[nodiscard]] std::string_view reason_phrase(int status) noexcept;

/// What a response tether gives itself says of its connection.
enum class connection_field : std::uint8_t {
  none,       ///< nothing: HTTP/1.1's default, the connection stays
  close,      ///< Connection: close
  keep_alive, ///< Connection: keep-alive (an HTTP/1.0 client closes unless told)
};

/// A whole response tether answers itself: the admin listener's, and the proxy's own (an error,
/// a refusal, Max-Forwards 0).
struct own_response {
  int status = 200;
  std::string_view content_type;
  std::span<const header> fields = {};
  std::string_view body;
  bool head_request = false; ///< a reply to HEAD: the length of the body, without the body
  connection_field connection = connection_field::none;
};

/// Appends `r` as HTTP/1.1 with its reason phrase, a Date (an origin server with a clock sends
/// one, RFC 9110 6.6.1), its fields and a Content-Length. The one writer of tether's own
/// responses.
void write_own_response(std::string& out, const own_response& r);

/// Appends one chunk of a chunked body (nothing for an empty piece: that would end the body).
void write_chunk(std::string& out, std::string_view data);

/// Appends the last chunk and the empty trailer section.
void write_last_chunk(std::string& out);

} // namespace tether::http
