#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <system_error>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include "tether/core/clock.hpp"
#include "tether/net/address_cache.hpp"

namespace tether::net {

using namespace std::chrono_literals;

/// Socket settings for upstream TCP connections.
struct tcp_options {
  clock::duration connect_timeout = 5s;     ///< covers name resolution and every address tried
  bool no_delay = true;                     ///< TCP_NODELAY: request/response traffic, no Nagle
  bool keepalive = true;                    ///< SO_KEEPALIVE, with the three settings below
  clock::duration keepalive_idle = 60s;     ///< TCP_KEEPIDLE
  clock::duration keepalive_interval = 10s; ///< TCP_KEEPINTVL
  int keepalive_probes = 6;                 ///< TCP_KEEPCNT
  /// TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before the kernel drops the
  /// connection; 0 leaves the kernel's default.
  clock::duration user_timeout = 0s;

  /// Throws std::invalid_argument naming the field when a value is out of range.
  void validate() const;
};

/// A connected TCP socket, as the pool holds it.
struct tcp_connection {
  explicit tcp_connection(asio::ip::tcp::socket s) : socket{std::move(s)} {}
  asio::ip::tcp::socket socket;
};

/// Applies `options` to a connected socket. Returns the first setsockopt error.
std::error_code apply_socket_options(asio::ip::tcp::socket& socket, const tcp_options& options);

/// Opens `socket` for `protocol` marked close-on-exec, so that no child started while it
/// connects inherits it (Asio opens sockets without SOCK_CLOEXEC).
std::error_code open_close_on_exec(asio::ip::tcp::socket& socket, const asio::ip::tcp& protocol);

/// What a peek at an idle connection found.
enum class peer_state {
  open,       ///< nothing to read: the peer is (as far as we can tell) still there
  closed,     ///< the peer closed (FIN) or reset the connection
  unexpected, ///< the peer sent data nobody asked for: the protocol is out of step
};

/// Asio reports OS errors in its own "asio.system" category, which does not compare equal to
/// std::errc conditions; tether hands users std::system_category codes, which do. Other
/// categories pass through.
[[nodiscard]] std::error_code normalized(std::error_code ec) noexcept;

/// Looks at an idle socket without blocking and without consuming anything (recv with MSG_PEEK
/// and MSG_DONTWAIT): a pooled connection the server dropped reads as `closed`.
[[nodiscard]] peer_state peek_peer(asio::ip::tcp::socket& socket) noexcept;

/// Opens TCP connections to one host and port for the pool: resolves the name without blocking
/// the loop (Asio's resolver runs getaddrinfo off the loop thread), tries every address (IPv6
/// and IPv4) within the connect timeout, and sets the socket options.
class tcp_connector {
public:
  using connection_type = tcp_connection;

  tcp_connector(std::string host, std::uint16_t port, tcp_options options = {});

  /// Connects on the calling coroutine's executor. On failure the error says why: connection
  /// refused, timed out (std::errc::timed_out), host unreachable, host not found.
  asio::awaitable<std::error_code> async_connect(std::unique_ptr<tcp_connection>& out);

  /// TCP has no ping of its own: a connection is valid if its peer has not closed it.
  asio::awaitable<bool> async_validate(tcp_connection& connection);

  /// The cheap check the pool makes before every hand-out.
  [[nodiscard]] bool is_usable(tcp_connection& connection) noexcept {
    return connection.socket.is_open() && peek_peer(connection.socket) == peer_state::open;
  }

  /// Closes the socket now (a connection still leased becomes unusable).
  void close(tcp_connection& connection) noexcept;

  [[nodiscard]] const std::string& host() const noexcept { return host_; }
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

  /// Connects to the addresses `cache` holds instead of resolving the name for each connection
  /// (its owner resolves it on a schedule); while the cache is empty, the name is resolved here.
  void use_addresses(std::shared_ptr<const address_cache> cache) noexcept {
    addresses_ = std::move(cache);
  }

  /// Lookups of the name this connector made itself (none for an IP address, none while a
  /// cache it uses has an answer). Read on the connector's executor.
  [[nodiscard]] std::uint64_t lookups() const noexcept { return lookups_; }

private:
  std::string host_;
  std::uint16_t port_;
  tcp_options options_;
  std::shared_ptr<const address_cache> addresses_;
  std::uint64_t lookups_ = 0;
};

} // namespace tether::net
