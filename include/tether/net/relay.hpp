#pragma once
// What a tunnel's relay is made of: its options and totals, the idle watch both kinds share, and
// the copying relay for streams that cannot be spliced (TLS). The spliced relay of two plain
// sockets is net::relay (splice.hpp).

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <system_error>

#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "tether/core/clock.hpp"

namespace tether::net {

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

/// Closes a relayed socket at once (both directions of the relay end with an error).
inline void close_stream(asio::ip::tcp::socket& s) noexcept {
  std::error_code ignored;
  s.close(ignored);
}

/// Passes a half close on: the peer reads an end, and may still send.
inline asio::awaitable<void> end_sending(asio::ip::tcp::socket& s) {
  std::error_code ignored;
  s.shutdown(asio::socket_base::shutdown_send, ignored);
  co_return;
}

namespace detail {

/// What the two directions of a relay share, and its idle timer.
struct relay_state {
  relay_state(const asio::any_io_executor& ex, relay_options o) : options{std::move(o)}, idle{ex} {}
  relay_options options;
  std::chrono::steady_clock::time_point last_moved = std::chrono::steady_clock::now();
  int running = 2; // directions not ended yet
  asio::steady_timer idle;

  void moved(bool a_to_b, std::size_t n) {
    if (n == 0) {
      return;
    }
    if (options.idle_timeout > clock::duration::zero()) {
      last_moved = std::chrono::steady_clock::now();
    }
    if (options.on_moved) {
      options.on_moved(a_to_b, n);
    }
  }

  /// A direction ended; the last one ends the idle watch.
  void ended() {
    if (--running == 0) {
      idle.cancel();
    }
  }
};

/// Says in `totals` what ended a relay whose directions ended with `ab` and `ba` (EOF: an end
/// on purpose), and whether the idle watch did.
inline void ended_with(relay_totals& totals, std::error_code ab, std::error_code ba, bool idle) {
  if (ab != asio::error::eof) {
    totals.error = ab;
  } else if (ba != asio::error::eof) {
    totals.error = ba;
  }
  totals.idle = idle;
}

/// Closes both streams once nothing moved either way for the idle timeout; returns when both
/// directions ended, true when it closed them. (Not awaitable<void>: Asio's && of a tuple and a
/// void does not compile.)
template <typename A, typename B>
asio::awaitable<bool> watch_idle(A& a, B& b, relay_state& st) {
  constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
  // (At most a year: a time_point past the clock's range would wrap.)
  const auto limit = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::min<clock::duration>(st.options.idle_timeout, std::chrono::hours{24 * 365}));
  if (limit <= limit.zero()) {
    co_return false;
  }
  while (st.running > 0) {
    st.idle.expires_at(st.last_moved + limit);
    co_await st.idle.async_wait(use_tuple);
    if (st.running > 0 && std::chrono::steady_clock::now() - st.last_moved >= limit) {
      close_stream(a); // both directions end with an error, and the relay with them
      close_stream(b);
      co_return true;
    }
  }
  co_return false;
}

/// One direction of copy_relay(): reads `from`, writes all of it to `to`, until an end or an
/// error. An end passes on as a half close; an error closes both.
template <typename From, typename To>
asio::awaitable<std::error_code> copy_pass(From& from, To& to, std::uint64_t& total,
                                           relay_state& st, bool a_to_b) {
  constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
  auto buffer = std::make_unique<std::array<char, 16 * 1024>>();
  std::error_code ec;
  while (!ec) {
    auto [read_error, n] = co_await from.async_read_some(asio::buffer(*buffer), use_tuple);
    ec = read_error;
    if (n > 0) {
      auto [write_error, written] =
          co_await asio::async_write(to, asio::buffer(buffer->data(), n), use_tuple);
      total += written;
      st.moved(a_to_b, written);
      ec = ec ? ec : write_error;
    }
  }
  if (ec == asio::error::eof) {
    co_await end_sending(to);
  } else {
    close_stream(from);
    close_stream(to);
  }
  st.ended();
  co_return ec;
}

} // namespace detail

/// Relays two connected streams both ways by copying, for streams the kernel cannot splice
/// (a TLS client's tunnel: its bytes are deciphered on the way in and enciphered on the way
/// out). Otherwise as relay(): an end from one side passes on as a half close
/// (`end_sending(stream)`), an error closes both (`close_stream(stream)`), the idle timeout
/// closes both. Each stream takes one read and one write at a time.
template <typename A, typename B>
asio::awaitable<relay_totals> copy_relay(A& a, B& b, relay_options options = {}) {
  using namespace asio::experimental::awaitable_operators;
  relay_totals totals;
  detail::relay_state st{a.get_executor(), std::move(options)};
  const auto [ab, ba, idle] =
      co_await (detail::copy_pass(a, b, totals.a_to_b, st, true) &&
                detail::copy_pass(b, a, totals.b_to_a, st, false) && detail::watch_idle(a, b, st));
  detail::ended_with(totals, ab, ba, idle);
  co_return totals;
}

} // namespace tether::net
