#include "tether/net/listener.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <asio/error.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include "tether/net/close_on_exec.hpp"
#include "tether/net/tcp_connector.hpp"

namespace tether::net {
namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

// A bind without SO_REUSEPORT fails with EADDRINUSE exactly when some socket listens on the
// address already (SO_REUSEADDR lets it past connections in TIME_WAIT). The probe is closed
// before the real sockets bind: a listener that appears in between is not seen, a window of
// microseconds that only a race between two starting processes could hit.
std::error_code check_not_listened_on(const asio::ip::tcp::endpoint& endpoint) {
  if (endpoint.port() == 0) {
    return {};
  }
  const int fd = ::socket(endpoint.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return {errno, std::system_category()};
  }
  std::error_code ec;
  const int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      ::bind(fd, endpoint.data(), static_cast<socklen_t>(endpoint.size())) != 0) {
    ec = {errno, std::system_category()};
  }
  ::close(fd);
  return ec;
}

} // namespace

void close_listener(asio::ip::tcp::acceptor& acceptor) {
  std::error_code ec;
  const int fd = acceptor.release(ec); // EPOLL_CTL_DEL, which a plain close skips
  if (!ec) {
    ::close(fd);
  }
}

std::error_code open_listener(asio::ip::tcp::acceptor& acceptor,
                              const asio::ip::tcp::endpoint& endpoint,
                              const listen_options& options) {
  std::error_code ec;
  if (options.reuse_port && options.exclusive) {
    ec = check_not_listened_on(endpoint);
  }
  if (!ec) {
    acceptor.open(endpoint.protocol(), ec);
  }
  if (!ec) {
    close_on_exec(acceptor);
    acceptor.set_option(asio::socket_base::reuse_address{true}, ec);
  }
  if (!ec && options.reuse_port) {
    const int one = 1;
    if (::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      ec = {errno, std::system_category()};
    }
  }
  if (!ec) {
    acceptor.bind(endpoint, ec);
  }
  if (!ec && options.listen) {
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    std::error_code ignored;
    acceptor.close(ignored);
  }
  return normalized(ec);
}

std::error_code start_listening(int fd) {
  if (::listen(fd, asio::socket_base::max_listen_connections) != 0) {
    return {errno, std::system_category()};
  }
  return {};
}

const char* to_string(accept_failure f) noexcept {
  switch (f) {
  case accept_failure::descriptors:
    return "descriptors";
  case accept_failure::memory:
    return "memory";
  case accept_failure::other:
    return "other";
  }
  return "other";
}

accept_failure classify_accept_error(std::error_code ec) noexcept {
  const auto e = normalized(ec);
  if (e == std::errc::too_many_files_open || e == std::errc::too_many_files_open_in_system) {
    return accept_failure::descriptors;
  }
  if (e == std::errc::no_buffer_space || e == std::errc::not_enough_memory) {
    return accept_failure::memory;
  }
  return accept_failure::other;
}

asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor,
                                  std::function<void(asio::ip::tcp::socket)> on_accept,
                                  accept_hooks hooks) {
  asio::steady_timer timer{acceptor.get_executor()};
  clock::duration pause = clock::duration::zero();
  std::uint64_t failures = 0; // in the current run of paused accepts
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
    if (ec) {
      if (!acceptor.is_open() || ec == asio::error::operation_aborted) {
        co_return;
      }
      const auto failure = classify_accept_error(ec);
      if (hooks.on_failure) {
        hooks.on_failure(failure);
      }
      if (failure == accept_failure::other) {
        continue; // that connection is gone; the next one may be fine
      }
      if (failures++ == 0 && hooks.on_pause) {
        hooks.on_pause(normalized(ec));
      }
      pause = pause == clock::duration::zero() ? accept_pause_min
                                               : std::min(pause * 2, accept_pause_max);
      timer.expires_after(pause);
      co_await timer.async_wait(use_tuple);
      continue;
    }
    if (failures != 0) {
      if (hooks.on_resume) {
        hooks.on_resume(failures);
      }
      failures = 0;
      pause = clock::duration::zero();
    }
    close_on_exec(socket);
    std::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay{true}, ignored);
    on_accept(std::move(socket));
  }
}

} // namespace tether::net
