// report_exceptions: what escapes a detached coroutine is reported with what it was doing.
#include "tether/core/detached.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>

namespace tether {
namespace {

std::string reported; // one test thread: no lock

asio::awaitable<void> throws() {
  throw std::runtime_error{"a bug"};
  co_return;
}

asio::awaitable<void> returns() {
  co_return;
}

TEST(report_exceptions, an_exception_from_a_detached_coroutine_is_reported_with_what_it_did) {
  set_exception_reporter([](std::string_view line) noexcept { reported = line; });
  asio::io_context io;
  asio::co_spawn(io, returns(), report_exceptions{"a quiet task"});
  io.run();
  EXPECT_EQ(reported, "");
  io.restart();
  asio::co_spawn(io, throws(), report_exceptions{"a client connection"});
  io.run();
  EXPECT_EQ(reported, "tether: a client connection ended with an exception: a bug");
  set_exception_reporter(nullptr);
}

} // namespace
} // namespace tether
