#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <system_error>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "tether/core/clock.hpp"
#include "tether/net/relay.hpp"

namespace tether::net {

/// One direction of a socket-to-socket relay through a pipe (Linux's splice(2)): the kernel
/// moves the bytes from one socket to the other, never copying them into the process, as
/// HAProxy's kernel splicing does. Used by tether chaos while a direction has no toxic, and by
/// relay() for tunnels. Asio has no splice, so this is written here.
class splice_pipe {
public:
  splice_pipe() = default;
  splice_pipe(const splice_pipe&) = delete;
  splice_pipe& operator=(const splice_pipe&) = delete;
  ~splice_pipe();

  /// Makes the pipe (once) and sets both sockets non-blocking. False when the system gives no
  /// pipe (out of descriptors): the caller copies instead.
  bool open(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to);

  /// Moves what `from` has (up to 1 MiB) into the pipe and all of it on to `to`, adding to
  /// `moved`. Ends with EOF when `from` has no more, an error when a socket fails or is closed
  /// (operation_aborted). `wake`: cancelling it ends a wait for bytes early, with no error and
  /// nothing moved, so the caller can look again at whether to splice (tether chaos, when a
  /// toxic arrives). `progress`, if given, is set to the time of each write that moved bytes
  /// on (a slow reader takes a while to drain a 1 MiB splice, and is not idle meanwhile).
  asio::awaitable<std::error_code>
  move_some(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to, std::size_t& moved,
            asio::steady_timer* wake = nullptr,
            std::chrono::steady_clock::time_point* progress = nullptr);

private:
  std::array<int, 2> fds_{-1, -1};
};

/// Relays two connected sockets both ways until both directions end: an EOF from one side is
/// passed on as a half close (shutdown of the other side's sending), an error closes both. For
/// tunnels (CONNECT, an Upgrade, a TCP listener). Splices when it can, else copies.
asio::awaitable<relay_totals> relay(asio::ip::tcp::socket& a, asio::ip::tcp::socket& b,
                                    relay_options options = {});

} // namespace tether::net
