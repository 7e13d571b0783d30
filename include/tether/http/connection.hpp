#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <system_error>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include "tether/core/clock.hpp"
#include "tether/http/parser.hpp"
#include "tether/net/tcp_connector.hpp"
#include "tether/resilience/resource_limit.hpp"

namespace tether::http {

/// A kept-alive HTTP/1.1 connection: the socket, its response parser and read buffer, and
/// whether the last exchange left it fit for another request.
struct http_connection {
  http_connection(asio::ip::tcp::socket s, const parser_limits& limits)
      : socket{std::move(s)}, parser{parser::kind::response, limits} {}

  asio::ip::tcp::socket socket;
  http::parser parser;
  std::array<char, 16 * 1024> buffer{};
  bool reusable = false;        ///< the last response ended cleanly and kept the connection open
  clock::time_point returned{}; ///< when it last came back to the pool (coarse clock)
  resilience::resource_guard slot{}; ///< a unit of the connector's connection limit, if any
};

/// Opens HTTP connections to one host for its pool: TCP through tcp_connector, then nothing more
/// (HTTP/1.1 has no handshake). Liveness is TCP's: a peer that closed is seen by a peek.
class http_connector {
public:
  using connection_type = http_connection;

  http_connector(std::string host, std::uint16_t port, const net::tcp_options& tcp,
                 const parser_limits& limits)
      : tcp_{std::move(host), port, tcp}, limits_{limits} {}

  /// Connects (see net::tcp_connector); the connection gets a response parser with the limits.
  asio::awaitable<std::error_code> async_connect(std::unique_ptr<http_connection>& out);

  asio::awaitable<bool> async_validate(http_connection& c);

  /// A connection back in the pool for less than `fresh` is handed out without the peek: under
  /// load connections are idle for microseconds, and the peek would be one more system call per
  /// request (a close that arrived in that window fails the request before any byte, which the
  /// client retries on a new connection when the request may be sent twice).
  static constexpr clock::duration fresh = std::chrono::milliseconds{50};

  bool is_usable(http_connection& c) noexcept {
    if (!c.socket.is_open()) {
      return false;
    }
    if (coarse_monotonic_clock::instance().now() - c.returned < fresh) {
      return true;
    }
    return net::peek_peer(c.socket) == net::peer_state::open;
  }

  bool is_reusable(http_connection& c) noexcept {
    c.returned = coarse_monotonic_clock::instance().now();
    return c.reusable;
  }

  void close(http_connection& c) noexcept {
    std::error_code ignored;
    c.socket.close(ignored);
  }

  [[nodiscard]] std::uint64_t opened() const noexcept { return opened_; }

  /// Counts every connection this connector makes against `limit` (shared with other
  /// connectors: a proxy cluster's max_connections) for as long as it lives; past the limit,
  /// connecting fails with tether::errc::overloaded before any packet is sent.
  void limit_connections(resilience::resource_limit* limit) noexcept { limit_ = limit; }

  /// See net::tcp_connector::use_addresses.
  void use_addresses(std::shared_ptr<const net::address_cache> cache) noexcept {
    tcp_.use_addresses(std::move(cache));
  }

private:
  net::tcp_connector tcp_;
  parser_limits limits_;
  std::uint64_t opened_ = 0;
  resilience::resource_limit* limit_ = nullptr;
};

} // namespace tether::http
