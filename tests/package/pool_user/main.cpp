// tether's pool from the installed package over a connector of the user's: two leases, one
// connection reused after the first comes back.
#include <cstdio>
#include <memory>
#include <system_error>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include "tether/pool/connection_pool.hpp"

struct channel {
  int id = 0;
};

class channel_connector {
public:
  using connection_type = channel;
  asio::awaitable<std::error_code> async_connect(std::unique_ptr<channel>& out) {
    out = std::make_unique<channel>();
    out->id = ++opened;
    co_return std::error_code{};
  }
  asio::awaitable<bool> async_validate(channel&) { co_return true; }
  bool is_usable(channel&) { return true; }
  void close(channel&) {}
  int opened = 0;
};

using channel_pool = tether::pool::connection_pool<channel_connector>;

asio::awaitable<void> use(std::shared_ptr<channel_pool> pool, int* first, int* second) {
  {
    auto lease = co_await pool->async_acquire();
    *first = lease.error ? -1 : lease.connection->id;
  }
  auto lease = co_await pool->async_acquire();
  *second = lease.error ? -1 : lease.connection->id;
  lease.connection.reset();
  co_await pool->async_close();
}

int main() {
  asio::io_context io;
  tether::pool::pool_options options;
  options.min_idle = 0;
  auto pool = channel_pool::create(io.get_executor(), channel_connector{}, options);
  pool->start();
  int first = 0;
  int second = 0;
  asio::co_spawn(io, use(pool, &first, &second), asio::detached);
  io.run();
  std::printf("leased %d then %d\n", first, second);
  return first == 1 && second == 1 ? 0 : 1;
}
