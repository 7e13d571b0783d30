#pragma once

#include <chrono>
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

/// Appends one chunk of a chunked body (nothing for an empty piece: that would end the body).
void write_chunk(std::string& out, std::string_view data);

/// Appends the last chunk and the empty trailer section.
void write_last_chunk(std::string& out);

} // namespace tether::http
