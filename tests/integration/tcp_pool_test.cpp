// The TCP connector and the pool against real loopback servers: refused, stalled, closed and
// reset connections, socket options read back from the kernel, and a pooled echo exchange.
#include "tether/net/tcp_connector.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>

#include <netinet/tcp.h>
#include <sys/socket.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <optional>

#include "loopback_server.hpp"
#include "tether/pool/connection_pool.hpp"

namespace tether::net {
namespace {

using namespace std::chrono_literals;
using testing::loopback_server;
using pool_type = pool::connection_pool<tcp_connector>;

// Runs `io` until `done()` or `bound` of real time passes.
template <class P>
bool run_until(asio::io_context& io, P done, std::chrono::milliseconds bound = 5000ms) {
  const auto give_up = std::chrono::steady_clock::now() + bound;
  while (!done() && std::chrono::steady_clock::now() < give_up) {
    io.restart();
    io.run_for(2ms);
  }
  return done();
}

asio::awaitable<void> connect_into(tcp_connector connector,
                                   std::shared_ptr<std::optional<std::error_code>> result,
                                   std::shared_ptr<std::unique_ptr<tcp_connection>> out) {
  *result = co_await connector.async_connect(*out);
}

struct connect_outcome {
  std::error_code error;
  std::unique_ptr<tcp_connection> connection;
};

connect_outcome connect(asio::io_context& io, tcp_connector connector) {
  auto result = std::make_shared<std::optional<std::error_code>>();
  auto out = std::make_shared<std::unique_ptr<tcp_connection>>();
  asio::co_spawn(io, connect_into(std::move(connector), result, out), asio::detached);
  EXPECT_TRUE(run_until(
      io, [&] { return result->has_value(); }, 10000ms));
  return {result->value_or(make_error_code(std::errc::timed_out)), std::move(*out)};
}

int get_int(tcp_connection& c, int level, int name) {
  int value = -1;
  socklen_t size = sizeof value;
  ::getsockopt(c.socket.native_handle(), level, name, &value, &size);
  return value;
}

TEST(tcp_connector, connects_and_sets_the_socket_options) {
  asio::io_context io;
  loopback_server server{loopback_server::behaviour::echo};
  tcp_options options;
  options.keepalive_idle = 42s;
  options.keepalive_interval = 7s;
  options.keepalive_probes = 3;
  options.user_timeout = 15s;
  auto r = connect(io, tcp_connector{"127.0.0.1", server.port(), options});
  ASSERT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(get_int(*r.connection, IPPROTO_TCP, TCP_NODELAY), 1);
  EXPECT_EQ(get_int(*r.connection, SOL_SOCKET, SO_KEEPALIVE), 1);
  EXPECT_EQ(get_int(*r.connection, IPPROTO_TCP, TCP_KEEPIDLE), 42);
  EXPECT_EQ(get_int(*r.connection, IPPROTO_TCP, TCP_KEEPINTVL), 7);
  EXPECT_EQ(get_int(*r.connection, IPPROTO_TCP, TCP_KEEPCNT), 3);
  EXPECT_EQ(get_int(*r.connection, IPPROTO_TCP, TCP_USER_TIMEOUT), 15000);
  // Close-on-exec: a child the application starts does not hold the connection open.
  EXPECT_NE(::fcntl(r.connection->socket.native_handle(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_EQ(peek_peer(r.connection->socket), peer_state::open);
}

TEST(tcp_connector, resolves_a_name_without_blocking) {
  asio::io_context io;
  loopback_server server{loopback_server::behaviour::echo};
  auto r = connect(io, tcp_connector{"localhost", server.port()});
  // localhost may resolve to ::1 first, where nothing listens: the connector must go on to
  // 127.0.0.1.
  ASSERT_FALSE(r.error) << r.error.message();
  EXPECT_TRUE(r.connection->socket.remote_endpoint().address().is_loopback());
}

TEST(tcp_connector, connects_over_ipv6) {
  asio::io_context io;
  asio::ip::tcp::acceptor v6{io};
  std::error_code ec;
  v6.open(asio::ip::tcp::v6(), ec);
  if (!ec) {
    v6.bind({asio::ip::make_address("::1"), 0}, ec);
  }
  if (ec) {
    GTEST_SKIP() << "no IPv6 loopback on this machine: " << ec.message();
  }
  v6.listen();
  auto r = connect(io, tcp_connector{"::1", v6.local_endpoint().port()});
  ASSERT_FALSE(r.error) << r.error.message();
  EXPECT_TRUE(r.connection->socket.remote_endpoint().address().is_v6());
}

TEST(tcp_connector, reports_a_refused_connection) {
  asio::io_context io;
  std::uint16_t port = 0;
  {
    loopback_server closed_soon{loopback_server::behaviour::echo};
    port = closed_soon.port();
  } // nothing listens there any more
  auto r = connect(io, tcp_connector{"127.0.0.1", port});
  EXPECT_TRUE(r.error == std::errc::connection_refused) << r.error.message();
}

TEST(tcp_connector, times_out_on_a_server_that_never_answers) {
  asio::io_context io;
  // A listener with a full accept queue that never accepts: further SYNs go unanswered.
  asio::ip::tcp::acceptor stalled{io, {asio::ip::make_address("127.0.0.1"), 0}};
  stalled.listen(0);
  const auto port = stalled.local_endpoint().port();
  std::vector<asio::ip::tcp::socket> fillers;
  for (int i = 0; i < 4; ++i) {
    fillers.emplace_back(io);
    fillers.back().async_connect({asio::ip::make_address("127.0.0.1"), port},
                                 [](std::error_code) {});
  }
  run_until(
      io, [] { return false; }, 100ms); // let the fillers take the queue
  tcp_options options;
  options.connect_timeout = 300ms;
  const auto started = std::chrono::steady_clock::now();
  auto r = connect(io, tcp_connector{"127.0.0.1", port, options});
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(r.error == std::errc::timed_out) << r.error.message();
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 3s);
}

TEST(tcp_connector, notices_a_peer_that_closed_or_reset_an_idle_connection) {
  for (const auto b : {loopback_server::behaviour::close_soon, loopback_server::behaviour::reset}) {
    asio::io_context io;
    loopback_server server{b};
    tcp_connector connector{"127.0.0.1", server.port()};
    auto r = connect(io, connector);
    ASSERT_FALSE(r.error);
    ASSERT_TRUE(run_until(io, [&] { return server.accepted() == 1; }));
    EXPECT_TRUE(connector.is_usable(*r.connection));
    server.close_all();
    EXPECT_TRUE(run_until(io, [&] { return !connector.is_usable(*r.connection); }));
  }
}

asio::awaitable<void> echo_through_pool(std::shared_ptr<pool_type> pool, int rounds,
                                        std::shared_ptr<int> ok) {
  for (int i = 0; i < rounds; ++i) {
    auto r = co_await pool->async_acquire();
    if (r.error) {
      co_return;
    }
    const std::string out = "ping " + std::to_string(i);
    std::string in(out.size(), '\0');
    auto [wec, wn] = co_await asio::async_write(r.connection->socket, asio::buffer(out),
                                                asio::experimental::as_tuple(asio::use_awaitable));
    auto [rec, rn] = co_await asio::async_read(r.connection->socket, asio::buffer(in),
                                               asio::experimental::as_tuple(asio::use_awaitable));
    if (wec || rec || in != out) {
      r.connection.mark_broken();
      co_return;
    }
    ++*ok;
  }
}

TEST(tcp_pool, reuses_connections_for_many_exchanges) {
  asio::io_context io;
  loopback_server server{loopback_server::behaviour::echo};
  pool::pool_options options;
  options.max_size = 3;
  options.min_idle = 0;
  auto pool =
      pool_type::create(io.get_executor(), tcp_connector{"127.0.0.1", server.port()}, options);
  pool->start();
  auto ok = std::make_shared<int>(0);
  for (int i = 0; i < 5; ++i) {
    asio::co_spawn(io, echo_through_pool(pool, 40, ok), asio::detached);
  }
  ASSERT_TRUE(run_until(
      io, [&] { return *ok == 200; }, 10000ms));
  EXPECT_LE(server.accepted(), 3) << "200 exchanges over at most max_size connections";
  EXPECT_LE(pool->stats().total, 3U);
}

struct closes_observer : pool::pool_observer {
  std::vector<pool::close_reason> closed;
  void on_closed(pool::close_reason r) override { closed.push_back(r); }
};

asio::awaitable<void> acquire_once(std::shared_ptr<pool_type> pool,
                                   std::shared_ptr<std::optional<pool_type::acquire_result>> out) {
  *out = co_await pool->async_acquire();
}

TEST(tcp_pool, never_hands_out_a_connection_the_server_dropped) {
  asio::io_context io;
  loopback_server server{loopback_server::behaviour::close_soon};
  pool::pool_options options;
  options.max_size = 2;
  auto observer = std::make_shared<closes_observer>();
  auto pool = pool_type::create(io.get_executor(), tcp_connector{"127.0.0.1", server.port()},
                                options, monotonic_clock::instance(), observer);
  pool->start();
  ASSERT_TRUE(run_until(io, [&] { return pool->stats().idle == 2 && server.accepted() == 2; }));
  server.close_all(); // the server drops both idle connections
  // Give the FINs a moment to arrive (bounded), then acquire.
  auto out = std::make_shared<std::optional<pool_type::acquire_result>>();
  run_until(
      io, [] { return false; }, 50ms);
  asio::co_spawn(io, acquire_once(pool, out), asio::detached);
  ASSERT_TRUE(run_until(io, [&] { return out->has_value(); }));
  ASSERT_FALSE((*out)->error) << (*out)->error.message();
  // (The server's thread counts the connection when it accepts it, after the client's connect
  // completed: waited for, bounded.)
  EXPECT_TRUE(run_until(io, [&] { return server.accepted() >= 3; }));
  EXPECT_GE(server.accepted(), 3) << "a fresh connection was made";
  EXPECT_EQ(peek_peer((*out)->connection->socket), peer_state::open);
  EXPECT_EQ(
      std::count(observer->closed.begin(), observer->closed.end(), pool::close_reason::not_usable),
      2);
}

TEST(tcp_pool, waiters_get_connection_refused_not_a_bare_timeout) {
  asio::io_context io;
  std::uint16_t port = 0;
  {
    loopback_server gone{loopback_server::behaviour::echo};
    port = gone.port();
  }
  pool::pool_options options;
  options.min_idle = 0;
  auto pool = pool_type::create(io.get_executor(), tcp_connector{"127.0.0.1", port}, options);
  pool->start();
  auto out = std::make_shared<std::optional<pool_type::acquire_result>>();
  asio::co_spawn(io, acquire_once(pool, out), asio::detached);
  ASSERT_TRUE(run_until(io, [&] { return out->has_value(); }));
  EXPECT_TRUE((*out)->error == std::errc::connection_refused) << (*out)->error.message();
}

} // namespace
} // namespace tether::net
