#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include "tether/core/clock.hpp"
#include "tether/http/parser.hpp"
#include "tether/net/tcp_connector.hpp"
#include "tether/resilience/resource_limit.hpp"
#include "tether/tls/handshake.hpp"
#include "tether/tls/stream.hpp"

namespace tether::http {

/// A kept-alive HTTP/1.1 connection: its stream (TCP, or TLS over it), its response parser and
/// read buffer, and whether the last exchange left it fit for another request.
struct http_connection {
  http_connection(tls::stream s, const parser_limits& limits)
      : stream{std::move(s)}, parser{parser::kind::response, limits}, max_body{limits.max_body} {}

  tls::stream stream;
  http::parser parser;
  std::array<char, 16 * 1024> buffer{};
  bool reusable = false;        ///< the last response ended cleanly and kept the connection open
  clock::time_point returned{}; ///< when it last came back to the pool (coarse clock)
  resilience::resource_guard slot{}; ///< a unit of the connector's connection limit, if any
  std::uint64_t max_body = 0;        ///< the parser's body limit, put back after a streamed body
};

/// How a connector reaches its host through a forward proxy (see proxy.hpp).
struct proxy_route {
  std::string host; ///< the proxy's name or address
  std::uint16_t port = 80;
  std::string authorization{}; ///< the Proxy-Authorization value ("Basic ..."); empty: none
};

/// Opens HTTP connections to one host for its pool: TCP through tcp_connector, then, for a TLS
/// host, the handshake with the host's identity (HTTP/1.1 has no handshake of its own). Liveness
/// is TCP's: a peer that closed (or sent a TLS close_notify) is seen by a peek.
class http_connector {
public:
  using connection_type = http_connection;

  /// Plain HTTP with `tls` empty; HTTPS with the identity's context, SNI and sessions. With a
  /// proxy, TCP goes to the proxy, and a TLS host is reached through a CONNECT tunnel to
  /// host:port made before the handshake (plain requests are the client's to write in
  /// absolute form).
  http_connector(std::string host, std::uint16_t port, const net::tcp_options& tcp,
                 const parser_limits& limits, std::optional<tls::client_identity> tls = {},
                 std::optional<proxy_route> proxy = {});

  /// Connects (see net::tcp_connector) and, for TLS, handshakes (see
  /// tls::client_identity::async_handshake); the connection gets a response parser.
  asio::awaitable<std::error_code> async_connect(std::unique_ptr<http_connection>& out);

  asio::awaitable<bool> async_validate(http_connection& c);

  /// A connection back in the pool for less than `fresh` is handed out without the peek: under
  /// load connections are idle for microseconds, and the peek would be one more system call per
  /// request (a close that arrived in that window fails the request before any byte, which the
  /// client retries on a new connection when the request may be sent twice).
  static constexpr clock::duration fresh = std::chrono::milliseconds{50};

  bool is_usable(http_connection& c) noexcept {
    if (!c.stream.is_open()) {
      return false;
    }
    if (coarse_monotonic_clock::instance().now() - c.returned < fresh) {
      return true;
    }
    return net::peek_peer(c.stream.socket()) == net::peer_state::open;
  }

  bool is_reusable(http_connection& c) noexcept {
    c.returned = coarse_monotonic_clock::instance().now();
    return c.reusable;
  }

  void close(http_connection& c) noexcept { c.stream.close(); }

  [[nodiscard]] std::uint64_t opened() const noexcept { return opened_; }

  /// Counts every connection this connector makes against `limit` (shared with other
  /// connectors: a proxy cluster's max_connections) for as long as it lives; past the limit,
  /// connecting fails with tether::errc::overloaded before any packet is sent. Held: the
  /// connector's connections may outlive whoever set the limit.
  void limit_connections(std::shared_ptr<resilience::resource_limit> limit) noexcept {
    limit_ = std::move(limit);
  }

  /// See net::tcp_connector::use_addresses.
  void use_addresses(std::shared_ptr<const net::address_cache> cache) noexcept {
    tcp_.use_addresses(std::move(cache));
  }
  /// See net::tcp_connector::lookups.
  [[nodiscard]] std::uint64_t lookups() const noexcept { return tcp_.lookups(); }

  /// True for a TLS host.
  [[nodiscard]] bool secured() const noexcept { return tls_.has_value(); }

private:
  // CONNECT host:port through the proxy on `socket`, within the connect timeout: an error
  // unless the proxy answers 2xx (errc::proxy_refused, proxy_authentication_required).
  asio::awaitable<std::error_code> open_tunnel(asio::ip::tcp::socket& socket);

  net::tcp_connector tcp_;
  parser_limits limits_;
  std::optional<tls::client_identity> tls_;
  std::uint64_t opened_ = 0;
  std::shared_ptr<resilience::resource_limit> limit_;
  std::optional<proxy_route> proxy_;
  std::string connect_request_; // the CONNECT request, written once; empty without a tunnel
  clock::duration connect_timeout_;
};

} // namespace tether::http
