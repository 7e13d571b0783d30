#include "tether/net/tcp_connector.hpp"

#include "tether/net/close_on_exec.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <stdexcept>

#include <asio/connect.hpp>
#include <asio/error.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/address.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

namespace tether::net {
namespace {

using asio::ip::tcp;
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

int whole_seconds(clock::duration d) {
  return static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(d).count());
}

std::error_code set_int(tcp::socket& socket, int level, int name, int value) {
  if (::setsockopt(socket.native_handle(), level, name, &value, sizeof value) != 0) {
    return {errno, std::system_category()};
  }
  return {};
}

} // namespace

void tcp_options::validate() const {
  if (connect_timeout <= clock::duration::zero()) {
    throw std::invalid_argument("tcp connect_timeout must be greater than 0");
  }
  // Linux's limits: TCP_KEEPIDLE and TCP_KEEPINTVL in [1, 32767] s, TCP_KEEPCNT in [1, 127].
  if (keepalive &&
      (keepalive_idle < 1s || keepalive_idle > 32767s || keepalive_interval < 1s ||
       keepalive_interval > 32767s || keepalive_probes < 1 || keepalive_probes > 127)) {
    throw std::invalid_argument(
        "tcp keepalive_idle and keepalive_interval must be in [1s, 32767s], "
        "keepalive_probes in [1, 127]");
  }
  if (user_timeout < clock::duration::zero()) {
    throw std::invalid_argument("tcp user_timeout must not be negative");
  }
}

std::error_code open_close_on_exec(tcp::socket& socket, const tcp& protocol) {
  std::error_code ec;
  socket.open(protocol, ec);
  if (!ec) {
    close_on_exec(socket);
  }
  return ec;
}

std::error_code apply_socket_options(tcp::socket& socket, const tcp_options& options) {
  close_on_exec(socket); // for sockets tether did not open itself
  std::error_code ec;
  socket.set_option(tcp::no_delay{options.no_delay}, ec);
  if (ec) {
    return ec;
  }
  socket.set_option(asio::socket_base::keep_alive{options.keepalive}, ec);
  if (ec) {
    return ec;
  }
  if (options.keepalive) {
    // Asio has no portable options for these; they are Linux's.
    if ((ec = set_int(socket, IPPROTO_TCP, TCP_KEEPIDLE, whole_seconds(options.keepalive_idle)))) {
      return ec;
    }
    if ((ec = set_int(socket, IPPROTO_TCP, TCP_KEEPINTVL,
                      whole_seconds(options.keepalive_interval)))) {
      return ec;
    }
    if ((ec = set_int(socket, IPPROTO_TCP, TCP_KEEPCNT, options.keepalive_probes))) {
      return ec;
    }
  }
  if (options.user_timeout > clock::duration::zero()) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(options.user_timeout);
    if ((ec = set_int(socket, IPPROTO_TCP, TCP_USER_TIMEOUT, static_cast<int>(ms.count())))) {
      return ec;
    }
  }
  return {};
}

peer_state peek_peer(tcp::socket& socket) noexcept {
  char byte = 0;
  const auto n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) {
    return peer_state::unexpected;
  }
  if (n == 0) {
    return peer_state::closed;
  }
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? peer_state::open
                                                                   : peer_state::closed;
}

tcp_connector::tcp_connector(std::string host, std::uint16_t port, tcp_options options)
    : host_{std::move(host)}, port_{port}, options_{options} {
  options_.validate();
}

asio::awaitable<std::error_code>
tcp_connector::async_connect(std::unique_ptr<tcp_connection>& out) {
  using namespace asio::experimental::awaitable_operators;
  const auto executor = co_await asio::this_coro::executor;
  asio::steady_timer deadline{executor, options_.connect_timeout};

  // An IP literal needs no resolver; a name is resolved off the loop thread by Asio.
  tcp::resolver::results_type endpoints;
  std::error_code address_error;
  const auto address = asio::ip::make_address(host_, address_error);
  std::vector<tcp::endpoint> cached;
  if (address_error && addresses_) {
    cached = addresses_->get();
  }
  if (!address_error) {
    endpoints = tcp::resolver::results_type::create(tcp::endpoint{address, port_}, host_,
                                                    std::to_string(port_));
  } else if (!cached.empty()) {
    endpoints = tcp::resolver::results_type::create(cached.begin(), cached.end(), host_,
                                                    std::to_string(port_));
  } else {
    ++lookups_;
    tcp::resolver resolver{executor};
    auto resolved = co_await (resolver.async_resolve(host_, std::to_string(port_), use_tuple) ||
                              deadline.async_wait(use_tuple));
    if (resolved.index() == 1) {
      co_return make_error_code(std::errc::timed_out);
    }
    auto [ec, results] = std::get<0>(std::move(resolved));
    if (ec) {
      co_return normalized(ec);
    }
    endpoints = std::move(results);
  }

  // Each address in turn, as Asio's range connect would try them, but on a socket marked
  // close-on-exec before it connects (the range connect reopens the socket per address without
  // the flag, so a child started meanwhile would inherit a connection about to be made).
  tcp::socket socket{executor};
  std::error_code failed = asio::error::not_found; // no address at all
  for (const auto& entry : endpoints) {
    const tcp::endpoint target = entry.endpoint();
    std::error_code ignored;
    socket.close(ignored);
    if (const auto opened = open_close_on_exec(socket, target.protocol()); opened) {
      failed = opened;
      continue;
    }
    auto attempt =
        co_await (socket.async_connect(target, use_tuple) || deadline.async_wait(use_tuple));
    if (attempt.index() == 1) {
      co_return make_error_code(std::errc::timed_out);
    }
    failed = std::get<0>(std::get<0>(attempt));
    if (!failed) {
      break;
    }
  }
  if (failed) {
    co_return normalized(failed);
  }
  if (auto ec = apply_socket_options(socket, options_)) {
    co_return normalized(ec);
  }
  out = std::make_unique<tcp_connection>(std::move(socket));
  co_return std::error_code{};
}

asio::awaitable<bool> tcp_connector::async_validate(tcp_connection& connection) {
  co_return is_usable(connection);
}

void tcp_connector::close(tcp_connection& connection) noexcept {
  std::error_code ignored;
  connection.socket.shutdown(tcp::socket::shutdown_both, ignored);
  connection.socket.close(ignored);
}

std::error_code normalized(std::error_code ec) noexcept {
  if (ec && ec.category() == asio::error::get_system_category()) {
    return {ec.value(), std::system_category()};
  }
  return ec;
}

} // namespace tether::net
