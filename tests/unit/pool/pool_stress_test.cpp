// Many coroutines on two threads share one pool served on a strand: no connection may ever be
// leased twice at once, and the pool's counts must add up when the dust settles. Run under TSan
// (the tsan preset) this also checks the pool's cross-thread hand-offs for data races.
#include "tether/pool/connection_pool.hpp"

#include <gtest/gtest.h>

#include <asio/detached.hpp>
#include <asio/strand.hpp>
#include <atomic>
#include <thread>

#include "fake_connector.hpp"

namespace tether::pool {
namespace {

using namespace std::chrono_literals;
using strand_type = asio::strand<asio::io_context::executor_type>;
using timer_type =
    asio::basic_waitable_timer<std::chrono::steady_clock,
                               asio::wait_traits<std::chrono::steady_clock>, strand_type>;
using pool_type = connection_pool<testing::fake_connector, strand_type, timer_type>;

struct tally {
  std::atomic<int> leases{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> errors{0};
  std::atomic<int> finished{0};
};

asio::awaitable<void> worker(std::shared_ptr<pool_type> pool, std::shared_ptr<tally> t,
                             int rounds) {
  for (int i = 0; i < rounds; ++i) {
    auto r = co_await pool->async_acquire(5s);
    if (r.error) {
      t->errors.fetch_add(1);
      continue;
    }
    if (r.connection->holders.fetch_add(1) != 0) {
      t->overlaps.fetch_add(1);
    }
    t->leases.fetch_add(1);
    // Hold it across a trip through the scheduler, so other coroutines run meanwhile.
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    r.connection->holders.fetch_sub(1);
    if (i % 17 == 0) {
      r.connection.mark_broken(); // some come back broken and must be replaced
    }
  }
  t->finished.fetch_add(1);
}

TEST(pool_stress, no_connection_is_ever_leased_twice_and_counts_add_up) {
  constexpr int coroutines = 64;
  constexpr int rounds = 60;
  asio::io_context io{2};
  auto state = std::make_shared<testing::fake_connector_state>();
  pool_options options;
  options.max_size = 6;
  options.min_idle = 2;
  auto pool = pool_type::create(asio::make_strand(io), testing::fake_connector{state}, options);
  pool->start();
  auto t = std::make_shared<tally>();
  for (int i = 0; i < coroutines; ++i) {
    asio::co_spawn(io, worker(pool, t, rounds), asio::detached);
  }
  std::thread a{[&] { io.run(); }};
  std::thread b{[&] { io.run(); }};
  // Wait for the workers with a bound, then stop the housekeeper's loop by closing the pool.
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (t->finished.load() < coroutines && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  std::atomic<bool> closed{false};
  asio::co_spawn(
      io,
      [](std::shared_ptr<pool_type> p, std::atomic<bool>* done) -> asio::awaitable<void> {
        co_await p->async_close();
        done->store(true);
      }(pool, &closed),
      asio::detached);
  while (!closed.load() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  io.stop();
  a.join();
  b.join();

  ASSERT_EQ(t->finished.load(), coroutines);
  EXPECT_EQ(t->overlaps.load(), 0) << "a connection was leased to two holders at once";
  EXPECT_EQ(t->errors.load(), 0);
  EXPECT_EQ(t->leases.load(), coroutines * rounds);
  EXPECT_TRUE(closed.load());
  // Every connection opened was closed exactly once, and the pool holds none.
  EXPECT_EQ(state->opened, state->closed);
  EXPECT_TRUE(state->live.empty());
  const auto s = pool->stats();
  EXPECT_EQ(s.total, 0U);
  EXPECT_EQ(s.pending, 0U);
  EXPECT_LE(state->opened - state->closed, static_cast<int>(options.max_size));
}

} // namespace
} // namespace tether::pool
