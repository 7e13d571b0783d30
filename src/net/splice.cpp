#include "tether/net/splice.hpp"

#include <array>
#include <chrono>
#include <memory>
#include <utility>

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <fcntl.h>
#include <unistd.h>

namespace tether::net {

namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

/// What one splice moves at most, and the pipe's size: fewer round trips than the default
/// 64 KiB pipe, which works too.
constexpr std::size_t splice_size = 1024 * 1024;

std::error_code last_error() {
  return {errno, std::system_category()};
}

using detail::relay_state;

/// One direction of relay(): splices, or copies when no pipe could be made.
asio::awaitable<std::error_code> pass(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to,
                                      std::uint64_t& total, relay_state& st, bool a_to_b) {
  splice_pipe pipe;
  if (!pipe.open(from, to)) {
    co_return co_await detail::copy_pass(from, to, total, st, a_to_b); // no pipe: copies
  }
  std::error_code ec;
  while (!ec) {
    std::size_t moved = 0;
    ec = co_await pipe.move_some(from, to, moved, nullptr,
                                 st.options.idle_timeout > clock::duration::zero() ? &st.last_moved
                                                                                   : nullptr);
    total += moved;
    st.moved(a_to_b, moved);
  }
  if (ec == asio::error::eof) {
    co_await end_sending(to); // the half close goes on
  } else {
    // A failed side ends the tunnel: both sockets close, which ends the other direction too.
    close_stream(from);
    close_stream(to);
  }
  st.ended();
  co_return ec;
}

} // namespace

splice_pipe::~splice_pipe() {
  for (const int fd : fds_) {
    if (fd >= 0) {
      ::close(fd);
    }
  }
}

bool splice_pipe::open(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to) {
  if (fds_[0] >= 0) {
    return true;
  }
  if (::pipe2(fds_.data(), O_NONBLOCK | O_CLOEXEC) != 0) {
    return false;
  }
  ::fcntl(fds_[1], F_SETPIPE_SZ, static_cast<int>(splice_size));
  std::error_code ignored;
  from.native_non_blocking(true, ignored);
  to.native_non_blocking(true, ignored);
  return true;
}

asio::awaitable<std::error_code>
splice_pipe::move_some(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to, std::size_t& moved,
                       asio::steady_timer* wake, std::chrono::steady_clock::time_point* progress) {
  ssize_t in = 0;
  for (;;) {
    if (!from.is_open() || !to.is_open()) {
      co_return asio::error::operation_aborted;
    }
    in = ::splice(from.native_handle(), nullptr, fds_[1], nullptr, splice_size,
                  SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (in > 0) {
      break;
    }
    if (in == 0) {
      co_return asio::error::eof;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      co_return last_error();
    }
    if (wake == nullptr) {
      auto [ec] = co_await from.async_wait(asio::socket_base::wait_read, use_tuple);
      if (ec) {
        co_return ec;
      }
      continue;
    }
    using namespace asio::experimental::awaitable_operators;
    wake->expires_at(asio::steady_timer::time_point::max());
    auto which = co_await (from.async_wait(asio::socket_base::wait_read, use_tuple) ||
                           wake->async_wait(use_tuple));
    if (which.index() == 1) {
      co_return std::error_code{}; // woken: the caller looks again
    }
    if (const auto [ec] = std::get<0>(which); ec) {
      co_return ec;
    }
  }
  auto left = static_cast<std::size_t>(in);
  while (left > 0) {
    if (!to.is_open()) {
      co_return asio::error::operation_aborted;
    }
    const ssize_t out = ::splice(fds_[0], nullptr, to.native_handle(), nullptr, left,
                                 SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (out > 0) {
      left -= static_cast<std::size_t>(out);
      moved += static_cast<std::size_t>(out);
      if (progress != nullptr) {
        *progress = std::chrono::steady_clock::now();
      }
      continue;
    }
    if (out < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      co_return last_error();
    }
    auto [ec] = co_await to.async_wait(asio::socket_base::wait_write, use_tuple);
    if (ec) {
      co_return ec;
    }
  }
  co_return std::error_code{};
}

asio::awaitable<relay_totals> relay(asio::ip::tcp::socket& a, asio::ip::tcp::socket& b,
                                    relay_options options) {
  using namespace asio::experimental::awaitable_operators;
  relay_totals totals;
  relay_state st{a.get_executor(), std::move(options)};
  const auto [ab, ba, idle] =
      co_await (pass(a, b, totals.a_to_b, st, true) && pass(b, a, totals.b_to_a, st, false) &&
                detail::watch_idle(a, b, st));
  detail::ended_with(totals, ab, ba, idle);
  co_return totals;
}

} // namespace tether::net
