// tether's PostgreSQL pool from the installed package, pointed at a loopback port where no
// server listens: the acquire fails at once with the connect error, and the pool closes.
#include <cstdio>
#include <memory>
#include <string>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "tether/pg/pool.hpp"

asio::awaitable<void> use(std::shared_ptr<tether::pg::pool> pool, std::string* said) {
  auto lease = co_await pool->async_acquire(std::chrono::seconds{5});
  *said = lease.error == std::errc::connection_refused ? "refused" : lease.error.message();
  co_await pool->async_close();
}

int main() {
  asio::io_context io;
  std::uint16_t port = 0;
  {
    // A port that was free a moment ago, so nothing listens on it.
    asio::ip::tcp::acceptor probe{io, {asio::ip::make_address("127.0.0.1"), 0}};
    port = probe.local_endpoint().port();
  }
  tether::pool::pool_options options;
  options.min_idle = 0;
  auto pool = tether::pg::pool::create(
      io.get_executor(),
      tether::pg::connector{{.conninfo = "hostaddr=127.0.0.1 port=" + std::to_string(port) +
                                         " user=postgres dbname=postgres"}},
      options);
  pool->start();
  std::string said;
  asio::co_spawn(io, use(pool, &said), asio::detached);
  io.run();
  std::printf("pg pool: %s\n", said.c_str());
  return said == "refused" ? 0 : 1;
}
