// docs/client.md's first hour: one pooled, retried, bounded HTTPS (or HTTP) call, and what it
// says when it fails.
//
//   first_hour [URL]   (default https://127.0.0.1:1/, where nothing listens)
#include <iostream>
#include <stdexcept>
#include <string>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include "tether/http/client.hpp"

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  const std::string url = argc > 1 ? argv[1] : "https://127.0.0.1:1/";
  int status = 1;
  asio::io_context io;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        tether::http::client_options options; // a pool, retries, a budget and a breaker per host
        options.retry.per_try_timeout = 2s;   // and 15 s overall, by default
        auto client = tether::http::client::create(io.get_executor(), options);
        auto request = tether::http::request::to("GET", url); // throws, saying why, on a bad URL
        auto r = co_await client->async_request(std::move(request));
        if (r.error) {
          std::cout << "failed: " << r.message << "\n";
        } else {
          std::cout << r.response.status << ", " << r.response.body.size() << " bytes\n";
          status = 0;
        }
        co_await client->async_close(); // without it, io.run() does not return
      },
      [](const std::exception_ptr& e) {
        try {
          if (e) {
            std::rethrow_exception(e);
          }
        } catch (const std::invalid_argument& bad) {
          std::cout << "not sent: " << bad.what() << "\n";
        }
      });
  io.run();
  return status;
}
