// net::relay and net::splice_pipe on real loopback sockets: bytes both ways through the kernel's
// pipes, half closes passed on, a reset ending the tunnel. The same for net::copy_relay (what a
// TLS client's tunnel runs), on plain sockets.
#include "tether/net/splice.hpp"

#include <string>

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/read.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <gtest/gtest.h>

#include "tether/core/detached.hpp"

namespace tether::net {
namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
using asio::ip::tcp;

/// Two connected loopback sockets.
struct socket_pair {
  explicit socket_pair(asio::io_context& io) : near{io}, far{io} {
    tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
    near.connect(acceptor.local_endpoint());
    acceptor.accept(far);
  }
  tcp::socket near; // the user's end
  tcp::socket far;  // the end the relay holds
};

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>('a' + (i * 7) % 26);
  }
  return s;
}

asio::awaitable<std::string> read_all(tcp::socket& s) {
  std::string out;
  std::array<char, 64 * 1024> buffer{};
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buffer), use_tuple);
    out.append(buffer.data(), n);
    if (ec) {
      co_return out;
    }
  }
}

/// Each test runs on both relays: spliced (false) and copying (true).
class relays : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(splice_relay, relays, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "copying" : "spliced"; });

/// Runs net::relay (or net::copy_relay, `copying`) between the far ends of `a` and `b`, counting
/// it in `finished` when it ends.
void spawn_relay(asio::io_context& io, socket_pair& a, socket_pair& b, relay_totals& totals,
                 int& finished, bool copying, relay_options options = {}) {
  asio::co_spawn(
      io,
      [&, copying, options]() -> asio::awaitable<void> {
        if (copying) {
          totals = co_await copy_relay(a.far, b.far, options);
        } else {
          totals = co_await relay(a.far, b.far, options);
        }
        ++finished;
      },
      report_exceptions{"the relay"});
}

TEST_P(relays, moves_bytes_both_ways_and_passes_half_closes_on) {
  asio::io_context io;
  socket_pair a{io};
  socket_pair b{io};
  const std::string upload = pattern(4 * 1024 * 1024 + 17);
  const std::string reply = pattern(300 * 1024);
  relay_totals totals;
  std::string got_at_b;
  std::string got_at_a;
  int finished = 0;
  std::uint64_t seen_a_to_b = 0;
  std::uint64_t seen_b_to_a = 0;
  relay_options counted;
  counted.on_moved = [&](bool a_to_b, std::size_t n) { (a_to_b ? seen_a_to_b : seen_b_to_a) += n; };
  counted.idle_timeout = std::chrono::seconds{30}; // armed, and never reached
  spawn_relay(io, a, b, totals, finished, GetParam(), counted);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await asio::async_write(a.near, asio::buffer(upload), use_tuple);
        a.near.shutdown(tcp::socket::shutdown_send); // the half close reaches b as an EOF
        got_at_a = co_await read_all(a.near);
        ++finished;
      },
      report_exceptions{"side a"});
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        got_at_b = co_await read_all(b.near); // to the EOF a sent
        co_await asio::async_write(b.near, asio::buffer(reply), use_tuple);
        b.near.shutdown(tcp::socket::shutdown_send);
        ++finished;
      },
      report_exceptions{"side b"});
  io.run_for(std::chrono::seconds{20});
  ASSERT_EQ(finished, 3);
  EXPECT_EQ(got_at_b.size(), upload.size());
  EXPECT_TRUE(got_at_b == upload);
  EXPECT_TRUE(got_at_a == reply);
  EXPECT_EQ(totals.a_to_b, upload.size());
  EXPECT_EQ(totals.b_to_a, reply.size());
  EXPECT_EQ(seen_a_to_b, upload.size()) << "on_moved saw every byte as it passed";
  EXPECT_EQ(seen_b_to_a, reply.size());
  EXPECT_FALSE(totals.error);
  EXPECT_FALSE(totals.idle);
}

TEST_P(relays, a_tunnel_idle_for_its_timeout_is_closed_on_both_sides) {
  asio::io_context io;
  socket_pair a{io};
  socket_pair b{io};
  relay_totals totals;
  std::string got_at_b(3, '\0');
  std::string after_idle_a;
  std::string after_idle_b;
  int finished = 0;
  relay_options options;
  options.idle_timeout = std::chrono::milliseconds{200};
  spawn_relay(io, a, b, totals, finished, GetParam(), options);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const std::string hi = "hi!";
        co_await asio::async_write(a.near, asio::buffer(hi), use_tuple);
        co_await asio::async_read(b.near, asio::buffer(got_at_b), use_tuple);
        // Then nothing: both ends see the relay close them.
        after_idle_a = co_await read_all(a.near);
        after_idle_b = co_await read_all(b.near);
        ++finished;
      },
      report_exceptions{"the two sides"});
  io.run_for(std::chrono::seconds{10});
  ASSERT_EQ(finished, 2);
  EXPECT_EQ(got_at_b, "hi!");
  EXPECT_EQ(after_idle_a, "");
  EXPECT_EQ(after_idle_b, "");
  EXPECT_TRUE(totals.idle);
  EXPECT_EQ(totals.a_to_b, 3U);
  EXPECT_FALSE(a.far.is_open());
  EXPECT_FALSE(b.far.is_open());
}

TEST_P(relays, a_reset_on_one_side_closes_the_other) {
  asio::io_context io;
  socket_pair a{io};
  socket_pair b{io};
  relay_totals totals;
  std::string got_at_b(5, '\0');
  std::string after_reset;
  int finished = 0;
  spawn_relay(io, a, b, totals, finished, GetParam());
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const std::string hello = "hello";
        co_await asio::async_write(a.near, asio::buffer(hello), use_tuple);
        // The bytes are known to have passed once b has them; then a resets its connection.
        co_await asio::async_read(b.near, asio::buffer(got_at_b), use_tuple);
        a.near.set_option(asio::socket_base::linger{true, 0});
        a.near.close();
        after_reset = co_await read_all(b.near); // ends when the relay closes b's far end
        ++finished;
      },
      report_exceptions{"the two sides"});
  io.run_for(std::chrono::seconds{10});
  ASSERT_EQ(finished, 2);
  EXPECT_EQ(got_at_b, "hello");
  EXPECT_EQ(after_reset, "");
  EXPECT_TRUE(totals.error) << "a reset is not an orderly end";
  EXPECT_FALSE(b.far.is_open());
}

} // namespace
} // namespace tether::net
