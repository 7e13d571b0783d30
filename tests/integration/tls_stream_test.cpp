// tls::stream over real loopback sockets, both ends tether's: the handshake, data both ways in
// records larger and smaller than the engine's input buffer, a read and a write pending at once,
// close_notify read as the end of the data, idle buffers given back, and errors by cause.
#include "tether/tls/stream.hpp"

#include <gtest/gtest.h>

#include <future>
#include <stdexcept>
#include <string>

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/read.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <asio/write.hpp>

#include "test_ca.hpp"
#include "tether/core/error.hpp"
#include "tether/tls/context.hpp"
#include "tether/tls/handshake.hpp"

namespace tether::tls {
namespace {

using namespace std::chrono_literals;
using testing::test_ca;
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

const test_ca& ca() {
  return test_ca::get();
}

/// A connected pair of TCP sockets on loopback.
std::pair<asio::ip::tcp::socket, asio::ip::tcp::socket> socket_pair(asio::io_context& io) {
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
  asio::ip::tcp::socket client{io};
  client.connect(acceptor.local_endpoint());
  return {std::move(client), acceptor.accept()};
}

asio::awaitable<std::error_code> accept_on(stream& s) {
  co_return co_await async_accept(s);
}

struct pair_fixture : ::testing::Test {
  asio::io_context io;
  server_context server_tls{{{{ca().path("server.pem"), ca().path("server.key")}}}};
  std::shared_ptr<client_context> client_tls =
      std::make_shared<client_context>(client_options{true, ca().path("ca.pem")});
  client_identity identity{client_tls, "localhost"};

  /// Runs the io_context until `done` is ready (10 s bound), and returns its value.
  template <class T>
  T wait(std::future<T>& done) {
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (done.wait_for(0s) != std::future_status::ready &&
           std::chrono::steady_clock::now() < give_up) {
      io.restart(); // run_for stops the io_context whenever it runs out of work
      io.run_for(5ms);
    }
    if (done.wait_for(0s) != std::future_status::ready) {
      throw std::runtime_error("not done within 10 s");
    }
    return done.get();
  }

  /// A client and a server stream over loopback, handshaken.
  std::pair<stream, stream> connected() {
    auto [c, s] = socket_pair(io);
    std::pair<stream, stream> ends{identity.open(std::move(c)),
                                   stream{std::move(s), server_tls.native(), role::server}};
    auto accepted = asio::co_spawn(io, accept_on(ends.second), asio::use_future);
    EXPECT_FALSE(run(identity.async_handshake(ends.first)));
    EXPECT_FALSE(wait(accepted));
    return ends;
  }

  /// Runs `body` on the io_context until it returns (10 s bound).
  template <class T>
  T run(asio::awaitable<T> body) {
    auto done = asio::co_spawn(io, std::move(body), asio::use_future);
    return wait(done);
  }
};

asio::awaitable<std::string> read_exactly(stream& s, std::size_t n) {
  std::string got(n, '\0');
  auto [ec, read] = co_await asio::async_read(s, asio::buffer(got), use_tuple);
  got.resize(read);
  co_return got;
}

TEST_F(pair_fixture, carries_data_both_ways_after_the_handshake) {
  auto [client, server] = connected();
  EXPECT_EQ(protocol_version(client), "TLSv1.3");
  EXPECT_EQ(client_identity::alpn(client), "http/1.1"); // both ends offer it

  // 100 KiB: several records, each larger than the engine's 8 KiB input buffer.
  const std::string big(100 * 1024, 'x');
  auto write_big = [&]() -> asio::awaitable<std::size_t> {
    auto [ec, n] = co_await asio::async_write(client, asio::buffer(big), use_tuple);
    co_return ec ? 0 : n;
  };
  auto sent = asio::co_spawn(io, write_big(), asio::use_future);
  EXPECT_EQ(run(read_exactly(server, big.size())), big);
  EXPECT_EQ(wait(sent), big.size());

  // A read pending on each side while both write: full duplex on one stream.
  auto server_reads = asio::co_spawn(io, read_exactly(server, 5), asio::use_future);
  auto client_reads = asio::co_spawn(io, read_exactly(client, 5), asio::use_future);
  auto both_write = [&]() -> asio::awaitable<bool> {
    auto [a, n1] =
        co_await asio::async_write(client, asio::buffer(std::string_view{"hello"}), use_tuple);
    auto [b, n2] =
        co_await asio::async_write(server, asio::buffer(std::string_view{"world"}), use_tuple);
    co_return !a && !b;
  };
  EXPECT_TRUE(run(both_write()));
  EXPECT_EQ(wait(server_reads), "hello");
  EXPECT_EQ(wait(client_reads), "world");
}

TEST_F(pair_fixture, an_idle_stream_gives_back_its_buffers_and_goes_on) {
  auto [client, server] = connected();
  auto send = [&](stream& from, std::string text) -> asio::awaitable<bool> {
    auto [ec, n] = co_await asio::async_write(from, asio::buffer(text), use_tuple);
    co_return !ec;
  };
  ASSERT_TRUE(run(send(client, "one")));
  EXPECT_EQ(run(read_exactly(server, 3)), "one");
  EXPECT_TRUE(server.release_buffers());
  EXPECT_TRUE(client.release_buffers());
  ASSERT_TRUE(run(send(client, "two")));
  EXPECT_EQ(run(read_exactly(server, 3)), "two");
  EXPECT_FALSE(stream{asio::ip::tcp::socket{io}}.release_buffers()); // plain: nothing to give
}

TEST_F(pair_fixture, close_notify_reads_as_the_end_of_the_data) {
  auto [client, server] = connected();
  auto shut = [&]() -> asio::awaitable<std::error_code> {
    auto [ec, n] = co_await server.async_shutdown(use_tuple);
    co_return ec;
  };
  EXPECT_FALSE(run(shut()));
  auto read_end = [&]() -> asio::awaitable<std::error_code> {
    char byte = 0;
    auto [ec, n] = co_await client.async_read_some(asio::buffer(&byte, 1), use_tuple);
    co_return ec;
  };
  EXPECT_EQ(run(read_end()), asio::error::eof);
}

TEST_F(pair_fixture, a_client_that_does_not_trust_the_server_fails_with_unknown_ca) {
  auto [c, s] = socket_pair(io);
  auto untrusting = std::make_shared<client_context>(client_options{true, ca().path("self.pem")});
  client_identity stranger{untrusting, "localhost"};
  stream client = stranger.open(std::move(c));
  stream server{std::move(s), server_tls.native(), role::server};
  auto accepted = asio::co_spawn(io, accept_on(server), asio::use_future);
  EXPECT_EQ(run(stranger.async_handshake(client)), make_error_code(errc::tls_unknown_ca));
  // The server hears the client's alert: the client refused its certificate.
  EXPECT_EQ(wait(accepted), make_error_code(errc::tls_certificate_refused));
}

} // namespace
} // namespace tether::tls
