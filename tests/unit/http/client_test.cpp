// The HTTP client's options and how it is made; its messages are in message_test.cpp.
#include "tether/http/client.hpp"

#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/strand.hpp>
#include <asio/this_coro.hpp>

namespace tether::http {
namespace {

TEST(client_options, validate_names_the_bad_field) {
  client_options o;
  o.max_response_body = 0;
  try {
    o.validate();
    FAIL() << "validate accepted max_response_body 0";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string{e.what()}.find("max_response_body"), std::string::npos);
  }
  client_options ok;
  EXPECT_NO_THROW(ok.validate());
}

TEST(client, is_made_from_the_executor_a_coroutine_has) {
  asio::io_context io;
  std::shared_ptr<client> made;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        // (Not in one expression: g++ 12 miscompiles a call with default arguments around a
        // co_await.)
        const auto executor = co_await asio::this_coro::executor;
        made = client::create(executor);
      },
      asio::detached);
  io.run();
  ASSERT_TRUE(made);
  EXPECT_EQ(made->get_executor(), io.get_executor());
  EXPECT_THROW((void)client::create(asio::any_io_executor{asio::make_strand(io)}),
               std::invalid_argument);
}

} // namespace
} // namespace tether::http
