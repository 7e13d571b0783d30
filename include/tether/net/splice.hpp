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

/// The bytes a relay moved each way.
struct relay_totals {
  std::uint64_t a_to_b = 0;
  std::uint64_t b_to_a = 0;
  std::error_code error; ///< what ended it, when not both sides' EOF
  bool idle = false;     ///< it ended because nothing moved for the idle timeout
};

/// How a relay runs.
struct relay_options {
  /// Nothing moved either way for this long: both sockets close (a tunnel whose ends went
  /// away without a word holds two descriptors forever otherwise). Zero: no limit.
  clock::duration idle_timeout{};
  /// Called with the bytes each move passed on (`a_to_b` says which way), as they pass: counters
  /// of a long tunnel grow while it lasts, not only at its end.
  std::function<void(bool a_to_b, std::size_t n)> on_moved{};
};

/// Relays two connected sockets both ways until both directions end: an EOF from one side is
/// passed on as a half close (shutdown of the other side's sending), an error closes both. For
/// tunnels (CONNECT, an Upgrade, a TCP listener). Splices when it can, else copies.
asio::awaitable<relay_totals> relay(asio::ip::tcp::socket& a, asio::ip::tcp::socket& b,
                                    relay_options options = {});

} // namespace tether::net
