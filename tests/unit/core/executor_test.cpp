// tether::io_executor_of: from a coroutine's any_io_executor to the io_context executor tether's
// pools and clients are typed on, or a clear refusal.
#include "tether/core/executor.hpp"

#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/strand.hpp>
#include <asio/this_coro.hpp>
#include <asio/thread_pool.hpp>

namespace tether {
namespace {

TEST(io_executor_of, unwraps_an_io_contexts_executor) {
  asio::io_context io;
  const asio::any_io_executor erased{io.get_executor()};
  EXPECT_EQ(io_executor_of(erased, "test"), io.get_executor());
}

TEST(io_executor_of, unwraps_a_work_tracking_executor) {
  asio::io_context io;
  asio::any_io_executor tracked{
      asio::require(io.get_executor(), asio::execution::outstanding_work.tracked)};
  EXPECT_EQ(io_executor_of(tracked, "test"), io.get_executor());
  tracked = asio::any_io_executor{}; // the io_context's work count drops again
}

TEST(io_executor_of, unwraps_the_executor_a_coroutine_has) {
  asio::io_context io;
  bool same = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const auto executor = co_await asio::this_coro::executor;
        same = io_executor_of(executor, "test") == io.get_executor();
      },
      asio::detached);
  io.run();
  EXPECT_TRUE(same);
}

TEST(io_executor_of, refuses_other_executors_naming_who_asked) {
  asio::io_context io;
  asio::thread_pool threads{1};
  for (const asio::any_io_executor& other : {asio::any_io_executor{asio::make_strand(io)},
                                             asio::any_io_executor{threads.get_executor()}}) {
    try {
      (void)io_executor_of(other, "tether::http::client::create");
      FAIL() << "accepted an executor that is not an io_context's";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string{e.what()}.rfind("tether::http::client::create: the executor is not an "
                                            "io_context's",
                                            0),
                0U)
          << e.what();
    }
  }
  threads.join();
}

} // namespace
} // namespace tether
