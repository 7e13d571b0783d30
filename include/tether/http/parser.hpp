#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "tether/http/error.hpp"

namespace tether::http {

/// One header field. Views into the bytes the parser was fed (or into the parser's own copy of a
/// header section that arrived across several reads); valid during on_head only.
struct header {
  std::string_view name;
  std::string_view value;
};

/// How a message's body is delimited.
enum class body_framing : std::uint8_t {
  none,           ///< no body (GET without length, HEAD responses, 1xx/204/304)
  content_length, ///< exactly content_length bytes
  chunked,        ///< chunked transfer coding
  until_close,    ///< a response read until the connection closes
};

/// The head of a request or response, as on_head sees it.
struct message_head {
  std::string_view method; ///< requests
  std::string_view target; ///< requests: the request-target as sent
  int status = 0;          ///< responses
  std::string_view reason; ///< responses
  int version_major = 1;
  int version_minor = 1;
  std::span<const header> headers;
  body_framing framing = body_framing::none;
  std::uint64_t content_length = 0;
  bool keep_alive = true; ///< the connection may carry another message after this one
  bool upgrade = false;   ///< Upgrade or CONNECT: the bytes after the head are a tunnel

  /// The first header named `name` (case-insensitive), or nullptr.
  [[nodiscard]] const header* find(std::string_view name) const noexcept;
};

/// Receives what the parser finds, in order: on_head, on_body (zero or more pieces), then
/// on_message_complete; then the next message on the same connection (pipelining).
class parser_handler {
public:
  parser_handler() = default;
  parser_handler(const parser_handler&) = delete;
  parser_handler& operator=(const parser_handler&) = delete;
  virtual ~parser_handler() = default;

  virtual void on_head(const message_head& head) = 0;
  /// A piece of the body (chunked framing removed), a view into the bytes fed.
  virtual void on_body(std::string_view piece) = 0;
  virtual void on_message_complete() = 0;
};

/// Limits on what a parser accepts; each has its own error.
struct parser_limits {
  std::size_t max_request_line = 8 * 1024;  ///< method + target + version (414 past it)
  std::size_t max_header_count = 100;       ///< header fields (431 past it)
  std::size_t max_header_bytes = 32 * 1024; ///< the whole header section (431 past it)
  std::uint64_t max_body = 0;               ///< 0: no limit (413 past it)
  friend bool operator==(const parser_limits&, const parser_limits&) = default;
};

/// A strict, streaming HTTP/1.1 parser for requests or responses, on http-parser (the parser
/// Node.js, Envoy and Proxygen shipped for years), with tether's own checks on top where
/// ambiguity lets one request hide in another: Content-Length with Transfer-Encoding, differing
/// Content-Lengths, obfuscated Transfer-Encoding, obsolete line folding, bare CR or LF, control
/// bytes in values. Header views point into the fed bytes; nothing is copied per header unless a
/// header section arrives split across reads.
class parser {
public:
  enum class kind : std::uint8_t { request, response };

  explicit parser(kind k, parser_limits limits = {});
  ~parser();
  parser(const parser&) = delete;
  parser& operator=(const parser&) = delete;

  /// Parses as much of `data` as it can. Returns the bytes consumed: all of them unless an error
  /// stopped it (error() says which) or an upgrade began (the rest belongs to the tunnel).
  std::size_t feed(std::string_view data, parser_handler& handler);

  /// The peer closed the connection: completes a response read until close; anything else in
  /// the middle of a message is errc::unexpected_eof.
  void finish(parser_handler& handler);

  /// For responses: the next response answers a HEAD request (so it has no body).
  void expect_head_response() noexcept { head_response_ = true; }

  /// The body limit from now on (parser_limits::max_body; 0: none): a client that streams one
  /// response's body to its caller lifts it for that response.
  void set_max_body(std::uint64_t bytes) noexcept;

  /// For requests: whether a request with Upgrade starts a tunnel after it (the default), or is
  /// an ordinary request whose Upgrade a server that does not switch protocols ignores (RFC
  /// 9110 7.8), the connection going on with the next request. CONNECT always starts one.
  void tunnel_upgrades(bool tunnel) noexcept;

  /// For requests that tunnel upgrades: only an Upgrade listing `protocol` (a token such as
  /// "websocket", compared case-insensitively, its version ignored) starts a tunnel; any other
  /// is ignored as above. Empty: every Upgrade tunnels. An HTTP/1.0 request's Upgrade is always
  /// ignored (RFC 9110 7.8).
  void tunnel_only(std::string protocol);

  [[nodiscard]] std::error_code error() const noexcept { return error_; }
  /// True between messages (nothing of a message read yet).
  [[nodiscard]] bool idle() const noexcept;
  /// True once an Upgrade or CONNECT head was parsed: later bytes belong to the tunnel and feed()
  /// takes none of them.
  [[nodiscard]] bool upgraded() const noexcept;

  struct state;

private:
  std::unique_ptr<state> s_;
  std::error_code error_;
  bool head_response_ = false;
};

/// Whether an Upgrade field's value (a comma-separated list, RFC 9110 7.8) names `protocol`,
/// compared case-insensitively and with its version ("websocket/13") aside.
[[nodiscard]] bool lists_protocol(std::string_view upgrade_value,
                                  std::string_view protocol) noexcept;

} // namespace tether::http
