// Pools TCP connections to an echo server and prints what the pool's metrics saw.
//
// The program starts its own echo server on 127.0.0.1 (a port the kernel picks), then eight
// coroutines each send 50 messages through a pool of at most 4 connections. The exposition at the
// end shows the reuse: 400 exchanges, at most 4 connections opened.
#include <array>
#include <cstdio>
#include <thread>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/read.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "tether/metrics/registry.hpp"
#include "tether/net/tcp_connector.hpp"
#include "tether/pool/connection_pool.hpp"
#include "tether/pool/pool_metrics.hpp"

using asio::ip::tcp;
using pool_type = tether::pool::connection_pool<tether::net::tcp_connector>;
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

// The echo server: reads whatever comes and writes it back.
asio::awaitable<void> echo(tcp::socket socket) {
  std::array<char, 1024> data{};
  for (;;) {
    auto [rec, n] = co_await socket.async_read_some(asio::buffer(data), use_tuple);
    if (rec) {
      co_return;
    }
    auto [wec, written] = co_await asio::async_write(socket, asio::buffer(data, n), use_tuple);
    if (wec) {
      co_return;
    }
  }
}

asio::awaitable<void> serve(tcp::acceptor& acceptor) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
    if (ec) {
      co_return;
    }
    asio::co_spawn(acceptor.get_executor(), echo(std::move(socket)), asio::detached);
  }
}

// A client: 50 round trips, each on a pooled connection.
asio::awaitable<void> client(std::shared_ptr<pool_type> pool, int id, int* done) {
  for (int i = 0; i < 50; ++i) {
    auto lease = co_await pool->async_acquire();
    if (lease.error) {
      std::fprintf(stderr, "client %d: %s\n", id, lease.error.message().c_str());
      co_return;
    }
    const std::string message = "client " + std::to_string(id) + " message " + std::to_string(i);
    std::string reply(message.size(), '\0');
    auto [wec, wn] =
        co_await asio::async_write(lease.connection->socket, asio::buffer(message), use_tuple);
    auto [rec, rn] =
        co_await asio::async_read(lease.connection->socket, asio::buffer(reply), use_tuple);
    if (wec || rec || reply != message) {
      lease.connection.mark_broken(); // never hand a half-read connection to the next caller
      continue;
    }
    ++*done;
  }
}

asio::awaitable<void> close_pool(std::shared_ptr<pool_type> pool, tcp::acceptor* acceptor) {
  co_await pool->async_close();
  acceptor->close();
}

int main() {
  asio::io_context server_io;
  tcp::acceptor acceptor{server_io, {asio::ip::make_address("127.0.0.1"), 0}};
  const auto port = acceptor.local_endpoint().port();
  asio::co_spawn(server_io, serve(acceptor), asio::detached);
  std::thread server{[&] { server_io.run(); }};

  asio::io_context io;
  tether::metrics::registry registry;
  std::shared_ptr<pool_type> pool;
  auto metrics = std::make_shared<tether::pool::pool_metrics>(
      registry, tether::metrics::labels{{"pool", "echo"}}, [&pool] { return pool->stats(); });
  tether::pool::pool_options options;
  options.max_size = 4;
  options.min_idle = 1;
  pool = pool_type::create(io.get_executor(), tether::net::tcp_connector{"127.0.0.1", port},
                           options, tether::coarse_monotonic_clock::instance(), metrics);
  pool->start();

  int done = 0;
  for (int id = 0; id < 8; ++id) {
    asio::co_spawn(io, client(pool, id, &done), asio::detached);
  }
  while (done < 400 && io.run_for(std::chrono::milliseconds{10}) > 0) {
  }
  io.restart();
  std::printf("%d of 400 exchanges done; pool: %zu open (%zu idle), max %zu\n\n", done,
              pool->stats().total, pool->stats().idle, pool->stats().max);
  std::printf("%s", registry.expose().c_str());

  asio::co_spawn(io, close_pool(pool, &acceptor), asio::detached);
  io.run_for(std::chrono::seconds{5});
  server_io.stop();
  server.join();
  return done == 400 ? 0 : 1;
}
